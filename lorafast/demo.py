"""`python -m lorafast demo`: writes a small checkpoint, memory-maps it back and prints
build_info(). The main job until training lands."""

import json
import os
import tempfile
import time

import numpy as np


def demo_tensors(seed=0):
    """A checkpoint shaped like a small BERT layer: f32 weights, a bf16 copy, int64 ids."""
    rng = np.random.default_rng(seed)
    from .convert import from_float32

    q = rng.standard_normal((384, 384), dtype=np.float32)
    return {
        "embeddings.word_embeddings.weight": rng.standard_normal((4096, 384), dtype=np.float32),
        "encoder.layer.0.attention.self.query.weight": q,
        "encoder.layer.0.attention.self.query.weight.bf16": from_float32(q, "bfloat16"),
        "embeddings.position_ids": np.arange(512, dtype=np.int64)[None, :],
    }


def run_demo(out_dir=None):
    import lorafast
    from lorafast import safetensors
    from lorafast.convert import to_float32

    with tempfile.TemporaryDirectory() as tmp:
        folder = out_dir or tmp
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "model.safetensors")
        tensors = demo_tensors()
        start = time.perf_counter()
        safetensors.save_file(tensors, path, metadata={"format": "np", "written_by": "lorafast demo"},
                              dtypes={"encoder.layer.0.attention.self.query.weight.bf16": "BF16"})
        written = time.perf_counter() - start
        start = time.perf_counter()
        f = safetensors.safe_open(path)
        opened = time.perf_counter() - start
        q = f.get_tensor("encoder.layer.0.attention.self.query.weight")
        bf16_name = "encoder.layer.0.attention.self.query.weight.bf16"
        q16 = to_float32(f.get_tensor(bf16_name), f.get_dtype(bf16_name))
        assert np.array_equal(q, tensors["encoder.layer.0.attention.self.query.weight"])
        size = os.path.getsize(path)
        print(f"wrote {path}: {len(tensors)} tensors, {size / 2**20:.1f} MiB in {written * 1e3:.1f} ms")
        print(f"memory-mapped it back in {opened * 1e3:.2f} ms; metadata {f.metadata()}")
        print(f"query weight read back bit-identical; bf16 copy max |error| {np.abs(q16 - q).max():.2e}")
        print(json.dumps(lorafast.build_info(), indent=2))
    return 0
