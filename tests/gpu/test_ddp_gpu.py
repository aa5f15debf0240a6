"""Data parallel on CUDA: 2 ranks under torchrun (gloo, the gradients staged through the host), both on the
one GPU (CUDA_VISIBLE_DEVICES=0), against the same 2 ranks on the CPU (tests/test_ddp.py's run: 3 epochs of a tiny RoBERTa
with the notebook's arguments): every trainable tensor within 1e-4, both ranks identical.

Runs where a GPU is (tools/device_check.sh); skipped elsewhere (the emulated CUDA checks the staging in
one process: test_model_gpu.py's test_data_parallel_gradients_go_through_the_host_on_cuda)."""

import os
import pathlib
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the parity tests' helpers

pytest.importorskip("transformers")
from test_ddp import load, torchrun  # noqa: E402
from test_trainer import hf_tiny  # noqa: E402


def test_two_ranks_on_cuda_match_two_ranks_on_the_cpu(tmp_path):
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no GPU: data parallel on CUDA runs on a machine with one (tools/device_check.sh)")
    hf_tiny("roberta", tmp_path)
    torchrun("lf", tmp_path)
    torchrun("lf-cuda", tmp_path, CUDA_VISIBLE_DEVICES="0")  # both ranks on the one GPU, on purpose
    ref, _ = load(tmp_path, "lf-rank0")
    ours, _ = load(tmp_path, "lf-cuda-rank0")
    other, _ = load(tmp_path, "lf-cuda-rank1")
    assert sorted(ours) == sorted(ref)
    for name in ref:
        rel = np.linalg.norm(ours[name] - ref[name]) / np.linalg.norm(ref[name])
        assert rel <= 1e-4, f"{name}: CUDA 2 ranks differ from CPU 2 ranks by {rel:.3g}"
        assert np.array_equal(ours[name], other[name]), f"{name} differs between the CUDA ranks"
    assert os.path.exists(tmp_path / "lf-cuda_out" / "adapter_model.safetensors")
