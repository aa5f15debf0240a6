"""Device selection with torch's and transformers' names: model.to / .cuda() / .cpu() / .device,
from_pretrained(device=), TrainingArguments.device and where the Trainer puts the model. These
run without a GPU (there CUDA is unavailable and says why); tests/gpu/test_model_gpu.py runs
the model on one."""

import numpy as np
import pytest

import lorafast as lf
from lorafast import _backend
from lorafast.trainer import Trainer

CUDA_AVAILABLE, CUDA_WHY = _backend.cuda_status()
no_gpu = pytest.mark.skipif(CUDA_AVAILABLE, reason="CUDA is available here: tests/gpu covers it")


def tiny_model(lora=True):
    cfg = lf.AutoConfig.for_model("roberta", vocab_size=97, hidden_size=24, num_hidden_layers=2,
                                  num_attention_heads=3, intermediate_size=40, max_position_embeddings=40,
                                  pad_token_id=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = lf.AutoModelForSequenceClassification.from_config(cfg, num_labels=2, seed=3)
    return lf.get_peft_model(model, lf.LoraConfig(r=2, lora_alpha=4), seed=4) if lora else model


def rows(n=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids = [0] + rng.integers(3, 97, int(rng.integers(3, 9))).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "label": int(sum(ids) % 2)})
    return out


def batch():
    ids = np.array([[0, 5, 9, 22, 1], [0, 7, 3, 1, 1]])
    return ids, (ids != 1).astype(np.int64)


@no_gpu
def test_to_cuda_without_a_gpu_raises_with_the_reason():
    model = tiny_model()
    for move in (lambda: model.to("cuda"), lambda: model.cuda(), lambda: model.to("cuda:0", dtype="bfloat16"),
                 lambda: model._c.to_device("cuda", None)):
        with pytest.raises(RuntimeError, match="CUDA unavailable") as info:
            move()
        assert CUDA_WHY and CUDA_WHY in str(info.value)
    assert model.device == "cpu" and model._c.device == "cpu" and model._c.device_bytes == 0


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:-1", "tpu", "mps:0", "", "cpu:1", -1, True, object()])
def test_bad_devices_are_value_errors_naming_them(device):
    model = tiny_model()
    with pytest.raises(ValueError) as info:
        model.to(device)
    assert repr(device) in str(info.value)
    assert model.device == "cpu"


@pytest.mark.parametrize("dtype", ["int8", "float64", "half-ish"])
def test_bad_dtypes_are_value_errors_naming_them(dtype):
    model = tiny_model()
    for device in ("cpu", "cuda"):
        with pytest.raises(ValueError, match=dtype):
            model.to(device, dtype=dtype)


def test_c_model_validates_its_arguments():
    c = tiny_model(lora=False)._c
    assert (c.device, c.device_dtype, c.device_bytes) == ("cpu", None, 0)
    with pytest.raises(ValueError, match="'gpu'"):
        c.to_device("gpu")
    with pytest.raises(ValueError, match="'int8' is not supported on CUDA"):
        c.to_device("cuda", "int8")
    with pytest.raises(ValueError, match="'float16' on the CPU"):
        c.to_device("cpu", "float16")
    with pytest.raises(ValueError, match="'int8' is not supported on the CPU"):
        c.to_device("cpu", "int8")
    c.to_device("cpu", "float32")
    c.to_device("cpu")


def test_cpu_is_the_default_and_moving_to_it_is_a_no_op():
    model = tiny_model()
    ids, mask = batch()
    before = model(input_ids=ids, attention_mask=mask).logits
    assert model.device == "cpu" and model.base_model.device == "cpu"
    assert model.to("cpu") is model and model.cpu() is model and model.to() is model
    assert model.base_model.to("cpu") is model.base_model
    assert model.to("cpu", dtype="float32") is model and model.to(np.float32) is model
    np.testing.assert_array_equal(model(input_ids=ids, attention_mask=mask).logits, before)
    with pytest.raises(ValueError, match="float16.*CPU"):
        model.to("float16")  # a dtype alone keeps the device: float32 or bfloat16 on the CPU (tests/test_bf16.py)


