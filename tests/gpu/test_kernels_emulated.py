"""The CUDA kernels against the CPU ops without a GPU: every tests/gpu/kernels/check_<op>.cu program is
built with g++ for the CPU emulator in tests/gpu/emulator/ (the CUDA runtime, the device built-ins the
kernels use and cuBLASLt, emulated), with kernels/*.cu (but api.cu, device_model.cu and models/) and the
CPU ops, and run: each must print its summary line with 0 failed, and the emulator must report no
error. Under emulation (LF_EMULATED) the check programs shrink or skip their largest cases, keeping
every kernel, dtype and flag; test_kernels.py runs them in full on a GPU.

What the emulation checks:
- indexing and bounds: every thread of every block runs, so results are compared element for element
  with the CPU ops (the arithmetic, in f32 on both sides, to the checks' tolerances); device memory is
  filled with NaN bytes and guarded by inaccessible pages (a read or write past an allocation, of freed
  memory, or past the dynamic shared memory stops the program naming kernel, block and thread; a write
  into an allocation's padding is reported after the launch); pointers passed to kernels, copies and
  memsets must lie in live device allocations;
- barriers: a block's threads are fibers, each run until its next barrier, so a missing __syncthreads
  or __syncwarp shows as a read of data not yet written (shared memory is filled with NaN bytes for
  every block) or already overwritten; a barrier some threads never reach (after others exited, or
  while others wait elsewhere: a deadlock), a warp operation with a mask naming absent or exited lanes,
  or lanes meeting in different warp operations stops the program;
- races between blocks that depend on their order: blocks run in a shuffled order and a block's
  threads in increasing or decreasing order; atomics, warp shuffles and votes as CUDA defines them;
- masks and RNG: dropout masks are computed by the kernels' own code, so they are compared exactly;
- launch limits: grid (2^31 - 1, 65535, 65535), block (1024, 1024, 64) and 1024 threads, 48 KiB of
  static and of default dynamic shared memory, 99 KiB with cudaFuncSetAttribute (sm_86/sm_89, the
  smallest of the architectures built), 32764 bytes of parameters, live streams;
- cuBLASLt: layouts, shapes, type combinations, alignment promises, workspace and operand bounds of
  every call (tests/gpu/emulator/cublaslt.cpp), the product itself in double.
- stream capture and graphs: a capturing stream records its work by value and runs none of it; each
  cudaGraphLaunch replays it with the checks of a direct call; the calls CUDA refuses during a capture
  return CUDA's codes and invalidate the capture (the self-test's GRAPH_FAULTS).

What it cannot check: timing, occupancy, registers, coalescing and anything of performance; races
between threads of a grid that a sequential order hides (two blocks writing one element without an
atomic run one after the other; within a block, fibers switch only at barriers, so unsynchronized
accesses between barriers are never interleaved); the memory model beyond that (fences, volatile);
cuBLASLt's own heuristics, algorithms and their rounding; limits a real card has beyond those above
(registers per thread, __launch_bounds__, per-SM resources); the device's own math functions (expf,
erff, ... are glibc's, within an ulp or two of CUDA's) and FMA contraction (nvcc fuses, g++ here does
not); host code that dereferences device memory (it is host memory here).

LORAFAST_EMU_SANITIZE=1 builds everything with AddressSanitizer and UndefinedBehaviorSanitizer (slower;
the fiber switches are announced to ASan). LF_EMU_SEED=n changes the block order.
"""

import concurrent.futures
import os
import pathlib
import shutil
import subprocess
import sys

import emulated_build
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/, also when run as a script
from conftest import skip_or_fail  # noqa: E402

