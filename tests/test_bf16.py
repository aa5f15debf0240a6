"""bf16 on the CPU (model.to("cpu", dtype="bfloat16"), TrainingArguments(bf16=True)) against transformers +
peft: on tiny RoBERTa, BERT, Llama (GQA) and Mistral checkpoints, lorafast's bf16 logits and every trainable
gradient are no farther from HF's float32 result than twice HF's own torch.autocast("cpu", torch.bfloat16)
error plus a small floor, and differ from lorafast's float32 numbers (bf16 really used)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

import lorafast as lf  # noqa: E402
import test_decoder as dec  # noqa: E402
from test_encoder import TINY, hf_forward_backward, lorafast_model, make_adapter, make_checkpoint  # noqa: E402
from test_encoder import random_batch  # noqa: E402

FLOOR = 2e-3  # relative: a quarter of bf16's epsilon (2**-8 = 3.9e-3 is half an ulp at 1)


def rel(x, ref):
    return float(np.linalg.norm(np.asarray(x, np.float64) - ref) / max(np.linalg.norm(ref), 1e-30))


def assert_bf16_close(ours, autocast, ref, what):
    err, budget = rel(ours, ref), 2 * rel(autocast, ref) + FLOOR
    assert err <= budget, f"{what}: lorafast bf16 error {err:.3g} > 2 x autocast's {rel(autocast, ref):.3g} + floor"


def check(ours_bf16, ours_f32, hf_bf16, hf_f32):
    """(logits, grads) of each side: bf16 no farther from HF f32 than autocast is, and not lorafast's f32."""
    assert_bf16_close(ours_bf16[0], hf_bf16[0], hf_f32[0], "logits")
    assert sorted(ours_bf16[1]) == sorted(hf_f32[1])
    for name, ref in hf_f32[1].items():
        assert np.linalg.norm(ref) > 0, f"{name}: the reference gradient is zero (test cannot fail)"
        assert_bf16_close(ours_bf16[1][name], hf_bf16[1][name], ref, name)
    assert rel(ours_bf16[0], ours_f32[0]) > 1e-5, "bf16 logits equal float32's: bf16 was not used"


@pytest.mark.parametrize("name", ["roberta-h80-2l-5h", "bert-h36-3l-4h"])
def test_encoder_bf16_within_autocast_error(tmp_path, name):
    model_type, hidden, layers, heads, inter, labels = TINY[name]
    hf = make_checkpoint(tmp_path / "ckpt", *TINY[name])
    pm = make_adapter(tmp_path / "adapter", hf, targets=["query", "value", "output.dense"])
    ours = lorafast_model(tmp_path / "ckpt", tmp_path / "adapter", labels)
    rng = np.random.default_rng(0)
    ids, mask, types = random_batch(rng, model_type, [3, 17, 31, 9], with_types=model_type == "bert")
    y = rng.integers(0, labels, len(ids))
    weights = rng.uniform(0.5, 2.0, labels).astype(np.float32)
    hf_f32 = hf_forward_backward(pm, ids, mask, y, weights, types)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hf_bf16 = hf_forward_backward(pm, ids, mask, y, weights, types)

    def step():
        logits = ours(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        _, grads = ours.forward_backward(ids, mask, y, class_weights=weights, token_type_ids=types)
        return logits, grads

    f32 = step()
    assert ours.to("cpu", dtype="bfloat16") is ours and ours.base_model._c.cpu_dtype == "bfloat16"
    bf16 = step()
    check(bf16, f32, (hf_bf16[0].astype(np.float32), hf_bf16[2]), (hf_f32[0], hf_f32[2]))
    ours.to("cpu", dtype="float32")  # back to float32: its numbers again, bit for bit
    again = step()
    np.testing.assert_array_equal(again[0], f32[0])
    for k in f32[1]:
        np.testing.assert_array_equal(again[1][k], f32[1][k])


@pytest.mark.parametrize("kind", ["llama", "mistral"])
def test_decoder_bf16_within_autocast_error(tmp_path, kind):
    torch.manual_seed(0)
    cfg = dec.hf_config(kind, hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2)
    model = transformers.AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.add_(0.2 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    targets = ["q_proj", "v_proj", "down_proj"]
    hf = dec.hf_peft(tmp_path, targets)
    ours = dec.lf_peft(tmp_path, hf, targets)
    ids, mask, y = dec.batch("right")

    def hf_side():
        hf.zero_grad()
        logits, _, grads = dec.hf_step(hf, ids, mask, y, [0.7, 1.2, 1.0])
        return logits.astype(np.float32), {k: v.copy() for k, v in grads.items()}

    hf_f32 = hf_side()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hf_bf16 = hf_side()

    def step():
        logits = ours(input_ids=ids, attention_mask=mask).logits
        _, grads = ours.forward_backward(ids, mask, y, class_weights=[0.7, 1.2, 1.0])
        return logits, grads

    f32 = step()
    ours.to("bfloat16")  # a dtype alone keeps the device
    check(step(), f32, hf_bf16, hf_f32)


def test_trainer_bf16_on_the_cpu_and_its_bad_input(tmp_path):
    with pytest.raises(ValueError, match="At most one of fp16 and bf16 can be True, but not both"):
        lf.TrainingArguments(output_dir=str(tmp_path), bf16=True, fp16=True, use_cpu=True)
    make_checkpoint(tmp_path / "ckpt", *TINY["roberta-h24-2l-3h"])
    base = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=2)
    model = lf.get_peft_model(base, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=2, lora_alpha=4))
    rows = lf.Dataset.from_dict({"input_ids": [[0, 5, 6, 2], [0, 7, 2]], "label": [0, 1]})
    args = lf.TrainingArguments(output_dir=str(tmp_path / "out"), bf16=True, use_cpu=True, report_to="none")
    lf.Trainer(model=model, args=args, train_dataset=rows)
    assert base._c.cpu_dtype == "bfloat16"
    with pytest.raises(ValueError, match="float16.*CPU"):
        model.to("cpu", dtype="float16")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_matmul_bf16_op_equals_torch_on_rounded_inputs(dtype):
    """ops/matmul_bf16.c: x @ w.T + b and dout @ w with x, dout and w rounded to bf16 as torch rounds them,
    f32 accumulation (summation order aside), for weights stored in each float dtype."""
    rng = np.random.default_rng(2)
    x, d = rng.standard_normal((37, 80)).astype(np.float32), rng.standard_normal((37, 48)).astype(np.float32)
    w32, b = rng.standard_normal((48, 80)).astype(np.float32), rng.standard_normal(48).astype(np.float32)
    stored = {"float32": w32, "float16": w32.astype(np.float16),
              "bfloat16": torch.tensor(w32).bfloat16().view(torch.uint16).numpy()}[dtype]
    w = torch.tensor(w32 if dtype != "float16" else stored.astype(np.float32))
    out, dx, _ = lf._C.op_matmul_bf16(x, stored, dtype, b, d)

    def bf(a):
        return torch.as_tensor(a).bfloat16().double()

    ref = (bf(x) @ bf(w).T).numpy() + b
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, (bf(d) @ bf(w)).numpy(), rtol=1e-5, atol=1e-4)  # written over NaN
    dx0 = rng.standard_normal((37, 80)).astype(np.float32)
    _, dx_sum, _ = lf._C.op_matmul_bf16(x, stored, dtype, b, d, 1, dx0)  # accumulated: dx0 + dout @ w
    np.testing.assert_allclose(dx_sum, dx0 + (bf(d) @ bf(w)).numpy(), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="shapes disagree"):
        lf._C.op_matmul_bf16(x, stored[:, :79].copy(), dtype)
    with pytest.raises(ValueError, match="shapes disagree"):
        lf._C.op_matmul_bf16(x, stored, dtype, b, d, 1, dx0[:, :79].copy())


