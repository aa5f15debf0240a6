"""Data parallel scaling: the lorafast Trainer on 1 and on 2 ranks (torchrun, gloo), MiniLM (real
all-MiniLM-L6-v2 weights, f32, LoRA r=8 on query/value + the head), 1 thread per rank, the same
tweets: train samples/s (all ranks together: the epoch's examples / train_runtime) and the time per
update spent in the gradient all-reduce (lorafast.distributed's timer around torch.distributed's
all_reduce of the flat gradient-and-loss buffer, rank 0's, so waits for a slower rank count too).

    python bench/bench_ddp.py [--rows 512] [--epochs 1] [--batch 8] [--ranks 1,2] [--out FILE]
                              [--allreduce_mib 3.28,160]

--allreduce_mib S,...: also times torch.distributed's gloo all_reduce alone (2 ranks, median of 5 after
a warm-up) of S MiB of float32 each: 3.28 and 160 MiB (3.44 and 167.8 MB) are Mistral-7B's notebook
adapter (r=2 on q,v) and r=16 on every linear (README, Data parallel).

Each rank count runs in a fresh `torchrun --standalone --nproc_per_node N` (this file with --worker);
rank 0 prints one RESULT line. On a shared machine the timings are not results: smoke-test it small
(`--rows 64`) and measure on a quiet machine with at least as many cores as ranks.
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("LORAFAST_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data" / "disaster_tweets"
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"])


def worker(args):
    sys.path.insert(0, str(REPO))
    import lorafast as lf
    from lorafast.workflow import find_model

    lf._C.set_num_threads(1)
    folder = find_model("all-MiniLM-L6-v2")
    data = lf.load_dataset("csv", data_files={"train": str(DATA / "train.csv")})["train"]
    data = data.select(range(min(args.rows, len(data))))
    tok = lf.AutoTokenizer.from_pretrained(folder)
    data = data.map(lambda e: tok(e["text"], truncation=True, max_length=512), batched=True,
                    remove_columns=[c for c in data.column_names if c != "target"]).rename_column("target", "label")
    model = lf.get_peft_model(lf.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2),
                              lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, **LORA))
    targs = lf.TrainingArguments(output_dir=args.output_dir, per_device_train_batch_size=args.batch,
                                 num_train_epochs=args.epochs, learning_rate=5e-4, save_strategy="no",
                                 eval_strategy="no", logging_strategy="no", disable_tqdm=True, report_to="none",
                                 ddp_backend="gloo")
    trainer = lf.Trainer(model=model, args=targs, train_dataset=data)
    start = time.perf_counter()
    out = trainer.train()
    wall = time.perf_counter() - start
    dp = trainer._dp
    floats = sum(d.size for _, d in trainer._params()) + 1  # the gradients and the loss
    if targs.process_index == 0:
        print("RESULT " + json.dumps({
            "ranks": targs.world_size, "rows": len(data), "epochs": args.epochs, "per_device_batch": args.batch,
            "updates": out.global_step, "train_wall_s": wall,
            "samples_per_s": len(data) * args.epochs / wall,
            "allreduce_floats": floats, "allreduce_mib": floats * 4 / 2**20,
            "allreduce_ms_per_update": 1e3 * dp.seconds / dp.calls if dp.calls else 0.0,
            "allreduce_share": dp.seconds / wall}), flush=True)


def allreduce_worker(sizes):
    import statistics

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    out = {}
    for mib in sizes:
        t = torch.ones(int(mib * 2**20 / 4), dtype=torch.float32)
        times = []
        for i in range(6):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(t)
            if i:
                times.append(time.perf_counter() - start)
        out[str(mib)] = 1e3 * statistics.median(times)
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps({"ranks": dist.get_world_size(), "allreduce_ms": out}), flush=True)
    dist.destroy_process_group()


def launch(ranks, args, worker_args=None):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), __file__,
           *(worker_args or ["--worker", "--rows", str(args.rows), "--epochs", str(args.epochs), "--batch",
                             str(args.batch), "--output_dir", args.output_dir])]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{ranks} rank(s) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--out")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--output_dir", default=None)
    p.add_argument("--allreduce_mib", default=None)
    p.add_argument("--allreduce_worker", action="store_true")
    args = p.parse_args()
    sizes = [float(s) for s in args.allreduce_mib.split(",")] if args.allreduce_mib else []
    if args.allreduce_worker:
        return allreduce_worker(sizes)
    if args.worker:
        return worker(args)
    import tempfile

    print(f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load average before "
          f"{os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        args.output_dir = tmp
        results = [launch(int(r), args) for r in args.ranks.split(",")]
    print(f"{'ranks':>5s} {'updates':>7s} {'samples/s':>10s} {'speedup':>8s} {'all-reduce MiB':>15s} "
          f"{'ms/update':>10s} {'share':>6s}")
    for r in results:
        print(f"{r['ranks']:5d} {r['updates']:7d} {r['samples_per_s']:10.1f} "
              f"{r['samples_per_s'] / results[0]['samples_per_s']:8.2f} {r['allreduce_mib']:15.2f} "
              f"{r['allreduce_ms_per_update']:10.2f} {r['allreduce_share']:6.1%}")
    if sizes:
        alone = launch(2, args, ["--allreduce_worker", "--allreduce_mib", args.allreduce_mib])
        results.append(alone)
        for mib, ms in alone["allreduce_ms"].items():
            print(f"gloo all_reduce of {float(mib):8.2f} MiB over 2 ranks: {ms:9.2f} ms")
    print(f"load average after {os.getloadavg()}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(cpus=os.cpu_count(), load_average_after=os.getloadavg(), runs=results), f, indent=2)


if __name__ == "__main__":
    main()
