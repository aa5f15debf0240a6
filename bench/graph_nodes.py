"""The nodes of a training step's CUDA graph (forward, cross-entropy and backward of one batch), counted
on the CPU emulator of tests/gpu/emulator/ by kind: kernels, memsets, copies and cuBLASLt products.

The count depends on the model's structure, not on its widths: each workload runs its real model's
config (layers, norms, activation, GQA, LoRA targets: ../shared/models) narrowed to hidden 64 (head
size 32) so that the emulator runs it in seconds, with LoRA r=2 on the notebook's targets, in float16,
a batch of 8 sequences of 32 tokens, dropout on, with and without gradient checkpointing. Each step
runs twice: directly, then captured (the emulator counts the captured graph). A cuBLASLt product is
one node here; on a GPU an algorithm may take two kernels (a split-K reduction).

    python bench/graph_nodes.py [--shared ../shared]
"""

import argparse
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's lorafast
NODE_KINDS = ("kernels", "memsets", "copies", "cuBLASLt")
WORKLOADS = {  # name: (shared model folder, LoRA targets, the narrowed widths)
    "roberta-large": ("roberta-large", ["query", "value"],
                      dict(hidden_size=64, intermediate_size=128, num_attention_heads=2)),
    "Mistral-7B": ("mistralai--Mistral-7B-v0.1", ["q_proj", "v_proj"],
                   dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1,
                        head_dim=32)),
}


def count(shared):
    """Prints a row per workload and checkpointing; runs inside the emulated process."""
    import ctypes

    import numpy as np

    import lorafast as lf

    lib = ctypes.CDLL(os.environ["LORAFAST_CUDA_LIBRARY"])
    lib.emu_last_graph_nodes.restype = ctypes.c_longlong
    print(f"{'workload':<14} {'checkpointing':<13} {'nodes':>6}  " + "  ".join(f"{k:>8}" for k in NODE_KINDS))
    for name, (folder, targets, narrow) in WORKLOADS.items():
        config = lf.AutoConfig.from_pretrained(os.path.join(shared, "models", folder))
        for key, value in narrow.items():
            setattr(config, key, value)
        if getattr(config, "pad_token_id", None) is None:  # the notebook's pad = eos for the decoders
            config.pad_token_id = config.eos_token_id
        for checkpointing in (False, True):
            base = lf.AutoModelForSequenceClassification.from_config(config, num_labels=2)
            model = lf.get_peft_model(base, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=2, lora_alpha=16,
                                                          lora_dropout=0.1, target_modules=targets))
            if checkpointing:
                model.gradient_checkpointing_enable()
            model.to("cuda", dtype="float16")
            model.train()
            rng = np.random.default_rng(0)
            ids = rng.integers(3, 1000, (8, 32))
            mask = np.ones_like(ids)
            labels = rng.integers(0, 2, 8)
            for _ in range(2):  # run directly, then captured
                model.forward_backward(ids, mask, labels)
            nodes = [lib.emu_last_graph_nodes(kind) for kind in range(len(NODE_KINDS))]
            print(f"{name:<14} {str(checkpointing):<13} {sum(nodes):>6}  " + "  ".join(f"{n:>8}" for n in nodes),
                  flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="the shared folder (models/)")
    args = parser.parse_args()
    if os.environ.get("LORAFAST_CUDA_LIBRARY"):
        return count(args.shared)
    sys.path.insert(0, str(REPO / "tests" / "gpu"))
    import emulated_build

    library = emulated_build.objects().kernels_library()
    env = dict(os.environ, LORAFAST_CUDA_LIBRARY=str(library))
    done = emulated_build.run_emulated([sys.executable, __file__, "--shared", args.shared], 1800, env)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr[-6000:])
    if done.returncode != 0:
        raise SystemExit(done.returncode)


if __name__ == "__main__":
    main()
