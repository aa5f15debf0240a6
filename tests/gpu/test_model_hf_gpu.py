"""The model on CUDA against transformers + peft (test_model_gpu.py compares it with the CPU path):
the tiny RoBERTa, BERT, Llama and Mistral checkpoints of test_model_gpu.py, the lorafast peft model on
"cuda" (LoRA with B non-zero) and transformers + peft loading its adapter folder (the same LoRA and
head weights), both with dropout off: logits, class-weighted loss and every trainable gradient, in f32
(logits and loss 1e-5, gradients 1e-4 relative, norm-wise) and in bf16 against transformers computing
in f32 from the bf16-rounded weights (test_model_gpu.TOL); with gradient checkpointing on both sides
for one encoder and one decoder.

transformers runs on torch's CUDA device where torch has one (TF32 off: f32 products in f32), else on
the CPU (under emulation: test_model_emulated.py). Skipped as test_model_gpu.py is (its cuda fixture).
"""

import numpy as np
import pytest

from test_model_gpu import KINDS, TOL, assert_close, assert_grads_close, batch, lf_model, rel
from test_model_gpu import checkpoints, cuda  # noqa: F401 (fixtures: the same checkpoints, the same skip)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from test_encoder import peft_key  # noqa: E402

# (kind, lorafast's device dtype, gradient checkpointing)
CASES = [(kind, dtype, False) for kind in sorted(KINDS) for dtype in ("float32", "bfloat16")] + [
    ("roberta", "float32", True), ("llama", "float32", True)]


@pytest.fixture(scope="module")
def torch_device():
    """transformers' device: torch's CUDA device, with TF32 off, where there is one; else the CPU."""
    if not torch.cuda.is_available():
        yield "cpu"
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield "cuda"
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def hf_model(folder, adapter, dtype, device):
    """transformers + peft on device with the adapter folder, in f32 (from the bf16-rounded frozen
    weights for a bf16 lorafast model), every dropout at 0: train mode computes what eval does."""
    config = transformers.AutoConfig.from_pretrained(folder)
    for key, value in config.to_dict().items():
        if "dropout" in key and isinstance(value, float):
            setattr(config, key, 0.0)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, config=config, dtype=getattr(torch, dtype), attn_implementation="eager").float()
    lora = peft.PeftConfig.from_pretrained(adapter)
    lora.lora_dropout = 0.0
    return peft.PeftModel.from_pretrained(base, adapter, config=lora, is_trainable=True).to(device)


def layer_runs(model):
    """A list that grows by one each time the first layer runs (a recomputation included)."""
    layer = next(m for m in model.modules() if isinstance(m, transformers.modeling_layers.GradientCheckpointingLayer))
    runs = []
    next(layer.children()).register_forward_hook(lambda *_: runs.append(1))
    return runs


def hf_step(model, device, ids, mask, types, labels, weights):
    """logits, loss and {peft adapter key: gradient} of one transformers + peft step on device."""
    inputs = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    logits = model(**{k: torch.tensor(v, device=device) for k, v in inputs.items() if v is not None}).logits
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels, device=device),
                                             weight=torch.tensor(weights, device=device))
    loss.backward()
    grads = {peft_key(n): p.grad.cpu().numpy() for n, p in model.named_parameters() if p.requires_grad}
    return logits.detach().cpu().numpy(), loss.item(), grads


@pytest.mark.parametrize("kind,dtype,checkpointing", CASES)
def test_cuda_matches_transformers(checkpoints, torch_device, tmp_path, kind, dtype, checkpointing):  # noqa: F811
    ours = lf_model(checkpoints[kind], kind, dtype, "cuda")
    assert ours.device == "cuda:0" and ours.c_model.device_dtype == dtype and not ours.training
    ours.save_pretrained(tmp_path)
    ref = hf_model(checkpoints[kind], tmp_path, dtype, torch_device)
    runs = layer_runs(ref)
    if checkpointing:
        ours.gradient_checkpointing_enable()
        ref.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ref.train(checkpointing)  # transformers recomputes a layer only in train mode
    ids, mask, types, labels = batch(kind)
    weights = np.linspace(0.7, 1.4, KINDS[kind][1]).astype(np.float32)
    ref_logits, ref_loss, ref_grads = hf_step(ref, torch_device, ids, mask, types, labels, weights)
    assert len(runs) == 1 + checkpointing, f"transformers ran its first layer {len(runs)} times"
    tol = TOL[dtype]

    logits = ours(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert_close("logits", logits, ref_logits, tol["logits"])
    if dtype == "bfloat16":  # and they are bf16's: further from transformers' f32 than f32's would be
        assert rel(logits, ref_logits) > TOL["float32"]["logits"], "bf16 logits as close as f32 ones"
    loss, grads = ours.forward_backward(ids, mask, labels, class_weights=weights, token_type_ids=types)
    assert abs(loss - ref_loss) <= tol["loss"] * abs(ref_loss), f"loss {loss} != {ref_loss}"
    assert_grads_close("gradient", grads, ref_grads, tol)
