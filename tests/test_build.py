import subprocess
import sys

import lorafast


def test_build_info_has_the_documented_keys():
    info = lorafast.build_info()
    for key in ("version", "compiler", "blas", "openmp_threads", "cuda_compiled", "cuda_available", "device_name"):
        assert key in info, key
    assert info["version"] == lorafast.__version__
    assert "openblas" in info["blas"].lower()
    assert info["openmp_threads"] >= 1
    assert info["onednn"].startswith("3.2.") and info["onednn_isa"]
    assert isinstance(info["cpu_bf16"], bool) and info["cpu_bf16_reason"]
    assert isinstance(info["cuda_compiled"], bool) and isinstance(info["cuda_available"], bool)
    if not info["cuda_available"]:
        assert info["device_name"] == "cpu"
        assert info["cuda_unavailable_reason"]


def test_import_without_gpu_reports_cuda_unavailable_not_an_error():
    # a fresh interpreter: import and ask about CUDA must not raise even with no driver
    code = "import lorafast; i = lorafast.build_info(); print(i['cuda_compiled'], i['cuda_available'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    compiled, available = out.stdout.split()
    assert compiled in ("True", "False") and available in ("True", "False")


def test_cli_info_prints_json():
    out = subprocess.run([sys.executable, "-m", "lorafast", "info"], capture_output=True, text=True, check=True)
    assert '"cuda_compiled"' in out.stdout
