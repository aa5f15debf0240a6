"""Loads the C core (lorafast._C) and, when it was built, the CUDA kernels library."""

import ctypes
import functools
import os

import scipy_openblas32 as _openblas

# _C needs libscipy_openblas.so; an rpath finds it for installed packages, and loading it
# here first makes in-tree (editable) builds find it too.
ctypes.CDLL(os.path.join(_openblas.get_lib_dir(), f"lib{_openblas.get_library()}.so"), mode=ctypes.RTLD_GLOBAL)


def _preload_onednn():
    """libdnnl.so.3 from the onednn-cpu-gomp wheel, which installs it into the environment's lib/ (an
    rpath reaches it from a venv's or a prefix's site-packages; this also covers other layouts)."""
    from importlib import metadata

    try:
        files = metadata.distribution("onednn-cpu-gomp").files or []
    except metadata.PackageNotFoundError:
        return  # _C's import then says what is missing
    for f in files:
        if f.name == "libdnnl.so.3":
            ctypes.CDLL(str(f.locate()), mode=ctypes.RTLD_GLOBAL)
            return


# OpenMP threads that wait at the end of a parallel region sleep instead of spinning: on a
# shared or oversubscribed CPU a spinning waiter takes the core from the thread it waits for
# (a lorafast training step is several times slower that way). Set before libgomp loads
# with _C; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_preload_onednn()  # after: libdnnl loads libgomp



def _import_core():
    """lorafast._C, or an ImportError that says why when it was never built here: a source tree
    (this repository's lorafast/, found first on sys.path when Python runs from its root) has
    no compiled extension until `pip install -e .` or `python setup.py build_ext --inplace`."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(f"{__package__}._C") is None:
        raise ImportError(
            f"lorafast was imported from {os.path.dirname(os.path.abspath(__file__))}, a source tree without "
            "the built C extension (lorafast._C). Python finds this folder first when it runs in the "
            "repository's root (`python -m lorafast`, `python -c`): use the `lorafast` command or run from "
            "another folder to reach the installed package (`pip install .`), or build this tree in place "
            "with `pip install -e .`")
    return importlib.import_module(f"{__package__}._C")


_C = _import_core()

# LORAFAST_CUDA_LIBRARY names another kernels library to open instead of the one built beside _C
# (the test suite's CPU emulation of the CUDA kernels, tests/gpu/emulator/).
BUILT_CUDA_LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cuda_kernels.so")
CUDA_LIBRARY = os.environ.get("LORAFAST_CUDA_LIBRARY") or BUILT_CUDA_LIBRARY


def cuda_compiled():
    return os.path.exists(CUDA_LIBRARY)


def _preload_cublas():
    """Loads cuBLAS from the nvidia-cublas wheel when it is installed, so that in-tree builds,
    whose rpath does not reach site-packages, find it. Absent: the dlopen of the kernels
    library reports what is missing."""
    try:
        import nvidia.cu13 as cu13
    except ImportError:
        return
    lib_dir = os.path.join(list(cu13.__path__)[0], "lib")
    for name in ("libcublasLt.so.13", "libcublas.so.13"):
        try:
            ctypes.CDLL(os.path.join(lib_dir, name), mode=ctypes.RTLD_GLOBAL)
        except OSError:
            return


@functools.lru_cache(maxsize=None)
def cuda_status():
    """(available, device name or the reason CUDA is unavailable). Opens the library once."""
    if not cuda_compiled():
        return _C.cuda_load(None)
    if CUDA_LIBRARY == BUILT_CUDA_LIBRARY:  # it runs on the NVIDIA driver: without one, not even opened
        present, why = _C.cuda_driver()
        if not present:
            return False, why
    _preload_cublas()
    return _C.cuda_load(CUDA_LIBRARY)


def set_tf32(on):
    """TrainingArguments(tf32=...): the CUDA f32 matrix products in TF32 (True) or in full f32 (False, as
    without the flag), process-wide as torch.backends.cuda.matmul.allow_tf32. TF32 is a mode of CUDA's
    tensor cores: True without a usable GPU raises ValueError, as transformers does; False has nothing
    to turn off there."""
    available, why = cuda_status()
    if available:
        _C.cuda_set_tf32(bool(on))
    elif on:
        raise ValueError(f"tf32=True is a CUDA setting (TensorFloat-32 products on an Ampere or newer GPU), and "
                         f"CUDA is unavailable here: {why}. The CPU computes float32 in full float32.")


def blas_name():
    config = _openblas.get_openblas_config().strip()
    version = getattr(_openblas, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("scipy-openblas32")
    return f"scipy-openblas32 {version} ({config})"
