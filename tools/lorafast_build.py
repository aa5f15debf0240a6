"""PEP 517 backend: setuptools, plus cuBLAS in the build environment when CUDA is built.

The CUDA toolkit's nvcc may come without cuBLAS (pip-installed toolkits do); the
`nvidia-cublas` wheel ships its headers and shared libraries. It is asked for only when
setup.py will compile kernels/ (nvcc found and LORAFAST_CUDA is not "0").
"""

from setuptools import build_meta as _orig
from setuptools.build_meta import *  # noqa: F401,F403

import cuda_config


def _extra():
    if not cuda_config.cuda_requested():
        return []
    cuda_config.progress(f"nvcc found in {cuda_config.cuda_home()}: building the CUDA kernels too (about 5 minutes "
                         f"on 2 cores) with {cuda_config.CUBLAS_REQUIREMENT} (a 420 MB wheel) in the build "
                         "requirements; LORAFAST_CUDA=0 builds the CPU-only variant")
    return [cuda_config.CUBLAS_REQUIREMENT]


def get_requires_for_build_wheel(config_settings=None):
    return _orig.get_requires_for_build_wheel(config_settings) + _extra()


def get_requires_for_build_editable(config_settings=None):
    return _orig.get_requires_for_build_editable(config_settings) + _extra()
