"""GPU LoRA training speed and memory, lorafast against transformers + peft on the same GPU in
the same call; one JSON line per row (and all rows in --json).

Each row times --warmup steps, then the timed steps, synchronized at the end; a step is
forward + backward ("fwd+bwd" rows) or a whole training step ("train" rows, with --train: on HF
clipping to norm 1 and torch's AdamW, through GradScaler with fp16; on lorafast Trainer.train(),
whose AdamW runs on the GPU, the batches in the Trainer's own shuffled order).

- roberta-large's config, random weights, the notebook's LoRA (r=2, alpha 16, dropout 0.1,
  query/value, head in full), class-weighted loss, batch 8 of real tweets (bench/gpu_inputs,
  written by bench/gpu_prepare.py where ../shared is): steps/s and peak GPU memory; HF in f32
  (TF32 off, torch's default) and with fp16 autocast + GradScaler (the notebook's fp16=True).
- Mistral-7B-v0.1's config, random bf16 weights, r=2 on q_proj,v_proj, batch 8 of real tweets:
  tokens/s (real tokens), MFU and peak GPU memory; HF + peft with fp16 autocast.

MFU counts the model's FLOPs of a LoRA step without recomputation: 2 x (frozen weights) per token
forward, the same again for the input gradients, LoRA's and attention's products, over the GPU's
dense bf16 peak (--peak-tflops, default 989 for H100/H200 SXM).

    python bench/gpu_bench.py [--steps 200] [--mistral-steps 20] [--rows roberta,mistral] [--json out.json]
    python bench/gpu_bench.py --device cpu --tiny      # a smoke test of the script on the CPU
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
INPUTS = HERE / "gpu_inputs"
sys.path.insert(0, str(HERE.parent))  # this checkout's lorafast
CLASS_WEIGHTS = [0.877521613832853, 1.1622137404580153]
ROBERTA_LORA = dict(r=2, lora_alpha=16, lora_dropout=0.1)
MISTRAL_LORA = dict(r=2, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"])
TINY = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4)
TINY_DECODER = dict(TINY, num_key_value_heads=2, head_dim=16)


def load_inputs(name):
    folder = INPUTS / name
    if not (folder / "batches.npz").is_file():
        raise SystemExit(f"{folder}/batches.npz is missing: run python bench/gpu_prepare.py where ../shared is, "
                         "and carry bench/gpu_inputs")
    data = np.load(folder / "batches.npz")
    n = len([k for k in data.files if k.startswith("ids_")])
    batches = [(data[f"ids_{i}"], data[f"mask_{i}"], data[f"labels_{i}"]) for i in range(n)]
    return folder, batches


def frozen_flops_per_token(config):
    """2 x the multiply-adds of every frozen linear a token passes through (no embeddings)."""
    c = config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    attn = c.hidden_size * head_dim * (2 * c.num_attention_heads + 2 * kv)
    ffn = (3 if c.model_type in ("llama", "mistral") else 2) * c.hidden_size * c.intermediate_size
    return 2 * c.num_hidden_layers * (attn + ffn)


def step_flops(config, mask, r):
    """Model FLOPs of one LoRA training step on this padded batch's real tokens."""
    lengths = mask.sum(axis=1).astype(np.float64)
    tokens = lengths.sum()
    frozen = 2 * frozen_flops_per_token(config) * tokens  # forward + input gradients
    lora = 3 * 2 * config.num_hidden_layers * 2 * 2 * r * config.hidden_size * tokens  # 2 targets, fwd + 2 bwd
    attn = 3 * 2 * 2 * config.num_hidden_layers * config.hidden_size * float((lengths**2).sum())  # QK^T, PV
    return frozen + lora + attn


def hf_model(folder, lora, dtype, device, tiny):
    import torch
    import transformers
    from peft import LoraConfig, TaskType, get_peft_model

    torch.manual_seed(0)
    config = transformers.AutoConfig.from_pretrained(folder, num_labels=2)
    if tiny:
        config.update(TINY_DECODER if config.model_type in ("llama", "mistral") else TINY)
    if config.pad_token_id is None:
        config.pad_token_id = config.eos_token_id
    with torch.device(device):
        model = transformers.AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, bias="none", **lora))
    model.train()
    return model, config


