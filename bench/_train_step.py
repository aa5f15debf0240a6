"""One implementation's LoRA training steps, in a fresh interpreter, for bench_encoder.py and
bench_decoder.py. Prints one JSON line: steps/s figures and the process's peak RSS.

    python bench/_train_step.py SPEC.json

SPEC: {"impl": "lorafast" | "hf" | "lorafast-bf16" | "hf-bf16", "model": {"path": folder, "pretrained": bool,
       "config": {overrides}}, "lora": {r, lora_alpha, lora_dropout, target_modules},
       "batches": file.npz (ids_i, mask_i, labels_i), "warmup": n, "steps": n,
       "class_weights": [..], "dtype": null | "bfloat16", "gradient_checkpointing": bool,
       "seed": n}
An impl ending in "-bf16" computes in bfloat16: lorafast with model.to("cpu", dtype="bfloat16"), HF
under torch.autocast("cpu", dtype=torch.bfloat16) (forward and loss; backward outside, as torch says).

The lorafast worker never imports torch, so its peak RSS is lorafast's own.
"""

import json
import resource
import sys
import time

import numpy as np


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_batches(path):
    data = np.load(path)
    n = len([k for k in data.files if k.startswith("ids_")])
    return [(data[f"ids_{i}"], data[f"mask_{i}"], data[f"labels_{i}"]) for i in range(n)]


def lorafast_step_fn(spec):
    import lorafast as lf

    m = spec["model"]
    if m.get("pretrained"):
        model = lf.AutoModelForSequenceClassification.from_pretrained(m["path"], num_labels=2, dtype=spec.get("dtype"))
    else:
        config = lf.AutoConfig.from_pretrained(m["path"], **m.get("config", {}))
        model = lf.AutoModelForSequenceClassification.from_config(config, num_labels=2, seed=spec.get("seed", 0),
                                                                  dtype=spec.get("dtype"))
    if model.config.model_type in ("llama", "mistral") and model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    model = lf.get_peft_model(model, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, bias="none", **spec["lora"]))
    if spec.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable()
    if spec.get("bf16"):
        model.to("cpu", dtype="bfloat16")
    model.train()
    weights = spec.get("class_weights")

    def step(ids, mask, labels):
        loss, _ = model.forward_backward(ids, mask, labels, class_weights=weights)
        return loss

    return step


def hf_step_fn(spec):
    import torch
    import transformers
    from peft import LoraConfig, TaskType, get_peft_model

    torch.manual_seed(spec.get("seed", 0))
    m = spec["model"]
    dtype = getattr(torch, spec["dtype"]) if spec.get("dtype") else torch.float32
    if m.get("pretrained"):
        model = transformers.AutoModelForSequenceClassification.from_pretrained(m["path"], num_labels=2, dtype=dtype)
    else:
        config = transformers.AutoConfig.from_pretrained(m["path"], num_labels=2, **m.get("config", {}))
        model = transformers.AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, bias="none", **spec["lora"]))
    if spec.get("gradient_checkpointing"):
        model.gradient_checkpointing_enable()
    model.train()
    weights = spec.get("class_weights")
    loss_fn = torch.nn.CrossEntropyLoss(weight=None if weights is None else torch.tensor(weights))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(spec.get("bf16")))

    def step(ids, mask, labels):
        model.zero_grad(set_to_none=True)
        with autocast:
            logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
            loss = loss_fn(logits.float(), torch.from_numpy(labels))
        loss.backward()
        return float(loss)

    return step


def module_file(impl):
    return sys.modules["lorafast" if impl.startswith("lorafast") else "transformers"].__file__


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    spec["bf16"] = spec["impl"].endswith("-bf16")
    batches = load_batches(spec["batches"])
    t0 = time.perf_counter()
    step = (lorafast_step_fn if spec["impl"].startswith("lorafast") else hf_step_fn)(spec)
    build_s = time.perf_counter() - t0
    warmup, steps = spec["warmup"], spec["steps"]
    for i in range(warmup):
        step(*batches[i % len(batches)])
    times, samples, tokens, losses = [], 0, 0, []
    for i in range(warmup, warmup + steps):
        ids, mask, labels = batches[i % len(batches)]
        t = time.perf_counter()
        losses.append(step(ids, mask, labels))
        times.append(time.perf_counter() - t)
        samples += len(ids)
        tokens += int(mask.sum())
    total = sum(times)
    print(json.dumps({
        "impl": spec["impl"], "build_s": build_s, "steps": steps, "step_s_median": float(np.median(times)),
        "samples_per_s": samples / total, "tokens_per_s": tokens / total, "peak_rss_mib": peak_rss_mib(),
        "mean_loss": float(np.mean(losses)), "module": module_file(spec["impl"]),
    }))


if __name__ == "__main__":
    main()
