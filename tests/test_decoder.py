"""Llama / Mistral sequence classifiers with LoRA against transformers + peft on tiny random
checkpoints made here: logits, loss and every LoRA / score gradient, with and without gradient
checkpointing; GQA (kv heads < heads), Mistral's sliding window shorter than the sequence, right
and left padding, pad = eos with an eos inside a text; bf16-resident weights; parameter counts
of the real 7B configs; bad input."""

import contextlib
import io

import numpy as np
import pytest
import torch
import transformers
from peft import LoraConfig as HFLoraConfig
from peft import TaskType as HFTaskType
from peft import get_peft_model as hf_get_peft_model
from peft import get_peft_model_state_dict

import lorafast as lf
from test_encoder import assert_grads_close, assert_logits_close

ALL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
EOS = 2
VOCAB, NUM_LABELS, SEQ = 101, 3, 9


def hf_config(kind, **overrides):
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, pad_token_id=EOS, eos_token_id=EOS, bos_token_id=1,
                  num_labels=NUM_LABELS, rms_norm_eps=1e-5)
    common.update(overrides)
    if kind == "mistral":
        return transformers.MistralConfig(sliding_window=4, rope_theta=10000.0, **common)
    return transformers.LlamaConfig(rope_theta=500.0, **common)


@pytest.fixture(scope="module", params=["llama", "mistral"])
def checkpoint(request, tmp_path_factory):
    """(kind, folder) of a tiny random checkpoint saved by transformers, with non-trivial norms."""
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_config(
        hf_config(request.param), attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    return request.param, folder


def batch(padding):
    """3 rows of lengths 9, 6, 4 padded with pad = eos; row 1 has an eos inside its text."""
    rng = np.random.default_rng(1)
    ids = rng.integers(3, VOCAB, (3, SEQ))
    mask = np.ones((3, SEQ), np.int64)
    for b, n in enumerate([9, 6, 4]):
        pad = slice(0, SEQ - n) if padding == "left" else slice(n, SEQ)
        ids[b, pad] = EOS
        mask[b, pad] = 0
    text_start = SEQ - 6 if padding == "left" else 0
    ids[1, text_start + 2] = EOS
    return ids, mask, np.array([0, 2, 1])


def hf_peft(folder, targets, dtype=torch.float32):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, attn_implementation="eager", dtype=dtype).float()
    config = HFLoraConfig(task_type=HFTaskType.SEQ_CLS, r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)
    model = hf_get_peft_model(model, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # B non-zero, so every gradient is exercised
                p.normal_(0.0, 0.2)
    return model


def lf_peft(folder, hf_model, targets, dtype=None):
    model = lf.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=NUM_LABELS, dtype=dtype)
    model = lf.get_peft_model(model, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=4, lora_alpha=8,
                                                   lora_dropout=0.0, target_modules=targets))
    model.load_trainable_state_dict({k: v.numpy() for k, v in get_peft_model_state_dict(hf_model).items()})
    return model


def hf_step(model, ids, mask, labels, class_weights=None):
    """logits, loss and {peft adapter key: gradient} of one transformers + peft step."""
    out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
    loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor(labels), weight=weight)
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = name.replace(".default.", ".").replace(".modules_to_save.", ".")
            grads[key] = p.grad.numpy()
    return out.logits.detach().float().numpy(), loss.item(), grads


def assert_close_loss(ours, ref):
    assert abs(ours - ref) <= 1e-6 * abs(ref), f"loss {ours} vs {ref}"


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_forward_backward_matches_transformers_peft(checkpoint, padding, checkpointing):
    kind, folder = checkpoint
    ids, mask, labels = batch(padding)
    class_weights = [0.7, 1.3, 1.1] if padding == "left" else None
    hf_model = hf_peft(folder, ALL_TARGETS)
    ref_logits, ref_loss, ref_grads = hf_step(hf_model, ids, mask, labels, class_weights)
    model = lf_peft(folder, hf_model, ALL_TARGETS)
    if checkpointing:
        model.gradient_checkpointing_enable()
    loss, grads = model.forward_backward(ids, mask, labels, class_weights=class_weights)
    assert_logits_close(model(input_ids=ids, attention_mask=mask).logits, ref_logits)
    assert_close_loss(loss, ref_loss)
    assert len(grads) == 2 * 7 * 2 + 1  # A and B of 7 projections in 2 layers, and the score head
    assert_grads_close(grads, ref_grads)


def test_peft_default_targets_and_trainable_keys(checkpoint):
    kind, folder = checkpoint
    hf_model = hf_peft(folder, None)
    ids, mask, labels = batch("right")
    ref_logits, ref_loss, ref_grads = hf_step(hf_model, ids, mask, labels)
    model = lf_peft(folder, hf_model, None)
    assert sorted(model.trainable_state_dict()) == sorted(get_peft_model_state_dict(hf_model))
    loss, grads = model.forward_backward(ids, mask, labels)
    assert_close_loss(loss, ref_loss)
    assert_grads_close(grads, ref_grads)


