"""What the training benchmarks share: real tweet batches, running _train_step.py in a fresh
interpreter per implementation, and printing lorafast against the HF reference."""

import csv
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # measure this checkout's lorafast, not an installed one
SHARED = pathlib.Path(os.environ.get("LORAFAST_SHARED", HERE.parent.parent / "shared"))
TWEETS = SHARED / "data" / "disaster_tweets" / "train.csv"
# the notebook's class weights (80/20 split, seed 42): [neg, pos]
CLASS_WEIGHTS = [0.877521613832853, 1.1622137404580153]
NOTEBOOK_LORA = dict(r=2, lora_alpha=16, lora_dropout=0.1)


def tweet_batches(tokenizer_folder, n_batches, batch_size=8, seed=42, max_length=512):
    """n_batches padded batches of real tweets (rows drawn at random with seed), tokenized by
    transformers' tokenizer of the model, as DataCollatorWithPadding pads them (right, per batch)."""
    import transformers

    with open(TWEETS, newline="") as f:
        rows = list(csv.DictReader(f))
    order = np.random.default_rng(seed).permutation(len(rows))[: n_batches * batch_size]
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer_folder)
    if tok.pad_token is None:  # the notebook: pad = eos for the decoders
        tok.pad_token = tok.eos_token
    out = {}
    for b in range(n_batches):
        chunk = [rows[i] for i in order[b * batch_size : (b + 1) * batch_size]]
        enc = tok([r["text"] for r in chunk], padding=True, truncation=True, max_length=max_length,
                  return_tensors="np")
        out[f"ids_{b}"] = enc["input_ids"].astype(np.int64)
        out[f"mask_{b}"] = enc["attention_mask"].astype(np.int64)
        out[f"labels_{b}"] = np.array([int(r["target"]) for r in chunk], np.int64)
    return out


def run_worker(spec, folder):
    """Runs one implementation in a fresh interpreter, each library with its own defaults
    (threads, OpenMP wait policy: lorafast sets PASSIVE unless the environment says otherwise;
    torch keeps its own, unless spec["hf_passive"] asks for PASSIVE); returns its JSON result."""
    path = os.path.join(folder, f"spec_{spec['impl']}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if spec["impl"].startswith("hf") and spec.get("hf_passive"):
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    proc = subprocess.run([sys.executable, str(HERE / "_train_step.py"), path], capture_output=True, text=True,
                          env=env, cwd=str(HERE.parent))
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['impl']} worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(name, spec, batches, rounds=1, impls=("lorafast", "hf")):
    """Both implementations on the same batches, in alternating fresh interpreters (rounds
    times each, so load from other work on the machine hits both alike). Reports each
    implementation's best round (highest samples/s) and the median over rounds."""
    runs = {impl: [] for impl in impls}
    with tempfile.TemporaryDirectory() as folder:
        np.savez(os.path.join(folder, "batches.npz"), **batches)
        spec = dict(spec, batches=os.path.join(folder, "batches.npz"))
        for _ in range(rounds):
            for impl in impls:
                runs[impl].append(run_worker(dict(spec, impl=impl), folder))
    lengths = [int(batches[k].sum(1).max()) for k in batches if k.startswith("mask_")]
    tokens = [int(batches[k].sum()) for k in batches if k.startswith("mask_")]
    print(f"\n{name}: {len(lengths)} batches of {batches['ids_0'].shape[0]}, padded length "
          f"{min(lengths)}..{max(lengths)} (mean {np.mean(lengths):.1f}), real tokens/batch {np.mean(tokens):.1f}, "
          f"{rounds} round(s) per implementation")
    print(f"{'impl':10s} {'samples/s':>10s} {'median':>8s} {'tokens/s':>10s} {'step s':>8s} {'peak RSS MiB':>13s} "
          f"{'loss':>8s}")
    results = {}
    for impl, rs in runs.items():
        best = max(rs, key=lambda r: r["samples_per_s"])
        results[impl] = dict(best, rounds=rs, median_samples_per_s=float(np.median([r["samples_per_s"] for r in rs])),
                             peak_rss_mib=max(r["peak_rss_mib"] for r in rs))
        r = results[impl]
        print(f"{impl:10s} {r['samples_per_s']:10.2f} {r['median_samples_per_s']:8.2f} {r['tokens_per_s']:10.1f} "
              f"{r['step_s_median']:8.3f} {r['peak_rss_mib']:13.0f} {r['mean_loss']:8.4f}")
    if "hf" in results and "lorafast" in results:
        ratio = results["lorafast"]["samples_per_s"] / results["hf"]["samples_per_s"]
        med = results["lorafast"]["median_samples_per_s"] / results["hf"]["median_samples_per_s"]
        print(f"lorafast / HF samples/s: {ratio:.2f}x best-of-rounds, {med:.2f}x median")
        results["ratio"], results["ratio_median"] = ratio, med
    return results


def write_json(path, results):
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
