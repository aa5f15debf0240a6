import os
import shutil
import struct
import subprocess
import sys

import pytest

import lorafast


def test_build_info_has_the_documented_keys():
    info = lorafast.build_info()
    for key in ("version", "compiler", "blas", "openmp_threads", "cuda_compiled", "cuda_available", "device_name"):
        assert key in info, key
    assert info["version"] == lorafast.__version__
    assert "openblas" in info["blas"].lower()
    assert info["openmp_threads"] >= 1
    assert info["onednn"].startswith("3.2.") and info["onednn_isa"]
    assert isinstance(info["cpu_bf16"], bool) and info["cpu_bf16_reason"]
    assert isinstance(info["cuda_compiled"], bool) and isinstance(info["cuda_available"], bool)
    if not info["cuda_available"]:
        assert info["device_name"] == "cpu"
        assert info["cuda_unavailable_reason"]


def test_import_without_gpu_reports_cuda_unavailable_not_an_error():
    # a fresh interpreter: import and ask about CUDA must not raise even with no driver
    code = "import lorafast; i = lorafast.build_info(); print(i['cuda_compiled'], i['cuda_available'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    compiled, available = out.stdout.split()
    assert compiled in ("True", "False") and available in ("True", "False")


def test_cli_info_prints_json():
    out = subprocess.run([sys.executable, "-m", "lorafast", "info"], capture_output=True, text=True, check=True)
    assert '"cuda_compiled"' in out.stdout


def _fatbin_entries(path):
    """(kind, sm) of every entry of the CUDA fat binaries in the ELF file at path: kind 1 is PTX,
    2 a cubin (machine code); sm is the architecture (90 for sm_90 / compute_90). Read from the
    .nv_fatbin section as the driver reads it: containers (magic 0xBA55ED50, a 16-byte header with
    the size of what follows) of entries (kind, version, header size, payload size, ..., arch)."""
    data = open(path, "rb").read()
    assert data[:5] == b"\x7fELF\x02", f"{path} is not a 64-bit ELF file"
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = sections[shstrndx][4]
    fatbin = None
    for name, _, _, _, offset, size in sections:
        if data[names + name : data.index(b"\0", names + name)] == b".nv_fatbin":
            fatbin = data[offset : offset + size]
    assert fatbin is not None, f"{path} has no .nv_fatbin section"
    entries, c = [], 0
    while c + 16 <= len(fatbin):
        magic, _, header, size = struct.unpack_from("<IHHQ", fatbin, c)
        assert magic == 0xBA55ED50, f"no fat binary at byte {c} of {path}'s .nv_fatbin"
        p = c + header
        while p < c + header + size:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", fatbin, p)
            entries.append((kind, struct.unpack_from("<I", fatbin, p + 28)[0]))
            p += entry_header + payload
        c += header + size
    return entries


def _cuda_library():
    """lorafast/_cuda_kernels.so; skips when this build has none (no nvcc, LORAFAST_CUDA=0), but fails
    under CI=true where nvcc is, which builds it"""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
    import cuda_config

    path = os.path.join(os.path.dirname(lorafast.__file__), "_cuda_kernels.so")
    if not os.path.exists(path):
        if os.environ.get("CI") == "true" and cuda_config.cuda_home() is not None:
            pytest.fail(f"nvcc is in {cuda_config.cuda_home()} but {path} was not built")
        pytest.skip("the CUDA variant is not built here")
    return path, cuda_config


def test_cuda_library_carries_cubins_and_ptx_of_the_newest_architecture():
    # a cubin runs only on its own GPU generation; PTX of the newest lets the driver compile the
    # kernels for a newer GPU at load time instead of failing every launch with "no kernel image"
    path, cuda_config = _cuda_library()
    archs, entries = cuda_config.cuda_archs(), _fatbin_entries(path)
    newest = max(int(a) for a in archs)
    assert (1, newest) in entries, f"no PTX of compute_{newest} in {path}: {sorted(set(entries))}"
    for arch in archs:
        assert (2, int(arch)) in entries, f"no sm_{arch} cubin in {path}"


def test_cuobjdump_lists_the_ptx():
    # the same as CUDA's own tool reads it
    path, cuda_config = _cuda_library()
    toolkit_bin = os.path.join(cuda_config.cuda_home() or "", "bin")
    cuobjdump = shutil.which("cuobjdump", path=toolkit_bin + os.pathsep + os.environ.get("PATH", ""))
    if cuobjdump is None:
        pytest.skip("no cuobjdump here (the test above reads the fat binary itself)")
    out = subprocess.run([cuobjdump, "--list-ptx", path], capture_output=True, text=True, check=True).stdout
    assert f"sm_{max(int(a) for a in cuda_config.cuda_archs())}" in out, out
