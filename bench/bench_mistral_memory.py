"""Full-size Mistral-7B-v0.1 (config ../shared/models/mistralai--Mistral-7B-v0.1) with random
bf16 weights kept in bf16 (dtype="bfloat16": converted block by block inside the products), one
LoRA forward + backward at batch 8 x 64 tokens on the CPU, gradient checkpointing on; prints the
time of each phase and the process's peak RSS against the 16 GiB limit.

LoRA as the notebook's Mistral run: r=2, alpha 16, dropout 0.1 on q_proj, v_proj, pad = eos.
The weights alone are 14.5 GB (13.5 GiB): run it on a machine with at least 18 GiB available.
There is no transformers reference here (holding the model twice does not fit in 24 GiB).

    python bench/bench_mistral_memory.py [--force] [--config FOLDER] [--json out.json]
"""

import argparse
import json
import resource
import sys
import time

import numpy as np

from _common import CLASS_WEIGHTS, SHARED

MISTRAL = SHARED / "models" / "mistralai--Mistral-7B-v0.1"
LIMIT_GIB = 16.0
B, L = 8, 64


def gib(kib):
    return kib / 2**20


def available_gib():
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemAvailable")) / 2**20


def rss_gib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="run even with less than 18 GiB available")
    parser.add_argument("--config", default=str(MISTRAL), help="model folder (a smaller config to try the script)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if available_gib() < 18 and not args.force:
        sys.exit(f"only {available_gib():.1f} GiB available (need 18): wait for other work, or --force")

    import lorafast as lf

    out = {"available_gib_at_start": available_gib()}
    t = time.perf_counter()
    config = lf.AutoConfig.from_pretrained(args.config)
    config.pad_token_id = config.eos_token_id
    model = lf.AutoModelForSequenceClassification.from_config(config, num_labels=2, seed=0, dtype="bfloat16")
    model = lf.get_peft_model(model, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=2, lora_alpha=16,
                                                   lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    model.gradient_checkpointing_enable()
    model.train()
    out["build_s"] = time.perf_counter() - t
    out["rss_after_build_gib"] = rss_gib()
    trainable, total = model.get_nb_trainable_parameters()
    out.update(trainable_params=trainable, all_params=total)
    print(f"built {total:,d} parameters ({trainable:,d} trainable) in {out['build_s']:.1f} s, "
          f"RSS {out['rss_after_build_gib']:.2f} GiB")

    rng = np.random.default_rng(0)
    ids = rng.integers(3, config.vocab_size, (B, L))
    mask = np.ones((B, L), np.int64)
    labels = np.array([0, 1] * (B // 2))
    t = time.perf_counter()
    loss, grads = model.forward_backward(ids, mask, labels, class_weights=CLASS_WEIGHTS)
    out["step_s"] = time.perf_counter() - t
    out["loss"] = float(loss)
    out["grads_finite"] = bool(all(np.isfinite(g).all() for g in grads.values()))
    out["peak_rss_gib"] = gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    out["tokens_per_s"] = B * L / out["step_s"]
    out["within_limit"] = out["peak_rss_gib"] <= LIMIT_GIB
    print(f"one forward+backward, batch {B} x {L} tokens: {out['step_s']:.1f} s ({out['tokens_per_s']:.1f} tokens/s), "
          f"loss {loss:.4f}, gradients finite: {out['grads_finite']}")
    print(f"peak RSS {out['peak_rss_gib']:.2f} GiB (limit {LIMIT_GIB:.0f} GiB): "
          f"{'within' if out['within_limit'] else 'OVER'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    sys.exit(0 if out["within_limit"] and out["grads_finite"] else 1)


if __name__ == "__main__":
    main()
