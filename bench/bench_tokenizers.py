"""Tokenizer throughput: lorafast (C) against Hugging Face tokenizers (Rust), same run, same machine.

Encodes the 10,876 disaster tweets (train.csv + test.csv) with each shared tokenizer
(add_prefix_space=True, truncation at 512, as the notebook) and reports tokens/s of
  lorafast        lf.AutoTokenizer(...)(texts, ...)          -> lists of input_ids / attention_mask
  rust            the transformers tokenizer's backend tokenizers.Tokenizer.encode_batch(texts)
                  (Rust; Encoding objects, no Python lists: less work than the two others)
  transformers    transformers.AutoTokenizer(...)(texts, ...) -> lists, as lorafast
on one thread and on all threads. Thread counts are fixed per process (Rust's rayon pool reads
RAYON_NUM_THREADS once), so each setting runs in a child process of this script.

    python bench/bench_tokenizers.py [--shared ../shared] [--repeat 5] [--json out.json]
"""

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
MODELS = [("byte-level BPE", "roberta-large"), ("SentencePiece BPE", "meta-llama--Llama-2-7b-hf"),
          ("SentencePiece BPE", "mistralai--Mistral-7B-v0.1"), ("WordPiece", "sentence-transformers--all-MiniLM-L6-v2")]


def tweets(shared):
    texts = []
    for name in ("train.csv", "test.csv"):
        with open(shared / "data" / "disaster_tweets" / name, encoding="utf-8", newline="") as f:
            texts += [row["text"] for row in csv.DictReader(f)]
    return texts


def best_time(fn, repeat):
    fn()  # warm-up (caches, thread pools)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def child(shared, threads, repeat):
    """Runs in a process whose thread counts are fixed; prints one JSON line."""
    sys.path.insert(0, str(REPO))
    import transformers

    import lorafast as lf

    transformers.logging.set_verbosity_error()
    texts = tweets(shared)
    rows = []
    for family, name in MODELS:
        folder = shared / "models" / name
        hf = transformers.AutoTokenizer.from_pretrained(folder, add_prefix_space=True)
        tok = lf.AutoTokenizer.from_pretrained(folder, add_prefix_space=True)
        tok.num_threads = 1 if threads == "1" else 0
        ours = tok(texts, truncation=True, max_length=512)
        theirs = hf(texts, truncation=True, max_length=512)
        assert ours["input_ids"] == theirs["input_ids"], f"{name}: lorafast and transformers disagree"
        n_tokens = sum(len(r) for r in ours["input_ids"])
        backend = hf._tokenizer
        backend.enable_truncation(512)
        t_lf = best_time(lambda: tok(texts, truncation=True, max_length=512), repeat)
        t_rust = best_time(lambda: backend.encode_batch(texts), repeat)
        t_hf = best_time(lambda: hf(texts, truncation=True, max_length=512), repeat)
        rows.append({"family": family, "model": name, "threads": threads, "tokens": n_tokens,
                     "lorafast_tok_s": n_tokens / t_lf, "rust_tok_s": n_tokens / t_rust,
                     "transformers_tok_s": n_tokens / t_hf})
    print(json.dumps(rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("LORAFAST_SHARED", str(REPO.parent / "shared")))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child", choices=["1", "all"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    shared = pathlib.Path(args.shared)
    if args.child:
        child(shared, args.child, args.repeat)
        return
    if not (shared / "models").is_dir():
        sys.exit(f"shared folder not found at {shared} (set LORAFAST_SHARED or --shared)")
    results = []
    for threads in ("1", "all"):
        env = dict(os.environ)
        env.pop("RAYON_NUM_THREADS", None)
        env["TOKENIZERS_PARALLELISM"] = "true"
        if threads == "1":
            env.update(RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1")
        out = subprocess.run([sys.executable, __file__, "--child", threads, "--shared", str(shared),
                              "--repeat", str(args.repeat)], env=env, check=True, capture_output=True, text=True)
        results += json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{len(tweets(shared))} tweets, truncation 512, best of {args.repeat}; {os.cpu_count()} CPUs")
    print(f"{'family':18} {'model':40} {'threads':>7} {'tokens':>8} {'lorafast tok/s':>15} {'rust tok/s':>12} "
          f"{'lf/rust':>8} {'transformers tok/s':>19} {'lf/transformers':>16}")
    for r in results:
        print(f"{r['family']:18} {r['model']:40} {r['threads']:>7} {r['tokens']:>8} {r['lorafast_tok_s']:>15,.0f} "
              f"{r['rust_tok_s']:>12,.0f} {r['lorafast_tok_s'] / r['rust_tok_s']:>8.2f} "
              f"{r['transformers_tok_s']:>19,.0f} {r['lorafast_tok_s'] / r['transformers_tok_s']:>16.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
