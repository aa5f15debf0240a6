"""The CUDA kernels against the CPU ops: each tests/gpu/kernels/check_<op>.cu program runs one
op family on the GPU and through csrc/ops/ on the same random inputs, in f32, bf16 and f16,
forward and backward, and exits non-zero when a comparison is outside the issue's tolerance
(f32 1e-5 relative, bf16/f16 2e-2). LORAFAST_SANITIZE=1 runs them under compute-sanitizer.

The programs are built here with nvcc against kernels/*.cu and the CPU sources. Building needs
nvcc (present on the CI machine, so the build is always checked there); running needs a GPU
and is skipped without one.
"""

import concurrent.futures
import os
import shutil
import subprocess
import sysconfig

import emulated_build
import pytest
from conftest import skip_or_fail

REPO, CHECKS, CPU_SOURCES = emulated_build.REPO, emulated_build.CHECKS, emulated_build.CPU_SOURCES


def _nvcc():
    import cuda_config

    home = cuda_config.cuda_home()
    return (os.path.join(home, "bin", "nvcc") if home else None), cuda_config


def _gpu_arch():
    """The compute capability of GPU 0 as "90", or None without a GPU."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    done = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return done.stdout.split()[0].replace(".", "")


def _run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout}\n{done.stderr[-6000:]}"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{check name: executable}; builds kernels, CPU ops and every check program."""
    import sys

    sys.path.insert(0, str(REPO / "tools"))
    nvcc, cuda_config = _nvcc()
    if nvcc is None:
        skip_or_fail("no nvcc: the CUDA kernels are not built on this machine")
    import scipy_openblas32

    inc, lib = cuda_config.cublas_dirs()
    assert inc, f"nvcc found but no cuBLAS: install {cuda_config.CUBLAS_REQUIREMENT}"
    arch = _gpu_arch() or cuda_config.cuda_archs()[0]
    out = tmp_path_factory.mktemp("gpu_checks")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    cpu_flags = ["-std=c11", "-O2", "-fopenmp", "-fPIC", "-Wall", "-Wextra", "-Werror", f"-I{REPO / 'csrc'}",
                 f"-I{scipy_openblas32.get_include_dir()}"]
    nv_flags = ["-std=c++17", "-O2", "-Werror", "all-warnings", "-Xcompiler", "-Wall",
                f"-gencode=arch=compute_{arch},code=sm_{arch}", f"-I{REPO / 'csrc'}", f"-I{REPO / 'kernels'}",
                f"-I{REPO / 'tests' / 'gpu'}", f"-I{inc}"]
    jobs = [[cc, *cpu_flags, "-c", str(src), "-o", str(out / (src.parent.name + "_" + src.name + ".o"))]
            for src in CPU_SOURCES]
    jobs += [[nvcc, *nv_flags, "-c", str(src), "-o", str(out / ("k_" + src.name + ".o"))]
             for src in sorted((REPO / "kernels").glob("*.cu"))]
    jobs += [[nvcc, *nv_flags, "-c", str(src), "-o", str(out / ("c_" + src.name + ".o"))] for src in CHECKS]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_run, jobs))
    shared = [str(p) for p in sorted(out.glob("*.o")) if not p.name.startswith("c_")]
    exes = {}
    for src in CHECKS:
        exe = out / src.stem
        _run([nvcc, f"-gencode=arch=compute_{arch},code=sm_{arch}", str(out / ("c_" + src.name + ".o")), *shared,
              "-o", str(exe), "-Xcompiler", "-fopenmp", f"-L{lib}", "-l:libcublasLt.so.13", "-l:libcublas.so.13",
              f"-L{scipy_openblas32.get_lib_dir()}", f"-l{scipy_openblas32.get_library()}",
              f"-Xlinker=-rpath,{lib}", f"-Xlinker=-rpath,{scipy_openblas32.get_lib_dir()}", "-lgomp", "-lm"])
        exes[src.stem] = exe
    return exes


def test_kernel_checks_build(built):
    """Every check program compiles and links (on the CI machine too, which has nvcc but no GPU)."""
    assert sorted(built) == [p.stem for p in CHECKS] and CHECKS


@pytest.mark.parametrize("name", [p.stem for p in CHECKS])
def test_kernel_matches_cpu(built, name):
    if _gpu_arch() is None:
        pytest.skip("no GPU: the kernel checks run on a machine with one")
    cmd = [str(built[name])]
    if os.environ.get("LORAFAST_SANITIZE") == "1":  # memcheck: out-of-bounds and misaligned accesses
        cmd = ["compute-sanitizer", "--tool", "memcheck", "--error-exitcode", "3"] + cmd
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    print(done.stdout)
    assert done.returncode == 0, f"{name}:\n{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
    assert f"{name}: " in done.stdout and ", 0 failed" in done.stdout
