"""Builds the CUDA code of kernels/ for the CPU emulator of tests/gpu/emulator/ (see its README):

- check_programs(): each tests/gpu/kernels/check_<op>.cu program and the emulator's self-test, linked
  with the kernel families (kernels/*.cu but the runtime's: api.cu, device_*.cu) and the CPU ops they compare
  against (test_kernels_emulated.py);
- kernels_library(): the whole kernels library, kernels/**/*.cu as setup.py builds it into
  lorafast/_cuda_kernels.so, as an emulated .so that lorafast opens in its place when
  LORAFAST_CUDA_LIBRARY names it (test_model_emulated.py).

Every .cu file is compiled once per process (objects() caches the build), with -fPIC, so that the two
tests share it. LORAFAST_EMU_SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer.
"""

import concurrent.futures
import functools
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
EMULATOR = REPO / "tests" / "gpu" / "emulator"
CHECKS = sorted((REPO / "tests" / "gpu" / "kernels").glob("check_*.cu"))
KERNELS = sorted((REPO / "kernels").glob("**/*.cu"))


def runtime_only(kernel):
    """Whether a kernels/-relative .cu file is the model runtime's (api.cu, device_*.cu, models/), which
    the check programs leave out."""
    return kernel.name == "api.cu" or kernel.name.startswith("device_") or kernel.parts[0] == "models"


# the CPU ops the checks compare against; matmul_bf16.c (oneDNN, the CPU's bf16 products) has no CUDA twin
CPU_SOURCES = [s for s in sorted((REPO / "csrc" / "ops").glob("*.c")) if s.name != "matmul_bf16.c"] + sorted(
    (REPO / "csrc" / "core").glob("*.c")) + [REPO / "csrc" / "train" / "adamw.c", REPO / "csrc" / "train" / "clip.c"]


class BuildError(RuntimeError):
    pass


def _run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(map(str, cmd))}\n{done.stdout}\n{done.stderr[-6000:]}")


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


class Build:
    """The compiled objects under out: cpu (the CPU ops), emulator (runtime, cuBLASLt), kernels
    ({kernels-relative path: object}), checks ({program name: object}); link flags in link."""

    def __init__(self, out, sanitize):
        import scipy_openblas32

        self.cxx = shutil.which("g++")
        if self.cxx is None:
            raise FileNotFoundError("no g++ to build the emulated CUDA code")
        cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
        self.out = out
        src = out / "src"
        for header in sorted((REPO / "kernels").glob("**/*.cuh")):
            _transform(header, src / "kernels" / header.relative_to(REPO / "kernels"))
        _transform(REPO / "tests" / "gpu" / "kernel_check.cuh", src / "tests" / "gpu" / "kernel_check.cuh")
        kernels = {k.relative_to(REPO / "kernels"): src / "kernels" / k.relative_to(REPO / "kernels") for k in KERNELS}
        checks = {c.stem: src / "checks" / c.name for c in CHECKS}
        checks["selftest"] = src / "checks" / "selftest.cu"
        for original, copy in [(REPO / "kernels" / k, c) for k, c in kernels.items()] + [
                (c, checks[c.stem]) for c in CHECKS] + [(EMULATOR / "selftest.cu", checks["selftest"])]:
            _transform(original, copy)

        if sanitize:
            sanitizers = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
        else:  # cheap: misaligned accesses (a misaligned vector load faults on a GPU) and array bounds
            sanitizers = ["-fsanitize=alignment,bounds", "-fno-sanitize-recover=all"]
            sanitizers = sanitizers if _links(self.cxx, sanitizers, out) else []
        optimize = (["-O1", "-g"] if sanitize else ["-O2"]) + sanitizers
        if _cpu_has_fma():  # fmaf inline, not a libm call (most of attention's time otherwise)
            optimize.append("-mfma")
        cxx_flags = ["-std=c++17", *optimize, "-fPIC", "-fopenmp", "-ffp-contract=off", "-Wall",
                     "-Wno-unknown-pragmas", "-DLF_EMULATED=1", f"-I{EMULATOR / 'include'}", f"-I{src / 'kernels'}",
                     f"-I{src / 'tests' / 'gpu'}", f"-I{REPO / 'csrc'}"]
        cpu_flags = ["-std=c11", "-O2", "-fopenmp", "-fPIC", "-Wall", "-Wextra", "-Werror", f"-I{REPO / 'csrc'}",
                     f"-I{scipy_openblas32.get_include_dir()}"]
        obj = out / "obj"
        obj.mkdir(exist_ok=True)
        self.cpu = [obj / f"cpu_{s.parent.name}_{s.stem}.o" for s in CPU_SOURCES]
        self.emulator = [obj / f"emu_{name}.o" for name in ("runtime", "cublaslt")]
        self.kernels = {k: obj / ("kernel_" + str(k.with_suffix("")).replace("/", "_") + ".o") for k in kernels}
        self.checks = {name: obj / f"check_{name}.o" for name in checks}
        jobs = [[cc, *cpu_flags, "-c", str(s), "-o", str(o)] for s, o in zip(CPU_SOURCES, self.cpu)]
        jobs += [[self.cxx, *cxx_flags, "-DEMU_WITH_OPENBLAS", "-c", str(EMULATOR / f"{o.stem[4:]}.cpp"), "-o", str(o)]
                 for o in self.emulator]
        cu = [self.cxx, *cxx_flags, "-x", "c++", "-include", "cuda_runtime.h", "-c"]
        jobs += [[*cu, str(kernels[k]), "-o", str(o)] for k, o in self.kernels.items()]
        jobs += [[*cu, str(checks[name]), "-o", str(o)] for name, o in self.checks.items()]
        jobs.sort(key=lambda job: "attention" not in job[-3])  # the longest compiles first
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(_run, jobs))
        self.link = ["-fopenmp", f"-L{scipy_openblas32.get_lib_dir()}", f"-l{scipy_openblas32.get_library()}",
                     f"-Wl,-rpath,{scipy_openblas32.get_lib_dir()}", "-lm", *sanitizers]

    def check_programs(self):
        """{program name: executable} of every check program and the self-test."""
        families = [o for k, o in self.kernels.items() if not runtime_only(k)]
        exes = {}
        for name, o in self.checks.items():
            exe = self.out / name
            _run([self.cxx, str(o), *map(str, families + self.cpu + self.emulator), "-o", str(exe), *self.link])
            exes[name] = exe
        return exes

    def kernels_library(self):
        """The emulated kernels library (what lorafast/_cuda_kernels.so is on a GPU machine)."""
        target = self.out / "_cuda_kernels.so"
        _run([self.cxx, "-shared", *map(str, list(self.kernels.values()) + self.emulator), "-o", str(target),
              *self.link, "-Wl,--no-undefined"])
        return target


@functools.lru_cache(maxsize=None)
def objects(out=None):
    """The Build of this process (made once), under out or a new temporary folder."""
    out = pathlib.Path(out or tempfile.mkdtemp(prefix="lorafast_emulated_"))
    out.mkdir(parents=True, exist_ok=True)
    return Build(out, os.environ.get("LORAFAST_EMU_SANITIZE") == "1")


def run_emulated(cmd, timeout, env=None):
    """Runs cmd with the environment an emulated program needs (one thread, ASan options for fibers)."""
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if "ASAN_OPTIONS" not in env:  # fibers: no stack-use-after-return detection, no leak report
        env["ASAN_OPTIONS"] = "detect_stack_use_after_return=0:detect_leaks=0"
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env)
