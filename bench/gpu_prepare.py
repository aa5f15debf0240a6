"""Writes what bench/gpu_bench.py needs on a GPU machine that has no ../shared: the configs of
roberta-large and Mistral-7B-v0.1 and real tweet batches tokenized by their tokenizers
(batch 8, padded per batch as DataCollatorWithPadding does), into bench/gpu_inputs/ (ignored
by git; the device call carries it).

    python bench/gpu_prepare.py [--batches 220]
"""

import argparse
import json
import shutil

import numpy as np
from _common import HERE, SHARED, tweet_batches

MODELS = {"roberta-large": "roberta-large", "mistral": "mistralai--Mistral-7B-v0.1"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=220, help="batches per model (200 timed + warm-up)")
    args = parser.parse_args()
    out = HERE / "gpu_inputs"
    for name, folder in MODELS.items():
        src = SHARED / "models" / folder
        if not src.is_dir():
            src = SHARED / "models" / folder.split("--")[-1]
        dst = out / name
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "config.json", dst / "config.json")
        batches = tweet_batches(str(src), n_batches=args.batches)
        np.savez_compressed(dst / "batches.npz", **batches)
        tokens = sum(int(v.sum()) for k, v in batches.items() if k.startswith("mask_"))
        print(json.dumps({"model": name, "folder": str(src), "batches": args.batches, "real_tokens": tokens}))


if __name__ == "__main__":
    main()
