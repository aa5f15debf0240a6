"""Bad input to the classifiers (BERT, RoBERTa, Llama, Mistral), a test each: ids >= vocab size,
negative ids, mask / ids shape mismatch, sequences longer than max_position_embeddings (refused
exactly where transformers refuses), labels outside [0, num_labels), the wrong number of class
weights, NaN / Inf in a weight file. Each is a clear ValueError naming the value at fault, from
the forward and from the training step, and the model still works afterwards."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import lorafast as lf  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from test_decoder import hf_config as decoder_config  # noqa: E402
from test_encoder import hf_config as encoder_config  # noqa: E402

VOCAB, LABELS, MAX_POS = 97, 3, 24
KINDS = ["bert", "roberta", "llama", "mistral"]


def hf_model(kind):
    torch.manual_seed(0)
    if kind in ("bert", "roberta"):
        cfg = encoder_config(kind, 24, 1, 2, 40, LABELS, vocab=VOCAB, max_pos=MAX_POS)
    else:
        cfg = decoder_config(kind, vocab_size=VOCAB, num_labels=LABELS, max_position_embeddings=MAX_POS)
    return transformers.AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager").eval()


@pytest.fixture(scope="module", params=KINDS)
def checkpoint(request, tmp_path_factory):
    """(kind, folder, transformers model) of a tiny random checkpoint written by transformers."""
    folder = tmp_path_factory.mktemp(request.param)
    model = hf_model(request.param)
    model.save_pretrained(folder)
    return request.param, folder, model


@pytest.fixture(scope="module")
def model(checkpoint):
    kind, folder, _ = checkpoint
    base = lf.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=LABELS)
    return lf.get_peft_model(base, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=2, lora_alpha=4))


def good_batch(kind, L=6):
    ids = np.random.default_rng(0).integers(3, VOCAB, (2, L))
    ids[:, 0] = 0 if kind == "roberta" else 1  # <s> / [CLS]-like first token
    return ids, np.ones_like(ids), np.array([0, 2])


def still_works(model, kind):
    ids, mask, labels = good_batch(kind)
    loss, grads = model.forward_backward(ids, mask, labels)
    assert np.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())


def both_entry_points(model, ids, mask, labels, match, class_weights=None):
    with pytest.raises(ValueError, match=match):
        model(input_ids=ids, attention_mask=mask, labels=labels, class_weights=class_weights)
    with pytest.raises(ValueError, match=match):
        model.forward_backward(ids, mask, labels, class_weights=class_weights)


def test_ids_at_or_above_vocab_size(model, checkpoint):
    kind = checkpoint[0]
    ids, mask, labels = good_batch(kind)
    ids[1, 3] = VOCAB
    both_entry_points(model, ids, mask, labels,
                      rf"input_ids\[1\]\[3\] = {VOCAB} is outside the vocabulary \[0, {VOCAB}\)")
    ids[1, 3] = 10**12
    both_entry_points(model, ids, mask, labels, "outside the vocabulary")
    still_works(model, kind)


def test_negative_ids(model, checkpoint):
    kind = checkpoint[0]
    ids, mask, labels = good_batch(kind)
    ids[0, 2] = -1
    both_entry_points(model, ids, mask, labels, r"input_ids\[0\]\[2\] = -1 is outside the vocabulary")
    still_works(model, kind)


def test_mask_and_ids_shape_mismatch(model, checkpoint):
    kind = checkpoint[0]
    ids, mask, labels = good_batch(kind)
    both_entry_points(model, ids, mask[:, :-1], labels,
                      r"attention_mask shape \(2, 5\) does not match input_ids shape \(2, 6\)")
    both_entry_points(model, ids, mask[:1], labels, "attention_mask shape")
    with pytest.raises(ValueError, match="attention_mask must be 2-D"):
        model(input_ids=ids, attention_mask=mask[None])
    still_works(model, kind)


def test_sequence_longer_than_max_position_embeddings(model, checkpoint):
    """Refused exactly from the length where transformers fails (RoBERTa counts positions from
    padding_idx + 1, so its limit is max_position_embeddings - 2); decoders (RoPE) have no
    position table and, like transformers, run past it."""
    kind, _, hf = checkpoint
    limit = {"bert": MAX_POS, "roberta": MAX_POS - 2}.get(kind, 2 * hf.config.max_position_embeddings)
    for L in (limit, limit + 1):
        ids, mask, labels = good_batch(kind, L)
        try:
            with torch.no_grad():
                ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
        except (RuntimeError, IndexError):
            ref = None
        if ref is None:
            assert L == limit + 1 and kind in ("bert", "roberta")
            both_entry_points(model, ids, mask, labels, f"beyond max_position_embeddings={MAX_POS}")
        else:
            model.eval()
            np.testing.assert_allclose(model(input_ids=ids, attention_mask=mask).logits, ref, rtol=1e-4, atol=1e-5)
    still_works(model, kind)


def test_labels_outside_num_labels(model, checkpoint):
    kind = checkpoint[0]
    ids, mask, _ = good_batch(kind)
    both_entry_points(model, ids, mask, np.array([0, LABELS]),
                      rf"labels\[1\] = {LABELS} is outside \[0, num_labels={LABELS}\)")
    both_entry_points(model, ids, mask, np.array([-1, 0]), r"labels\[0\] = -1 is outside")
    both_entry_points(model, ids, mask, np.array([0, 1, 2]), "labels has 3 values for a batch of 2 rows")
    still_works(model, kind)


def test_wrong_number_of_class_weights(model, checkpoint):
    kind = checkpoint[0]
    ids, mask, labels = good_batch(kind)
    for weights in ([1.0, 2.0], [1.0] * (LABELS + 1)):
        both_entry_points(model, ids, mask, labels, rf"class_weights has {len(weights)} values, the model has "
                          rf"num_labels={LABELS}", class_weights=weights)
    still_works(model, kind)


def weight_names(kind):
    """(a frozen matrix, a norm vector, the head weight) of the checkpoint."""
    if kind in ("bert", "roberta"):
        head = "classifier.weight" if kind == "bert" else "classifier.out_proj.weight"
        return [f"{kind}.encoder.layer.0.attention.self.key.weight", f"{kind}.embeddings.LayerNorm.weight", head]
    return ["model.layers.1.mlp.down_proj.weight", "model.norm.weight", "score.weight"]


def test_nan_or_inf_in_a_weight_file(checkpoint, tmp_path):
    """NaN, +Inf, -Inf in f32 and bf16 files, in a frozen matrix, a norm vector and the head."""
    kind, _, hf = checkpoint
    matrix, norm, head = weight_names(kind)
    cases = [(matrix, torch.float32, float("nan")), (norm, torch.bfloat16, float("inf")),
             (head, torch.float32, -float("inf")), (matrix, torch.bfloat16, -float("inf")),
             (head, torch.bfloat16, float("nan"))]
    for i, (name, dtype, bad) in enumerate(cases):
        tensors = {k: v.detach().to(dtype).clone() for k, v in hf.state_dict().items()}
        tensors[name].view(-1)[7] = bad
        folder = tmp_path / f"bad{i}"
        hf.config.save_pretrained(folder)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        with pytest.raises(ValueError, match=rf"checkpoint .*bad{i}.*{name}.*non-finite value \(NaN or Inf\)"):
            lf.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=LABELS)
