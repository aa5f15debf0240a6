"""The model on CUDA without a GPU: the whole kernels library (kernels/**/*.cu: the runtime of
device_model.cu, the device architectures of models/encoder.cu and models/decoder.cu, every kernel
family, api.cu's table) is built for the CPU emulator of tests/gpu/emulator/ as an emulated
_cuda_kernels.so, and tests/gpu/test_model_gpu.py and test_model_hf_gpu.py run in a fresh Python process
that opens it in place of the real one (LORAFAST_CUDA_LIBRARY): every model kind on "cuda" against the CPU
path in f32, with gradient checkpointing and in bf16, train-mode dropout, accumulation, moving between
devices and the Trainer on CUDA; and against transformers + peft (on the CPU here) in f32 and bf16.
The emulator must report no error (a bad pointer, an out-of-bounds copy or kernel access, a misused
barrier stop the process).

What emulation cannot show is listed in test_kernels_emulated.py; on a GPU, the two files run against
the real library. The emulated device runs its kernels on one core.
"""

import os
import re
import subprocess
import sys

import emulated_build
from conftest import skip_or_fail

TIMEOUT = 1500


def _sanitizer_preload():
    """LD_PRELOAD for a library built with AddressSanitizer, loaded into a Python that was not."""
    done = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True, text=True)
    return done.stdout.strip()


def test_model_on_emulated_cuda_matches_cpu():
    try:
        library = emulated_build.objects().kernels_library()
    except FileNotFoundError as e:
        skip_or_fail(str(e))
    env = dict(os.environ, LORAFAST_CUDA_LIBRARY=str(library))
    select = []
    if os.environ.get("LORAFAST_EMU_SANITIZE") == "1":
        env["LD_PRELOAD"] = _sanitizer_preload()
        # torch's own checkpointing throws a C++ exception inside autograd, where ASan's __cxa_throw
        # interceptor fails a CHECK once the emulator's fibers have switched stacks: not lorafast's code
        select = ["-k", "not (test_cuda_matches_transformers and True)"]
    tests = [emulated_build.REPO / "tests" / "gpu" / name for name in ("test_model_gpu.py", "test_model_hf_gpu.py")]
    done = emulated_build.run_emulated(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-rs", *select, *map(str, tests)],
        TIMEOUT, env)
    output = f"{done.stdout[-12000:]}\n{done.stderr[-6000:]}"
    print(output)
    assert done.returncode == 0, f"the model tests under emulation exited with {done.returncode}:\n{output}"
    assert "EMU ERROR" not in output and "EMU FAIL" not in output, output
    summary = re.search(r"(\d+) passed", done.stdout)
    assert summary and int(summary.group(1)) >= (15 + 8 if select else 15 + 10), f"not every model test ran:\n{output}"
    assert " skipped" not in done.stdout and " failed" not in done.stdout, output
