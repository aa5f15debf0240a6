"""Data parallel (lorafast/distributed.py, the C loop's grad_reduce and epoch_order): 2 ranks under torchrun
with gloo against transformers.Trainer + peft under torchrun on the same adapter (every trainable tensor,
the logged losses and norms), both ranks identical, only rank 0 writes; a rank that dies makes the other
fail with a clear error; the sharding against accelerate's own samplers; the launchers' variables."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import lorafast as lf
from lorafast import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "ddp_worker.py")
ENV_NAMES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
             "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MV2_COMM_WORLD_RANK",
             "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK")


def worker_env(**extra):
    """The environment of a rank: this checkout first on the path, one thread, no launcher left over."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update(PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1", **extra)
    return env


def torchrun(mode, folder, timeout=300, **env):
    """Runs ddp_worker.py MODE FOLDER on 2 ranks under torchrun (env: more variables); an AssertionError with its
    output if it fails."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", WORKER, mode,
           str(folder)]
    done = subprocess.run(cmd, env=worker_env(**env), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"torchrun {mode} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def mpiexec(mode, folder, timeout=300):
    """ddp_worker.py MODE FOLDER on 2 ranks started by MPICH's mpiexec (the mpich wheel of the test extras)."""
    import shutil

    if shutil.which("mpiexec") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mpiexec is missing: install the test extras (the mpich wheel)")
        pytest.skip("no mpiexec here (pip install mpich)")
    cmd = ["mpiexec", "-n", "2", sys.executable, WORKER, mode, str(folder)]
    done = subprocess.run(cmd, env=worker_env(MASTER_PORT=str(free_port())), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"mpiexec {mode} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def load(folder, name):
    with np.load(folder / f"{name}.npz") as f:
        tensors = dict(f)
    with open(folder / f"{name}.json") as f:
        return tensors, json.load(f)


def test_two_ranks_match_hf_trainer_peft_under_torchrun(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from test_trainer import assert_follows, hf_tiny, without_runtime

    hf_tiny("roberta", tmp_path)
    start = lf.PeftModel.from_pretrained(
        lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2),
        tmp_path / "adapter", is_trainable=True).trainable_state_dict()
    torchrun("hf", tmp_path)
    torchrun("lf", tmp_path)
    ref, ref_log = load(tmp_path, "hf-rank0")
    ours, info = load(tmp_path, "lf-rank0")
    other, other_info = load(tmp_path, "lf-rank1")
    assert sorted(ours) == sorted(ref) == sorted(other)
    assert_follows(ours, ref, start, 10, "from HF DDP after 3 epochs")
    for name in ref:
        assert np.array_equal(ours[name], other[name]), f"{name} differs between the ranks"
    # 46 examples, 2 ranks x 4: 6 updates per epoch; the logged loss is the mean over the ranks, as HF's
    steps = [e for e in info["log_history"] if "loss" in e]
    ref_steps = [e for e in ref_log["log_history"] if "loss" in e]
    assert [e["step"] for e in steps] == [e["step"] for e in ref_steps] == list(range(1, 19))
    for e, r in zip(steps, ref_steps):
        assert e["loss"] == pytest.approx(r["loss"], rel=1e-4)
        assert e["grad_norm"] == pytest.approx(r["grad_norm"], rel=1e-3)
        assert e["epoch"] == pytest.approx(r["epoch"])
    assert without_runtime(other_info["log_history"]) == without_runtime(info["log_history"])
    assert (info["world_size"], info["process_index"], info["is_world_process_zero"]) == (2, 0, True)
    assert (other_info["process_index"], other_info["is_world_process_zero"]) == (1, False)
    # rank 0 wrote the checkpoints and the adapter, rank 1 nothing
    assert other_info["writes"] == []
    out = tmp_path / "lf_out"  # ddp_worker's f"{mode}_out"
    assert {p for p in os.listdir(out) if p.startswith("checkpoint-")} == {"checkpoint-6", "checkpoint-12",
                                                                            "checkpoint-18"}
    assert (out / "adapter_model.safetensors").exists()
    # both ranks resume from rank 0's checkpoint of epoch 1 to the same tensors, bit for bit
    torchrun("resume", tmp_path)
    for rank in range(2):
        resumed, _ = load(tmp_path, f"resume-rank{rank}")
        for name in ours:
            assert np.array_equal(resumed[name], ours[name]), f"rank {rank}: {name} differs after resuming"
    # mpiexec instead of torchrun: the same run (the same engine, gloo), rank 0 alone writes
    mpiexec("mpi", tmp_path)
    mpi, mpi_info = load(tmp_path, "mpi-rank0")
    mpi_other, mpi_other_info = load(tmp_path, "mpi-rank1")
    for name in ours:
        assert np.array_equal(mpi[name], ours[name]) and np.array_equal(mpi_other[name], ours[name]), name
    assert (mpi_info["world_size"], mpi_other_info["process_index"], mpi_other_info["writes"]) == (2, 1, [])
    written = {os.path.relpath(p, out) for p in info["writes"]}
    assert "adapter_config.json" in written and any(p.startswith(".checkpoint-6.tmp-") for p in written)
    assert not any(".tmp-" in p for p in os.listdir(out))


def test_dropout_masks_differ_per_rank_where_hf_draws_the_same(tmp_path):
    """Every rank trains the same rows (so only dropout can tell their gradients apart). lorafast: with hidden
    and LoRA dropout 0.1 the ranks' first local gradients (before the all-reduce) differ, rank r's masks drawn
    from seed + r; with dropout 0 they are equal (the control). HF under torchrun draws the same masks on every
    rank (transformers' set_seed(args.seed) on each, no rank offset), recorded here so that a change shows."""
    torchrun("dropout", tmp_path)
    ranks = [dict(np.load(tmp_path / f"dropout-rank{r}.npz")) for r in range(2)]
    assert np.array_equal(ranks[0]["no_dropout"], ranks[1]["no_dropout"])
    grads = [r["dropout"][:-1] for r in ranks]  # the last float is the loss
    assert np.abs(grads[0] - grads[1]).max() > 1e-3 * np.abs(grads[0]).max(), "the ranks drew the same masks"
    assert not np.array_equal(ranks[0]["dropout"], ranks[0]["no_dropout"]), "dropout was off"
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    torchrun("hf-dropout", tmp_path)
    hf = [dict(np.load(tmp_path / f"hf-dropout-rank{r}.npz")) for r in range(2)]
    assert len(hf[0]) == 10 and sorted(hf[0]) == sorted(hf[1])  # every nn.Dropout of the model saw a forward
    for name in hf[0]:
        assert 0 < hf[0][name].mean() < 0.5, name
        assert np.array_equal(hf[0][name], hf[1][name]), f"HF's ranks drew different masks at {name}"


def test_evaluation_is_sharded_and_gathered_as_one_process_would(tmp_path):
    """evaluate() and predict() on 2 ranks: rank r computes the eval batches r, r + 2, ... (HF's sharding of the
    eval loader), the logits are gathered in order: every rank gets one process's predictions, loss and metrics."""
    pytest.importorskip("transformers")
    from ddp_worker import rows
    from test_trainer import accuracy, hf_tiny

    hf_tiny("roberta", tmp_path)
    torchrun("eval", tmp_path)
    lf._C.set_num_threads(1)
    base = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2)
    model = lf.PeftModel.from_pretrained(base, tmp_path / "adapter", is_trainable=True)
    from test_trainer import CLASS_WEIGHTS, NOTEBOOK_ARGS

    args = lf.TrainingArguments(output_dir=str(tmp_path / "one"), use_cpu=True,
                                **{**NOTEBOOK_ARGS, "per_device_eval_batch_size": 5})
    trainer = lf.Trainer(model=model, args=args, eval_dataset=rows()[:23], compute_metrics=accuracy,
                         class_weights=CLASS_WEIGHTS)
    metrics, predicted = trainer.evaluate(), trainer.predict(rows()[23:])
    for rank in range(2):
        ours, info = load(tmp_path, f"eval-rank{rank}")
        np.testing.assert_array_equal(ours["predictions"], predicted.predictions)
        np.testing.assert_array_equal(ours["label_ids"], predicted.label_ids)
        for got, ref in ((info["eval"], metrics), (info["test"], predicted.metrics)):
            for key in ref:
                if key.endswith("_loss"):
                    assert got[key] == pytest.approx(ref[key], rel=1e-12), key
                elif not key.endswith(("_runtime", "_per_second")) and key != "epoch":
                    assert got[key] == ref[key], key
    assert 0 < metrics["eval_accuracy"] < 1 and len(predicted.predictions) == 23
    # 23 rows in batches of 5: batches 0, 2, 4 on rank 0, batches 1, 3 on rank 1 (evaluate, then predict)
    assert [load(tmp_path, f"eval-rank{r}")[1]["computed"] for r in range(2)] == [[5, 5, 3] * 2, [5, 5] * 2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode, timeout", [("die", 20), ("hang", 5)])
def test_a_dead_or_hung_rank_fails_the_other_with_a_clear_error(tmp_path, mode, timeout):
    """Rank 1 exits (die) or stops answering (hang) after update 2, the launcher's variables set by hand (no
    torchrun to kill the survivor): rank 0 stops at update 3's all-reduce with an error naming it and
    ddp_timeout: at once when the peer is gone, after ddp_timeout=5 s when it hangs."""
    from test_trainer import hf_tiny

    pytest.importorskip("transformers")
    hf_tiny("roberta", tmp_path)
    port = str(free_port())
    ranks = [subprocess.Popen([sys.executable, WORKER, mode, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=worker_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                             MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(2)]
    start = time.monotonic()
    try:
        _, err = ranks[0].communicate(timeout=120)
        elapsed = time.monotonic() - start
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
            p.communicate()
    assert ranks[0].returncode != 0
    assert "data parallel: rank 0 of 2: the gradient all-reduce of update 3 failed" in err, err[-3000:]
    assert f"ddp_timeout={timeout}s" in err
    assert elapsed < 90
    if mode == "die":
        assert ranks[1].returncode == 3
    assert not (tmp_path / f"{mode}-rank0.npz").exists()


@pytest.mark.parametrize("n, batch, world, drop_last", [
    (46, 4, 2, False), (46, 4, 2, True), (21, 4, 3, False), (21, 4, 3, True), (5, 4, 2, False), (3, 2, 4, False),
    (24, 4, 2, False), (30, 3, 4, False),
])
def test_sharding_is_accelerates(n, batch, world, drop_last):
    """shard_order against the samplers HF's Trainer runs under torchrun (accelerate's SeedableRandomSampler
    and BatchSamplerShard), over epochs, padding and dropped remainders."""
    pytest.importorskip("accelerate")
    import torch
    from accelerate.data_loader import BatchSamplerShard, SeedableRandomSampler

    seed = 42
    for epoch in range(3):
        for rank in range(world):
            sampler = SeedableRandomSampler(data_source=range(n), data_seed=seed)
            sampler.set_epoch(epoch)
            shard = BatchSamplerShard(torch.utils.data.BatchSampler(sampler, batch, drop_last), num_processes=world,
                                      process_index=rank, even_batches=True)
            expected = [i for b in shard for i in b]
            ours = distributed.shard_order(n, epoch, seed, batch, world, rank, drop_last)
            assert ours.tolist() == expected, (epoch, rank)
            assert len(ours) == distributed.epoch_size(n, batch, world, drop_last)


def test_launcher_variables_and_arguments(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.launcher_env() == (0, 1, -1)
    args = lf.TrainingArguments(output_dir="unused")
    assert (args.world_size, args.process_index, args.local_process_index, args.local_rank) == (1, 0, 0, -1)
    assert args.ddp_timeout == 1800 and args.ddp_backend is None
    assert distributed.launcher_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    assert distributed.launcher_env({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
                                     "OMPI_COMM_WORLD_LOCAL_RANK": "1"}) == (1, 2, 1)
    assert distributed.launcher_env({"PMI_RANK": "2", "PMI_SIZE": "3", "MPI_LOCALRANKID": "0"}) == (2, 3, 0)
    with pytest.raises(ValueError, match="RANK=2 is outside"):
        distributed.launcher_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        distributed.launcher_env({"WORLD_SIZE": "two"})
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = lf.TrainingArguments(output_dir="unused", local_rank=0)
    assert (args.world_size, args.process_index, args.local_process_index, args.should_save) == (2, 1, 1, False)
    with pytest.raises(ValueError, match="ddp_backend='hccl' is not supported"):
        lf.TrainingArguments(output_dir="unused", ddp_backend="hccl")
    assert lf.TrainingArguments(output_dir="unused", ddp_backend="nccl").ddp_backend == "nccl"
    with pytest.raises(ValueError, match="ddp_timeout must be a number of seconds > 0, got 0"):
        lf.TrainingArguments(output_dir="unused", ddp_timeout=0)


def test_nccl_library_is_the_wheels_or_a_clear_error(monkeypatch):
    """ddp_backend="nccl" opens libnccl.so.2 of the nvidia-nccl-cu13 wheel (the gpu extra), or the one
    LORAFAST_NCCL_LIBRARY names; without either, an error naming the wheel and the extra."""
    from importlib import metadata

    assert distributed.nccl_library({"LORAFAST_NCCL_LIBRARY": "/opt/nccl/libnccl.so.2"}) == "/opt/nccl/libnccl.so.2"

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(RuntimeError, match=r"nvidia-nccl-cu13 wheel, which is not installed: pip install "
                                           r"'lorafast\[gpu\]'"):
        distributed.nccl_library({})


def test_c_loop_checks_the_data_parallel_hooks():
    from test_trainer import tiny_roberta, token_rows

    model = tiny_roberta()
    rows = token_rows(8, 97, seed=16, bos=0)
    trainer = lf.Trainer(model=model, args=lf.TrainingArguments(output_dir="unused"), train_dataset=rows)
    enc = trainer._encode(rows, "train_dataset", True)
    numel = sum(d.size for _, d in trainer._params())
    state = {"global_step": 0, "epoch": 0, "batch_in_epoch": 0, "micro_steps": 0, "last_log_step": 0,
             "skipped_steps": 0, "growth_tracker": 0, "loss_total": 0.0, "loss_since_log": 0.0, "loss_scale": 1.0,
             "exp_avg": np.zeros(numel, np.float32), "exp_avg_sq": np.zeros(numel, np.float32)}
    seen = []

    def run(order, reduce=lambda buf: seen.append(buf.size), size=4, **plan):
        config = {**trainer._plan(enc), "max_steps": 1, **plan, "epoch_order": order, "grad_reduce": reduce,
                  "epoch_size": size}
        lf._C.train_run(model.c_model, (enc.ids, enc.offsets, enc.labels), state=dict(state), config=config,
                        callback=lambda ev: False)

    with pytest.raises(ValueError, match="holds example 8 at 1, outside"):
        run(lambda epoch: np.array([0, 8, 1, 2]))
    with pytest.raises(ValueError, match=r"epoch_order\(0\) returned 3 examples, the epoch has epoch_size=4"):
        run(lambda epoch: np.arange(3))
    with pytest.raises(TypeError, match="both be callables"):
        run(lambda epoch: np.arange(4), reduce=None)
    with pytest.raises(ValueError, match="epoch_size must be >= 1"):
        run(lambda epoch: np.arange(4), size=0)
    with pytest.raises(ZeroDivisionError):
        run(lambda epoch: np.arange(4), reduce=lambda buf: 1 / 0)
    run(lambda epoch: np.arange(4))
    assert seen == [numel + 1]  # one all-reduce per update: the gradients and the loss
    with pytest.raises(ValueError, match=r"all-reduced on the device \(NCCL\) only for a model on CUDA"):
        run(lambda epoch: np.arange(4), grad_reduce_device=True)
