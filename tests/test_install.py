"""What a newcomer meets before anything trains: importing lorafast from a source tree without
the built extension, a CUDA build on a machine with no NVIDIA driver or no GPU, and the package
data that a non-editable `pip install .` ships."""

import ctypes
import os
import shutil
import subprocess
import sys

import numpy
import pytest
import scipy_openblas32

from conftest import REPO


def site_dirs():
    """Folders holding numpy and scipy_openblas32, for a `python -S` that sees no .pth file (an
    editable install's finder would otherwise supply the built lorafast._C)."""
    return [os.path.dirname(os.path.dirname(m.__file__)) for m in (numpy, scipy_openblas32)]


@pytest.mark.parametrize("command", [["-c", "import lorafast"], ["-m", "lorafast", "train", "--help"]])
def test_source_tree_without_the_extension_says_so(tmp_path, command):
    (tmp_path / "lorafast").mkdir()
    for f in (REPO / "lorafast").glob("*.py"):
        shutil.copy(f, tmp_path / "lorafast")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + site_dirs()))
    proc = subprocess.run([sys.executable, "-S"] + command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert (f"lorafast was imported from {tmp_path / 'lorafast'}, a source tree without the built C extension "
            "(lorafast._C)") in proc.stderr, proc.stderr
    assert "pip install -e ." in proc.stderr and "circular import" not in proc.stderr


FAKE_KERNELS = r"""
#include "core/cuda_backend.h"
static int device_count(int *count) { *count = COUNT; return CODE; }
static const char *error_string(int code) { (void)code; return "the runtime's text for the code"; }
static const lf_cuda_api api = {.version = LF_CUDA_API_VERSION, .api_size = sizeof(lf_cuda_api),
                                .device_count = device_count, .error_string = error_string};
const lf_cuda_api *lf_cuda_get_api(void) { return &api; }
"""


def driver_present():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@pytest.mark.parametrize("code, count, fake_driver, expected", [
    # cudaErrorInsufficientDriver, what the CUDA runtime answers when there is no driver at all
    (35, 0, False, "no NVIDIA driver found (libcuda.so.1: cannot open shared object file"),
    (35, 0, True, "the runtime's text for the code"),  # a driver, too old for the runtime
    (100, 0, True, "no CUDA GPU (the NVIDIA driver is installed but reports no device)"),  # cudaErrorNoDevice
    (0, 0, True, "no CUDA GPU (the NVIDIA driver is installed but reports no device)"),
])
def test_no_driver_or_no_gpu_is_said_plainly(tmp_path, code, count, fake_driver, expected):
    """A kernels library whose runtime finds no device (a stand-in with the runtime's answers,
    opened through LORAFAST_CUDA_LIBRARY); the driver is a stand-in libcuda.so.1 or absent."""
    if not fake_driver and driver_present():
        pytest.skip("an NVIDIA driver is installed here")
    gcc = shutil.which("gcc") or pytest.fail("gcc not found (it builds lorafast)")
    (tmp_path / "kernels.c").write_text(FAKE_KERNELS)
    library = tmp_path / "kernels.so"
    subprocess.run([gcc, "-std=c11", "-shared", "-fPIC", f"-I{REPO / 'csrc'}", f"-DCODE={code}", f"-DCOUNT={count}",
                    str(tmp_path / "kernels.c"), "-o", str(library)], check=True)
    # the lorafast under test, whichever way the suite imports it
    import lorafast

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(lorafast.__file__)))
    env = dict(os.environ, LORAFAST_CUDA_LIBRARY=str(library),
               PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]))
    if fake_driver:
        (tmp_path / "driver.c").write_text("int cuInit(unsigned flags) { (void)flags; return 100; }\n")
        subprocess.run([gcc, "-shared", "-fPIC", str(tmp_path / "driver.c"), "-o", str(tmp_path / "libcuda.so.1")],
                       check=True)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(tmp_path), os.environ.get("LD_LIBRARY_PATH", "")])
    script = ("import lorafast, numpy\n"
              "print(lorafast.build_info()['cuda_unavailable_reason'])\n"
              "try:\n"
              "    cfg = lorafast.AutoConfig.for_model('bert', vocab_size=20, hidden_size=8, num_hidden_layers=1,\n"
              "                                         num_attention_heads=2, intermediate_size=8)\n"
              "    lorafast.AutoModelForSequenceClassification.from_config(cfg, num_labels=2).to('cuda')\n"
              "except RuntimeError as e:\n"
              "    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    reason, error = proc.stdout.splitlines()
    assert reason.startswith(expected), reason
    assert error == f"CUDA unavailable: {reason}"


def test_the_disaster_tweets_are_package_data(tmp_path):
    """What `pip install .` copies into the wheel: the data beside the modules (setup.py build_py,
    the step that collects package data, into a temporary folder)."""
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "-e", str(tmp_path), "build_py", "-d",
                    str(tmp_path / "lib")], cwd=REPO, check=True, capture_output=True)
    data = tmp_path / "lib" / "lorafast" / "data" / "disaster_tweets"
    assert sorted(p.name for p in data.iterdir()) == ["SOURCE.md", "test.csv", "train.csv"]
    for name in ("train.csv", "test.csv"):
        assert (data / name).read_bytes() == (REPO / "lorafast" / "data" / "disaster_tweets" / name).read_bytes()