# the slowest first, so that the runs on two cores end together
RUN_ORDER = ["check_attention", "check_lora", "check_matmul", "check_layernorm", "check_rmsnorm"]
RUN_TIMEOUT = 900
# a fault the emulator's self-test plants: (mode, exit status, what the emulator must say)
SELFTEST_FAULTS = [
    ("deadlock", 70, "deadlock in block"),
    ("exit_at_barrier", 70, "exits while"),
    ("barrier_after_exit", 70, "__syncthreads after"),
    ("partial_warp_mask", 70, "which has lanes 0x0000ffff only"),
    ("divergent_shuffle", 70, "divergent warp operations"),
    ("write_past_end", 71, "wrote past the end of a 400-byte device allocation"),
    ("read_far_past_end", 70, "past the end of a 400-byte device allocation"),
    ("use_after_free", 70, "in freed device memory"),
    ("host_pointer", 71, "argument 0"),
    ("grid_y", 71, "grid (1, 65536, 1)"),
    ("dynamic_shared", 71, "bytes of dynamic shared memory"),
    ("shared_attribute", 71, "102400 bytes of dynamic shared memory (at most 101376"),
    ("dynamic_shared_overrun", 70, "past the end of the block's 64 bytes of dynamic shared memory"),
    ("copy_out_of_bounds", 71, "past the end of its device allocation"),
]
# a misuse of stream capture or graphs: (mode, what the emulator must say, the codes the calls returned
# and cudaStreamEndCapture's, as CUDA's; -1 where none); each exits with status 71
GRAPH_FAULTS = [
    ("capture_legacy_stream", "cudaStreamBeginCapture of the legacy stream", "returned 900 -1 -1 -1, end capture -1"),
    ("end_not_capturing", "not capturing: cudaErrorIllegalState", "returned 401 -1 -1 -1, end capture -1"),
    ("exec_after_destroy", "used after cudaGraphExecDestroy", "returned 400 -1 -1 -1, end capture -1"),
    ("capture_twice", "capturing already: cudaErrorIllegalState", "returned 401 -1 -1 -1, end capture 0, graph made"),
    ("capture_sync_stream", "cudaStreamSynchronize of a capturing stream: cudaErrorStreamCaptureUnsupported; "
     "the capture of stream", "returned 900 -1 -1 -1, end capture 901, graph null"),
    ("capture_device_sync", "cudaDeviceSynchronize while a stream captures",
     "returned 900 -1 -1 -1, end capture 901, graph null"),
    ("capture_sync_copy", "cudaMemcpy while a stream captures in the global mode",
     "returned 900 -1 -1 -1, end capture 901, graph null"),
    ("capture_allocations", "cudaFreeHost while a stream captures in the thread-local mode",
     "returned 900 900 900 900, end capture 901, graph null"),
    ("capture_legacy_work", "launch of write_at_kernel on the legacy stream while a blocking stream captures: "
     "cudaErrorStreamCaptureImplicit", "returned 906 -1 -1 -1, end capture 901, graph null"),
    ("capture_launch_on_capturing", "cudaGraphLaunch on a capturing stream",
     "returned 900 -1 -1 -1, end capture 901, graph null"),
    ("capture_destroy_stream", "cudaStreamDestroy of a capturing stream",
     "returned 900 -1 -1 -1, end capture 901, graph null"),
    ("capture_pageable_copy", "cudaMemcpyAsync of pageable host memory",
     "returned 900 -1 -1 -1, end capture 901, graph null"),
    ("capture_bad_launch", "launch of nothing_kernel with an invalid configuration: cudaErrorInvalidConfiguration",
     "returned 9 -1 -1 -1, end capture 901, graph null"),
    ("graph_use_after_free", "launch of write_at_kernel: argument 0 (", "returned 700 -1 -1 -1, end capture -1"),
]


def build(out=None):
    """{program name: executable} of every check and the emulator's self-test."""
    try:
        return emulated_build.objects(out).check_programs()
    except FileNotFoundError as e:
        skip_or_fail(str(e))


def run_check(exe, args=(), timeout=RUN_TIMEOUT):
    return emulated_build.run_emulated([exe, *args], timeout)


