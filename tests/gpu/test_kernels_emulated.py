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
import sysconfig

import pytest
from conftest import skip_or_fail

REPO = pathlib.Path(__file__).resolve().parents[2]
EMULATOR = REPO / "tests" / "gpu" / "emulator"
CHECKS = sorted((REPO / "tests" / "gpu" / "kernels").glob("check_*.cu"))
KERNELS = [p for p in sorted((REPO / "kernels").glob("*.cu")) if p.name not in ("api.cu", "device_model.cu")]
CPU_SOURCES = sorted((REPO / "csrc" / "ops").glob("*.c")) + sorted((REPO / "csrc" / "core").glob("*.c")) + [
    REPO / "csrc" / "train" / "adamw.c", REPO / "csrc" / "train" / "clip.c"]
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


def _run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout}\n{done.stderr[-6000:]}"


def _cpu_has_fma():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and " fma " in line + " " for line in f)
    except OSError:
        return False


def _links(cxx, flags, out):
    """Whether cxx builds a program with flags (the sanitizers' runtime libraries are installed)."""
    probe = out / "probe.cpp"
    probe.write_text("int main() { return 0; }\n")
    done = subprocess.run([cxx, *flags, str(probe), "-o", str(out / "probe")], capture_output=True)
    return done.returncode == 0


def _transform(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, str(EMULATOR / "transform.py"), str(src), str(dst)])


def build(out, sanitize=False):
    """{program name: executable} of every check and the emulator's self-test, built under out."""
    import scipy_openblas32

    cxx = shutil.which("g++")
    if cxx is None:
        skip_or_fail("no g++ to build the emulated kernel checks")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    src = out / "src"
    for header in sorted((REPO / "kernels").glob("*.cuh")):
        _transform(header, src / "kernels" / header.name)
    _transform(REPO / "tests" / "gpu" / "kernel_check.cuh", src / "tests" / "gpu" / "kernel_check.cuh")
    units = [(k, src / "kernels" / k.name) for k in KERNELS]
    units += [(c, src / "checks" / c.name) for c in CHECKS]
    units.append((EMULATOR / "selftest.cu", src / "checks" / "selftest.cu"))
    for original, copy in units:
        _transform(original, copy)

    if sanitize:
        sanitizers = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    else:  # cheap: misaligned accesses (a misaligned vector load faults on a GPU) and array bounds
        sanitizers = ["-fsanitize=alignment,bounds", "-fno-sanitize-recover=all"]
        sanitizers = sanitizers if _links(cxx, sanitizers, out) else []
    optimize = (["-O1", "-g"] if sanitize else ["-O2"]) + sanitizers
    if _cpu_has_fma():  # fmaf inline, not a libm call (most of attention's time otherwise)
        optimize.append("-mfma")
    cxx_flags = ["-std=c++17", *optimize, "-fopenmp", "-ffp-contract=off", "-Wall", "-Wno-unknown-pragmas",
                 "-DLF_EMULATED=1", f"-I{EMULATOR / 'include'}", f"-I{src / 'kernels'}",
                 f"-I{src / 'tests' / 'gpu'}", f"-I{REPO / 'csrc'}"]
    cpu_flags = ["-std=c11", "-O2", "-fopenmp", "-fPIC", "-Wall", "-Wextra", "-Werror", f"-I{REPO / 'csrc'}",
                 f"-I{scipy_openblas32.get_include_dir()}"]
    obj = out / "obj"
    obj.mkdir(exist_ok=True)
    jobs = [[cc, *cpu_flags, "-c", str(s), "-o", str(obj / f"cpu_{s.parent.name}_{s.stem}.o")]
            for s in CPU_SOURCES]
    jobs += [[cxx, *cxx_flags, "-DEMU_WITH_OPENBLAS", "-c", str(EMULATOR / f"{name}.cpp"),
              "-o", str(obj / f"emu_{name}.o")] for name in ("runtime", "cublaslt")]
    jobs += [[cxx, *cxx_flags, "-x", "c++", "-include", "cuda_runtime.h", "-c", str(copy),
              "-o", str(obj / f"{copy.parent.name}_{copy.stem}.o")] for _, copy in units]
    jobs.sort(key=lambda job: "attention" not in job[-3])  # the longest compile first
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_run, jobs))
    shared = [str(p) for p in sorted(obj.glob("*.o")) if not p.name.startswith("checks_")]
    link = ["-fopenmp", f"-L{scipy_openblas32.get_lib_dir()}", f"-l{scipy_openblas32.get_library()}",
            f"-Wl,-rpath,{scipy_openblas32.get_lib_dir()}", "-lm", *sanitizers]
    exes = {}
    for check in [c for _, c in units if c.parent.name == "checks"]:
        exe = out / check.stem
        _run([cxx, str(obj / f"checks_{check.stem}.o"), *shared, "-o", str(exe), *link])
        exes[check.stem] = exe
    return exes


def run_check(exe, args=(), timeout=RUN_TIMEOUT):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if "ASAN_OPTIONS" not in env:  # fibers: no stack-use-after-return detection, no leak report
        env["ASAN_OPTIONS"] = "detect_stack_use_after_return=0:detect_leaks=0"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _selected_checks(session):
    names = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if item.module.__name__.endswith("test_kernels_emulated") and callspec and "name" in callspec.params:
            names.append(callspec.params["name"])
    return names


@pytest.fixture(scope="module")
def emulated(request, tmp_path_factory):
    """(executables, {check name: future of its run}): every program built, the selected checks run
    in the background, as many at once as there are cores."""
    exes = build(tmp_path_factory.mktemp("emulated_checks"), os.environ.get("LORAFAST_EMU_SANITIZE") == "1")
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


@pytest.mark.parametrize("name", [p.stem for p in CHECKS])
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
    programs = build(out, os.environ.get("LORAFAST_EMU_SANITIZE") == "1")
    print(f"built in {time.time() - start:.0f} s")
    for name in sys.argv[2:] or sorted(programs):
        start = time.time()
        done = run_check(programs[name])
        lines = done.stdout.strip().splitlines()
        print(f"{name}: exit {done.returncode} in {time.time() - start:.1f} s: {lines[-1] if lines else ''}")
        for line in [x for x in lines if x.startswith("FAIL")][:5] + done.stderr.strip().splitlines()[-5:]:
            print("   ", line)
