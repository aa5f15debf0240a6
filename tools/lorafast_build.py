"""PEP 517 backend: setuptools, plus cuBLAS in the build environment when CUDA is built.

The CUDA toolkit's nvcc may come without cuBLAS (pip-installed toolkits do); the
`nvidia-cublas` wheel ships its headers and shared libraries. It is asked for only when
setup.py will compile kernels/ (nvcc found and LORAFAST_CUDA is not "0").
"""

from setuptools import build_meta as _orig
from setuptools.build_meta import *  # noqa: F401,F403

import cuda_config


def _extra():
    return [cuda_config.CUBLAS_REQUIREMENT] if cuda_config.cuda_requested() else []


def get_requires_for_build_wheel(config_settings=None):
    return _orig.get_requires_for_build_wheel(config_settings) + _extra()


def get_requires_for_build_editable(config_settings=None):
    return _orig.get_requires_for_build_editable(config_settings) + _extra()