def _selected_checks(session):
    names = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if item.module.__name__.endswith("test_kernels_emulated") and callspec and "name" in callspec.params:
            names.append(callspec.params["name"])
    return names


@pytest.fixture(scope="module")
def emulated(request):
    """(executables, {check name: future of its run}): every program built, the selected checks run
    in the background, as many at once as there are cores."""
    exes = build()
    names = _selected_checks(request.session)
    names.sort(key=lambda n: RUN_ORDER.index(n) if n in RUN_ORDER else len(RUN_ORDER))
    pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1)
    runs = {name: pool.submit(run_check, exes[name]) for name in names}
    yield exes, runs
    pool.shutdown(wait=True, cancel_futures=True)


def test_emulator_self_test(emulated):
    """The emulator's own semantics (tests/gpu/emulator/selftest.cu): conversions, barriers, shuffles,
    votes, atomics, a missing barrier seen as a stale read."""
    done = run_check(emulated[0]["selftest"])
    print(done.stdout)
    assert done.returncode == 0, f"{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
    assert "selftest: " in done.stdout and ", 0 failed" in done.stdout


@pytest.mark.parametrize("mode,status,message", SELFTEST_FAULTS, ids=[f[0] for f in SELFTEST_FAULTS])
def test_emulator_reports_fault(emulated, mode, status, message):
    """Each planted misuse of CUDA stops or fails the program with the emulator's report of it."""
    done = run_check(emulated[0]["selftest"], [mode], timeout=120)
    assert done.returncode == status and message in done.stderr, f"{done.returncode}\n{done.stderr[-4000:]}"


@pytest.mark.parametrize("mode,message,codes", GRAPH_FAULTS, ids=[f[0] for f in GRAPH_FAULTS])
def test_emulator_reports_graph_misuse(emulated, mode, message, codes):
    """Each planted misuse of stream capture or graphs is reported, and the calls return CUDA's codes
    (the capture invalidated where CUDA invalidates it: no graph)."""
    done = run_check(emulated[0]["selftest"], [mode], timeout=120)
    assert done.returncode == 71 and message in done.stderr, f"{done.returncode}\n{done.stderr[-4000:]}"
    assert f"planted fault {mode}: {codes}" in done.stdout, done.stdout


def test_emulated_library_exports_counts(emulated):
    """The emulated kernels library exports the emulator's counts of launches (for ctypes)."""
    nm = shutil.which("nm")
    assert nm is not None, "nm is missing (binutils: gcc, which builds the emulator, needs it too)"
    library = emulated_build.objects().kernels_library()
    symbols = subprocess.run([nm, "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    for name in ("emu_kernel_launch_count", "emu_graph_launch_count", "emu_direct_launch_count"):
        assert f" T {name}\n" in symbols, name


@pytest.mark.parametrize("name", [p.stem for p in emulated_build.CHECKS])
def test_kernel_matches_cpu_emulated(emulated, name):
    done = emulated[1][name].result()
    print(done.stdout[-20000:])
    tail = f"{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, f"{name} exited with {done.returncode}:\n{tail}"
    assert "EMU ERROR" not in done.stderr and "EMU FAIL" not in done.stderr, tail
    assert f"{name}: " in done.stdout and ", 0 failed" in done.stdout, tail


if __name__ == "__main__":  # python tests/gpu/test_kernels_emulated.py OUT_DIR [check ...]: build, run, time
    import time

    out = pathlib.Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    programs = build(out)
    print(f"built in {time.time() - start:.0f} s")
    for name in sys.argv[2:] or sorted(programs):
        start = time.time()
        done = run_check(programs[name])
        lines = done.stdout.strip().splitlines()
        print(f"{name}: exit {done.returncode} in {time.time() - start:.1f} s: {lines[-1] if lines else ''}")
        for line in [x for x in lines if x.startswith("FAIL")][:5] + done.stderr.strip().splitlines()[-5:]:
            print("   ", line)