def timed(step, batches, steps, warmup, config, r, sync, peak):
    """Runs warmup then steps timed steps; {steps_per_s, tokens_per_s, mfu, last_loss}."""
    for i in range(warmup):
        step(*batches[i % len(batches)])
    sync()
    flops, tokens, t0, loss = 0.0, 0, time.perf_counter(), None
    for i in range(warmup, warmup + steps):
        ids, mask, labels = batches[i % len(batches)]
        loss = step(ids, mask, labels)
        flops += step_flops(config, mask, r)
        tokens += int(mask.sum())
    sync()
    seconds = time.perf_counter() - t0
    return dict(steps=steps, steps_per_s=steps / seconds, tokens_per_s=tokens / seconds,
                mfu=flops / seconds / (peak * 1e12), last_loss=float(loss))


def hf_rows(name, folder, batches, lora, settings, steps, warmup, device, tiny, peak, train=False):
    """One row per (weights dtype, autocast dtype) setting: forward + backward (+ GradScaler for fp16),
    with train the clipping and AdamW step too."""
    import torch

    rows = []
    cuda = device == "cuda"
    for label, dtype, autocast in settings:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        model, config = hf_model(folder, lora, dtype, device, tiny)
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(CLASS_WEIGHTS, device=device))
        scaler = torch.amp.GradScaler(device, enabled=autocast == torch.float16 and cuda)
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trained, lr=1e-4, weight_decay=0.01) if train else None

        def step(ids, mask, labels):
            model.zero_grad(set_to_none=True)
            ids, mask = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
            with torch.autocast(device, dtype=autocast or torch.float32, enabled=autocast is not None):
                logits = model(input_ids=ids, attention_mask=mask).logits
            loss = loss_fn(logits.float(), torch.from_numpy(labels).to(device))
            scaler.scale(loss).backward()
            if optimizer is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trained, 1.0)
                scaler.step(optimizer)
                scaler.update()
            return loss.item()

        row = timed(step, batches, steps, warmup, config, lora["r"], torch.cuda.synchronize if cuda else lambda: 0,
                    peak)
        rows.append(dict(model=name, impl="hf+peft", setting=label, step="train" if train else "fwd+bwd", **row,
                         peak_gpu_mib=torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
                         device=torch.cuda.get_device_name() if cuda else "cpu"))
        del model
    return rows


def trainer_timed(lf, model, batches, steps, warmup, config, r, peak, fp16):
    """Trainer.train() for warmup + steps updates of batch 8 over the rows of batches, timed from the
    end of the warmup's last update to the end of the last (each update synchronizes)."""
    rows = [{"input_ids": ids[m == 1].tolist(), "attention_mask": [1] * int(m.sum()), "label": int(y)}
            for b_ids, b_mask, b_labels in batches for ids, m, y in zip(b_ids, b_mask, b_labels)]
    marks = []

    class Clock(lf.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, warmup + steps):
                marks.append(time.perf_counter())

    args = lf.TrainingArguments(output_dir="/tmp/lorafast_gpu_bench", max_steps=warmup + steps,
                                per_device_train_batch_size=len(batches[0][0]), learning_rate=1e-4,
                                weight_decay=0.01, fp16=fp16, logging_strategy="no", save_strategy="no",
                                report_to="none", disable_tqdm=True)
    trainer = lf.Trainer(model=model, args=args, train_dataset=rows, class_weights=CLASS_WEIGHTS,
                         callbacks=[Clock()])
    trainer.train()
    seconds = marks[1] - marks[0]
    masks = [m for _, m, _ in batches]
    flops = steps * float(np.mean([step_flops(config, m, r) for m in masks]))
    tokens = steps * float(np.mean([m.sum() for m in masks]))
    return dict(steps=steps, steps_per_s=steps / seconds, tokens_per_s=tokens / seconds,
                mfu=flops / seconds / (peak * 1e12), last_loss=None)


