"""Data parallel on CUDA: 2 ranks under torchrun against the same 2 ranks on the CPU (tests/test_ddp.py's run:
3 epochs of a tiny RoBERTa with the notebook's arguments): every trainable tensor within 1e-4, both ranks
identical. ddp_backend="gloo" stages the gradients through the host; ddp_backend="nccl" all-reduces them on the
device with the nvidia-nccl-cu13 wheel's NCCL. Rank r computes on cuda:LOCAL_RANK; on a machine with one GPU the
ranks share it (the worker gives each LOCAL_RANK=0), which NCCL may refuse ("Duplicate GPU detected"): then the
test checks that the refusal is lorafast's clear error and says so in its skip reason.

Runs where a GPU is (tools/device_check.sh); skipped elsewhere (the emulated CUDA checks the staging, device
selection and the NCCL call sequence in one process: test_model_gpu.py)."""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the parity tests' helpers

pytest.importorskip("transformers")
from test_ddp import WORKER, load, torchrun, worker_env  # noqa: E402
from test_trainer import hf_tiny  # noqa: E402


def gpus():
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no GPU: data parallel on CUDA runs on a machine with one (tools/device_check.sh)")
    done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in done.stdout.splitlines())


def assert_follows_the_cpu(tmp_path, mode):
    ref, _ = load(tmp_path, "lf-rank0")
    ours, _ = load(tmp_path, f"{mode}-rank0")
    other, _ = load(tmp_path, f"{mode}-rank1")
    assert sorted(ours) == sorted(ref)
    for name in ref:
        rel = np.linalg.norm(ours[name] - ref[name]) / np.linalg.norm(ref[name])
        assert rel <= 1e-4, f"{name}: CUDA 2 ranks ({mode}) differ from CPU 2 ranks by {rel:.3g}"
        assert np.array_equal(ours[name], other[name]), f"{name} differs between the CUDA ranks ({mode})"
    assert os.path.exists(tmp_path / f"{mode}_out" / "adapter_model.safetensors")


@pytest.mark.parametrize("backend", ["gloo", "nccl"])
def test_two_ranks_on_cuda_match_two_ranks_on_the_cpu(tmp_path, backend):
    share = {"LORAFAST_TEST_SHARE_GPU": "1"} if gpus() < 2 else {}
    if backend == "nccl":
        from lorafast.distributed import nccl_library

        try:
            nccl_library()
        except RuntimeError as e:
            pytest.skip(str(e))
    hf_tiny("roberta", tmp_path)
    torchrun("lf", tmp_path)
    mode = "lf-cuda" if backend == "gloo" else "lf-nccl"
    if backend == "nccl" and share:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", WORKER, mode,
               str(tmp_path)]
        done = subprocess.run(cmd, env=worker_env(**share), capture_output=True, text=True, timeout=600)
        output = done.stdout + done.stderr
        if done.returncode != 0:
            assert "making the NCCL communicator of rank" in output, output[-4000:]
            line = next(x for x in output.splitlines() if "making the NCCL communicator" in x)
            pytest.skip(f"NCCL refuses 2 ranks on one GPU; lorafast said: {line.strip()[-400:]}")
    else:
        torchrun(mode, tmp_path, **share)
    assert_follows_the_cpu(tmp_path, mode)
