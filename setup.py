"""Builds lorafast._C from csrc/ and, when nvcc is found, lorafast/_cuda_kernels.so from kernels/.

The CUDA kernels are a separate shared library that _C opens with dlopen at run time, so a
CUDA-built package imports and runs on the CPU on a machine with no GPU, no driver and no
cuBLAS: there, CUDA is reported unavailable.
"""

import concurrent.futures
import glob
import os
import subprocess
import sys
import sysconfig
import time

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools"))
import cuda_config  # noqa: E402
import gen_unicode  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OPENBLAS_REQUIREMENT = "scipy-openblas32==0.3.34.481.3"
# oneDNN 3.2, the OpenMP (libgomp) build: bf16 matrix products on the CPU (csrc/ops/matmul_bf16.c)
ONEDNN_REQUIREMENT = "onednn-cpu-gomp==2023.2.0"


def onednn_dirs():
    """(include dir, lib dir) of the oneDNN wheels: their files lie outside site-packages, in the
    environment's include/ and lib/ (a build-isolation prefix during pip install .)."""
    from importlib import metadata

    def locate(dist, suffix):
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            files = []
        for f in files:
            if str(f).replace(os.sep, "/").endswith(suffix):  # "../../../include/..." from site-packages
                return os.path.normpath(f.locate())
        raise RuntimeError(f"{suffix} not found: lorafast needs {dist}==2023.2.0 to build "
                           f"(pip install {ONEDNN_REQUIREMENT} onednn-devel-cpu-gomp==2023.2.0)")

    header = locate("onednn-devel-cpu-gomp", "include/oneapi/dnnl/dnnl.h")
    library = locate("onednn-cpu-gomp", "/libdnnl.so.3")
    return os.path.dirname(os.path.dirname(os.path.dirname(header))), os.path.dirname(library)


def c_sources():
    return sorted(glob.glob("csrc/**/*.c", recursive=True))


def cu_sources():
    return sorted(glob.glob("kernels/**/*.cu", recursive=True))


def build_extension():
    import numpy
    import scipy_openblas32

    cflags = ["-std=c11", "-O3", "-Wall", "-Wextra", "-Werror", "-fopenmp", "-fno-strict-aliasing"]
    macros = [("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")]
    if os.environ.get("LORAFAST_DEBUG") == "1":
        cflags += ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]
    dnnl_include, dnnl_lib = onednn_dirs()
    return Extension(
        "lorafast._C",
        sources=c_sources(),
        include_dirs=["csrc", numpy.get_include(), scipy_openblas32.get_include_dir(), dnnl_include],
        define_macros=macros,
        library_dirs=[scipy_openblas32.get_lib_dir(), dnnl_lib],
        libraries=[scipy_openblas32.get_library(), ":libdnnl.so.3", "m", "dl"],
        extra_compile_args=cflags,
        # the installed scipy_openblas32 sits beside lorafast in site-packages; libdnnl in the
        # environment's lib/ (site-packages/../../); the build's own lib dir for in-place builds
        extra_link_args=["-fopenmp", "-Wl,-rpath,$ORIGIN/../scipy_openblas32/lib",
                         "-Wl,-rpath,$ORIGIN/../../..", "-Wl,-rpath," + dnnl_lib],
    )


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self):
        gen_unicode.main(os.path.join(HERE, "csrc", "generated"))  # Unicode tables for tokenizers
        cuda_config.progress(f"compiling lorafast._C from {len(c_sources())} C files (gcc, OpenMP)")
        super().run()
        out_dir = os.path.dirname(self.get_ext_fullpath("lorafast._C"))
        if cuda_config.cuda_requested() and cu_sources():
            self.build_cuda(out_dir)
        else:
            stale = os.path.join(out_dir, "_cuda_kernels.so")
            if os.path.exists(stale):
                os.remove(stale)

    def build_cuda(self, out_dir):
        home = cuda_config.cuda_home()
        nvcc = os.path.join(home, "bin", "nvcc")
        inc, lib = cuda_config.cublas_dirs()
        if inc is None:
            raise RuntimeError(
                f"nvcc found in {home} but no cuBLAS: install {cuda_config.CUBLAS_REQUIREMENT} "
                "or build the CPU-only variant with LORAFAST_CUDA=0"
            )
        obj_dir = os.path.join(self.build_temp, "kernels")
        os.makedirs(obj_dir, exist_ok=True)
        gencode = cuda_config.gencode_flags()
        common = [nvcc, "-std=c++17", "-O3", "--threads", "0", "-Xcompiler", "-fPIC,-Wall", "-Werror", "all-warnings",
                  "-Icsrc", "-Ikernels", "-I" + inc] + gencode
        headers = glob.glob("kernels/**/*.cuh", recursive=True) + glob.glob("csrc/**/*.h", recursive=True)
        newest_header = max(os.path.getmtime(p) for p in headers)
        jobs, objects = [], []
        for src in cu_sources():
            obj = os.path.join(obj_dir, src[len("kernels/"):].replace("/", "_") + ".o")
            if not os.path.exists(obj) or os.path.getmtime(obj) < max(os.path.getmtime(src), newest_header):
                jobs.append(common + ["-c", src, "-o", obj])
            objects.append(obj)
        # the .cu files in parallel, and each file's architectures in parallel within nvcc; a line
        # per file on stderr as it finishes (pip shows them with -v), since the whole takes minutes
        archs = ", ".join(f"sm_{arch}" for arch in cuda_config.cuda_archs()) + " + PTX"
        cuda_config.progress(f"compiling {len(jobs)} of {len(objects)} CUDA files with {nvcc} for {archs} "
                             "(minutes; LORAFAST_CUDA=0 builds the CPU-only variant)")
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            running = {pool.submit(subprocess.check_call, cmd): cmd[-3] for cmd in jobs}
            for done, future in enumerate(concurrent.futures.as_completed(running), 1):
                future.result()
                cuda_config.progress(f"[{done}/{len(jobs)}] {running[future]} ({time.monotonic() - start:.0f} s)")
        target = os.path.join(out_dir, "_cuda_kernels.so")
        link = [nvcc, "-shared", "-cudart", "static", "-o", target] + objects + gencode + [
            "-L" + lib, "-l:libcublasLt.so.13", "-l:libcublas.so.13",
            "-Xlinker", "-rpath,$ORIGIN/../nvidia/cu13/lib", "-Xlinker", "-rpath," + lib,
            "-Xlinker", "--no-undefined",  # a missing symbol fails the build, not the dlopen at run time
        ]
        cuda_config.progress(f"linking {target} with cuBLAS from {lib}")
        subprocess.check_call(link)


install_requires = ["numpy>=1.26", OPENBLAS_REQUIREMENT, ONEDNN_REQUIREMENT, "tqdm>=4.60"]
if cuda_config.cuda_requested():
    install_requires.append(cuda_config.CUBLAS_REQUIREMENT)

setup(
    ext_modules=[build_extension()],
    cmdclass={"build_ext": BuildExt},
    install_requires=install_requires,
    # data/: the disaster tweets that `lorafast train` uses when given no data files. Only these
    # (include_package_data would take every file in the package folders, and setuptools warns at
    # length about data folders outside `packages`)
    package_data={"lorafast": ["_cuda_kernels.so", "data/disaster_tweets/*.csv", "data/disaster_tweets/SOURCE.md"]},
    include_package_data=False,
)
