"""Where the CUDA toolkit and cuBLAS are, shared by setup.py and the build backend."""

import os
import shutil
import sys

CUBLAS_REQUIREMENT = "nvidia-cublas==13.0.2.14"  # a 420 MB wheel
CUDA_ARCHS = ("80", "86", "89", "90", "100", "120")  # A100, A10/3090, L4/4090, H100, B200, RTX 50


def cuda_archs():
    """The SM architectures to compile for. LORAFAST_CUDA_ARCHS="90" narrows a development
    build; releases and CI build all of CUDA_ARCHS."""
    override = os.environ.get("LORAFAST_CUDA_ARCHS")
    return tuple(override.split(",")) if override else CUDA_ARCHS


def gencode_flags():
    """nvcc's -gencode flags: machine code (cubin) for each of cuda_archs(), and PTX of the newest,
    which the driver compiles at load time for a GPU newer than every cubin (else every launch
    there fails with "no kernel image is available")."""
    archs = cuda_archs()
    newest = max(archs, key=int)
    flags = []
    for arch in archs:
        flags += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    return flags + ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]


def cuda_home():
    """CUDA_HOME, else /usr/local/cuda, else the folder above nvcc on PATH; None if no nvcc."""
    candidates = [os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for home in candidates:
        if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
            return home
    return None


def cuda_requested():
    return os.environ.get("LORAFAST_CUDA", "1") != "0" and cuda_home() is not None


def cublas_dirs():
    """(include_dir, lib_dir) of cuBLAS: the CUDA toolkit's own, else the nvidia-cublas wheel."""
    home = cuda_home()
    if home:
        for lib in ("lib64", "lib", "targets/x86_64-linux/lib"):
            if os.path.exists(os.path.join(home, lib, "libcublasLt.so")):
                return os.path.join(home, "include"), os.path.join(home, lib)
    try:
        import nvidia.cu13 as cu13  # the nvidia-cublas wheel

        base = list(cu13.__path__)[0]
        return os.path.join(base, "include"), os.path.join(base, "lib")
    except ImportError:
        return None, None


def progress(message):
    """A build progress line on stderr (pip shows a build's output with -v)."""
    print(f"lorafast build: {message}", file=sys.stderr, flush=True)