def test_two_bf16_models_in_two_threads_give_their_serial_results(tmp_path):
    import threading

    make_checkpoint(tmp_path / "ckpt", *TINY["roberta-h80-2l-5h"])
    models = [lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=3).to("bfloat16")
              for _ in range(2)]
    rng = np.random.default_rng(7)
    batches = [random_batch(rng, "roberta", [5, 30, 12])[:2] for _ in range(2)]
    serial = [m(input_ids=ids, attention_mask=mask).logits for m, (ids, mask) in zip(models, batches)]
    out = [[], []]

    def run(i):
        for _ in range(20):
            out[i].append(models[i](input_ids=batches[i][0], attention_mask=batches[i][1]).logits)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert len(out[i]) == 20
        for logits in out[i]:
            np.testing.assert_array_equal(logits, serial[i])


def test_a_cpu_without_fast_bf16_warns_once(tmp_path, monkeypatch):
    import lorafast.modeling as modeling

    class NoBf16:
        def __getattr__(self, name):
            return getattr(lf._C, name)

        def build_info(self):
            return dict(lf._C.build_info(), cpu_bf16=False, cpu_bf16_reason="no AMX-BF16 on this CPU and no "
                        "AVX512-BF16: bf16 products are slower than float32 here")

    monkeypatch.setattr(modeling, "_C", NoBf16())
    monkeypatch.setattr(modeling, "_SLOW_BF16_WARNED", [])
    make_checkpoint(tmp_path / "ckpt", *TINY["roberta-h24-2l-3h"])
    model = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=2)
    with pytest.warns(UserWarning, match="bfloat16 on this CPU is slower than float32: no AMX-BF16"):
        model.to("cpu", dtype="bfloat16")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.to("cpu", dtype="bfloat16")  # once per process


def test_gradient_checkpointing_in_bf16_gives_the_same_step(tmp_path):
    """Backward recomputes each layer with the same packed bf16 products: the same gradients bit for bit."""
    make_checkpoint(tmp_path / "ckpt", *TINY["bert-h36-3l-4h"], dropout=0.1)
    base = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=3)
    model = lf.get_peft_model(base, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=2, lora_alpha=4, lora_dropout=0.1))
    model.to("cpu", dtype="bfloat16").train()
    ids, mask, _ = random_batch(np.random.default_rng(4), "bert", [7, 30, 3, 12])
    y = np.array([0, 1, 2, 0])
    model.manual_seed(3)
    loss, grads = model.forward_backward(ids, mask, y)
    model.gradient_checkpointing_enable()
    model.manual_seed(3)  # the same dropout masks
    loss2, grads2 = model.forward_backward(ids, mask, y)
    assert loss2 == loss
    for k in grads:
        np.testing.assert_array_equal(grads2[k], grads[k])