def test_torch_devices_and_dtypes_are_understood():
    torch = pytest.importorskip("torch")
    model = tiny_model()
    assert model.to(torch.device("cpu")) is model and model.to(torch.float32) is model
    if not CUDA_AVAILABLE:  # cuda:1 is a device name (tests/gpu/test_model_gpu.py moves there on the emulator)
        with pytest.raises(RuntimeError, match="CUDA unavailable"):
            model.to(torch.device("cuda", 1))
        with pytest.raises(RuntimeError, match="CUDA unavailable"):
            model.to(torch.device("cuda", 0), dtype=torch.bfloat16)


def test_from_pretrained_device(tmp_path):
    pytest.importorskip("torch")
    from test_encoder import make_checkpoint

    make_checkpoint(tmp_path, "bert", 16, 1, 2, 24, 2)
    model = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path, device="cpu")
    assert model.device == "cpu"
    with pytest.raises(ValueError, match="'cuda:two'"):
        lf.AutoModelForSequenceClassification.from_pretrained(tmp_path, device="cuda:two")
    if not CUDA_AVAILABLE:
        with pytest.raises(RuntimeError, match="CUDA unavailable"):
            lf.AutoModelForSequenceClassification.from_pretrained(tmp_path, device="cuda")


def args(tmp_path, **kw):
    return lf.TrainingArguments(output_dir=tmp_path, max_steps=2, per_device_train_batch_size=4, logging_steps=1,
                                save_strategy="no", report_to="none", disable_tqdm=True, **kw)


@no_gpu
def test_trainer_trains_on_the_cpu_here(tmp_path):
    a = args(tmp_path)
    assert a.device == "cpu" and a.n_gpu == 0
    model = tiny_model()
    before = model.trainable_state_dict()
    trainer = Trainer(model=model, args=a, train_dataset=rows())
    out = trainer.train()
    assert out.global_step == 2 and model.device == "cpu"
    after = model.trainable_state_dict()
    assert any(not np.array_equal(before[k], after[k]) for k in before)


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, device=None, dtype=None):
        self.calls.append((device, dtype))


@pytest.fixture
def fake_gpu(monkeypatch):
    """CUDA reported available (the model's moves are recorded, not run)."""
    monkeypatch.setattr(_backend, "cuda_status", lambda: (True, "Fake GPU"))


def test_trainer_device_and_compute_dtype_as_transformers(tmp_path, fake_gpu):
    assert args(tmp_path).device == "cuda:0" and args(tmp_path).n_gpu == 1
    assert args(tmp_path, use_cpu=True).device == "cpu"
    for kw, want in [({}, ("cuda:0", "float32")), ({"bf16": True}, ("cuda:0", "bfloat16")),
                     ({"fp16": True}, ("cuda:0", "float16"))]:
        model = tiny_model()
        model.to = Recorder()
        Trainer(model=model, args=args(tmp_path, **kw), train_dataset=rows())
        assert model.to.calls == [want]
    model = tiny_model()
    model.to = Recorder()
    with pytest.warns(UserWarning, match="CPU training loop computes in float32"):
        Trainer(model=model, args=args(tmp_path, use_cpu=True, fp16=True), train_dataset=rows())
    assert model.to.calls == [("cpu", "float32")]
    model = tiny_model()
    model.to = Recorder()
    Trainer(model=model, args=args(tmp_path, use_cpu=True, bf16=True), train_dataset=rows())
    assert model.to.calls == [("cpu", "bfloat16")]


def test_without_a_driver_the_kernels_library_is_never_opened():
    """The CUDA probe asks for the NVIDIA driver before it opens the kernels library built for it: without
    a driver that library (statically linked cuBLAS, ~150 MiB of RSS once mapped) stays out of the process."""
    import subprocess
    import sys

    if not _backend.cuda_compiled() or _backend.CUDA_LIBRARY != _backend.BUILT_CUDA_LIBRARY:
        pytest.skip("a CPU-only build, or LORAFAST_CUDA_LIBRARY names another library: nothing to keep out")
    if _backend._C.cuda_driver()[0]:
        pytest.skip("an NVIDIA driver is installed here: the library is opened, as it should be")
    code = ("from lorafast import _backend; print(_backend.cuda_status()); "
            "print(any('_cuda_kernels' in line or 'libcublas' in line for line in open('/proc/self/maps')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    status, opened = out.strip().splitlines()[-2:]
    assert "no NVIDIA driver found" in status
    assert opened == "False", "the kernels library (or cuBLAS) was mapped without a driver"