def test_gradient_checkpointing_gives_the_same_gradients(checkpoint):
    kind, folder = checkpoint
    hf_model = hf_peft(folder, ALL_TARGETS)
    model = lf_peft(folder, hf_model, ALL_TARGETS)
    ids, mask, labels = batch("right")
    loss_a, plain = model.forward_backward(ids, mask, labels)
    model.gradient_checkpointing_enable()
    loss_b, recomputed = model.forward_backward(ids, mask, labels)
    assert loss_a == loss_b
    for name in plain:
        np.testing.assert_allclose(recomputed[name], plain[name], rtol=1e-6, atol=1e-9, err_msg=name)


def test_bf16_resident_weights_match_transformers_on_the_rounded_weights(checkpoint, tmp_path):
    kind, folder = checkpoint
    rounded = transformers.AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.bfloat16)
    rounded.float().save_pretrained(tmp_path)  # f32 checkpoint holding bf16 values
    hf_model = hf_peft(tmp_path, ALL_TARGETS)
    ids, mask, labels = batch("left")
    ref_logits, ref_loss, ref_grads = hf_step(hf_model, ids, mask, labels)
    model = lf_peft(tmp_path, hf_model, ALL_TARGETS, dtype="bfloat16")
    loss, grads = model.forward_backward(ids, mask, labels)
    assert_close_loss(loss, ref_loss)
    assert_grads_close(grads, ref_grads)
    # and it really computes from bf16: the f32 weights of the original checkpoint give other logits
    full = lf_peft(folder, hf_model, ALL_TARGETS)
    assert not np.allclose(full(input_ids=ids, attention_mask=mask).logits,
                           model(input_ids=ids, attention_mask=mask).logits, rtol=0, atol=1e-6)


def test_no_pad_token_is_hf_error_for_batches_and_last_token_for_one_row(tmp_path):
    torch.manual_seed(0)
    hf = transformers.AutoModelForSequenceClassification.from_config(
        hf_config("llama", pad_token_id=None), attn_implementation="eager")
    hf.save_pretrained(tmp_path)
    ids, mask, _ = batch("right")
    ours = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=NUM_LABELS)
    with pytest.raises(ValueError) as ref_error:
        hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    with pytest.raises(ValueError) as our_error:
        ours(input_ids=ids, attention_mask=mask)
    assert str(our_error.value) == str(ref_error.value)
    ref = hf(input_ids=torch.tensor(ids[:1])).logits.detach().numpy()
    assert_logits_close(ours(input_ids=ids[:1]).logits, ref)
    # the notebook sets the pad id on the loaded model: both read it at the next call
    hf.config.pad_token_id = ours.config.pad_token_id = EOS
    ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.detach().numpy()
    assert_logits_close(ours(input_ids=ids, attention_mask=mask).logits, ref)


def peft_line(model):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model.print_trainable_parameters()
    return out.getvalue().strip()


@pytest.mark.parametrize("folder, r", [("mistralai--Mistral-7B-v0.1", 2), ("meta-llama--Llama-2-7b-hf", 16)])
def test_print_trainable_parameters_equals_peft_for_the_7b_configs(shared, folder, r):
    path = shared / "models" / folder
    hf_cfg = transformers.AutoConfig.from_pretrained(path, num_labels=2)
    with torch.device("meta"):
        hf = transformers.AutoModelForSequenceClassification.from_config(hf_cfg)
    lora = dict(r=r, lora_alpha=16, lora_dropout=0.1, bias="none", target_modules=["q_proj", "v_proj"])
    expected = peft_line(hf_get_peft_model(hf, HFLoraConfig(task_type=HFTaskType.SEQ_CLS, **lora)))
    config = lf.AutoConfig.from_pretrained(path)
    config.pad_token_id = config.eos_token_id
    ours = lf.AutoModelForSequenceClassification.from_config(config, num_labels=2, materialize=False)
    ours = lf.get_peft_model(ours, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, **lora))
    assert peft_line(ours) == expected


def test_bad_input_and_unsupported_configs(checkpoint, tmp_path):
    kind, folder = checkpoint
    model = lf.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=NUM_LABELS)
    ids, mask, labels = batch("right")
    bad = ids.copy()
    bad[0, 0] = VOCAB
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(input_ids=bad, attention_mask=mask)
    with pytest.raises(ValueError, match="masked out"):  # the pooled (last non-pad) token is masked
        model(input_ids=np.full((1, 4), 5), attention_mask=np.array([[1, 1, 1, 0]]))
    with pytest.raises(ValueError, match="labels"):
        model.forward_backward(ids, mask, np.array([0, 1, NUM_LABELS]))
    with pytest.raises(ValueError, match="not found in the base model"):
        lf.get_peft_model(model, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, target_modules=["query"]))
    config = lf.AutoConfig.from_pretrained(folder)
    config.rope_parameters = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    with pytest.raises(NotImplementedError, match="linear"):
        lf.AutoModelForSequenceClassification.from_config(config)
    config = lf.AutoConfig.from_pretrained(folder, hidden_act="gelu")
    with pytest.raises(NotImplementedError, match="hidden_act"):
        lf.AutoModelForSequenceClassification.from_config(config)
    config = lf.AutoConfig.from_pretrained(folder, num_key_value_heads=3)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        lf.AutoModelForSequenceClassification.from_config(config)
    if kind == "mistral":  # the window is over columns: a mask with a gap is refused
        gap = mask.copy()
        gap[0, 3] = 0
        with pytest.raises(ValueError, match="gap"):
            model(input_ids=ids, attention_mask=gap)