def lorafast_rows(name, folder, batches, lora, settings, steps, warmup, device, tiny, peak, train=False):
    """One row per compute dtype: lorafast's forward + backward on the device (model.to("cuda")), or
    with train whole Trainer steps (the setting's dtype: bf16=True / fp16=True). A setting's third
    value False launches kernel by kernel (LORAFAST_CUDA_GRAPHS=0) instead of replaying CUDA graphs."""
    import os

    import lorafast as lf

    info = lf.build_info()
    if device == "cuda" and not info.get("cuda_available"):
        return [dict(model=name, impl="lorafast", status=f"not run: {info.get('cuda_unavailable_reason')}")]
    import torch

    rows = []
    for label, dtype, *graphs in settings:
        config = lf.AutoConfig.from_pretrained(folder)
        if tiny:
            for key, value in (TINY_DECODER if config.model_type in ("llama", "mistral") else TINY).items():
                setattr(config, key, value)
        stored = "bfloat16" if dtype == "bfloat16" else None
        model = lf.AutoModelForSequenceClassification.from_config(config, num_labels=2, seed=0, dtype=stored)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = model.config.eos_token_id
        model = lf.get_peft_model(model, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, bias="none", **lora))
        free_before = torch.cuda.mem_get_info()[0] if device == "cuda" else 0
        if device == "cuda":
            if graphs and not graphs[0]:
                os.environ["LORAFAST_CUDA_GRAPHS"] = "0"  # read when the device copy is made
            try:
                model.to("cuda", dtype=dtype)
            finally:
                os.environ.pop("LORAFAST_CUDA_GRAPHS", None)
        model.train()
        if train:
            row = trainer_timed(lf, model, batches, steps, warmup, config, lora["r"], peak, dtype == "float16")
        else:  # each step synchronizes
            def step(ids, mask, labels):
                return model.forward_backward(ids, mask, labels, class_weights=CLASS_WEIGHTS)[0]

            row = timed(step, batches, steps, warmup, config, lora["r"], lambda: 0, peak)
        used = (free_before - torch.cuda.mem_get_info()[0]) / 2**20 if device == "cuda" else None
        rows.append(dict(model=name, impl="lorafast", setting=label, step="train" if train else "fwd+bwd", **row,
                         peak_gpu_mib=used,
                         device_bytes_mib=getattr(model, "device_bytes", 0) / 2**20 if device == "cuda" else None))
        del model
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="roberta,mistral")
    parser.add_argument("--steps", type=int, default=200, help="timed steps for roberta-large")
    parser.add_argument("--mistral-steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny configs (a smoke test of this script)")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--train", action="store_true", help="also whole training steps (optimizer included)")
    args = parser.parse_args()
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # torch's default, stated
    rows = []
    wanted = args.rows.split(",")
    plans = {  # HF settings (label, weights dtype, autocast dtype); lorafast settings (label, compute dtype)
        "roberta": ("roberta-large", ROBERTA_LORA, args.steps,
                    [("f32", torch.float32, None), ("fp16 autocast", torch.float32, torch.float16)],
                    [("f32", "float32"), ("bf16", "bfloat16"), ("fp16", "float16"),
                     ("bf16, graphs off", "bfloat16", False)]),
        "mistral": ("mistral", MISTRAL_LORA, args.mistral_steps,
                    [("bf16 weights, fp16 autocast", torch.bfloat16, torch.float16)], [("bf16", "bfloat16")]),
    }
    for key in wanted:
        name, lora, steps, hf_settings, lf_settings = plans[key]
        folder, batches = load_inputs(name)
        out = []
        for train in (False, True) if args.train else (False,):
            for impl, run, settings in (("lorafast", lorafast_rows, lf_settings), ("hf+peft", hf_rows, hf_settings)):
                for setting in settings:  # a failing setting gives an error row; the others still run
                    try:
                        out += run(name, str(folder), batches, lora, [setting], steps, args.warmup, args.device,
                                   args.tiny, args.peak_tflops, train)
                    except Exception as e:  # noqa: BLE001 - reported in the row
                        out.append(dict(model=name, impl=impl, setting=setting[0], step="train" if train else
                                        "fwd+bwd", error=f"{type(e).__name__}: {e}"))
        for row in out:
            row["date"] = time.strftime("%Y-%m-%d")
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
