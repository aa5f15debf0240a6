"""BERT / RoBERTa classifiers with LoRA: forward and backward against transformers + peft on
tiny random checkpoints made here, and on the real all-MiniLM-L6-v2 weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

import lorafast as lf  # noqa: E402
from conftest import minilm_folder  # noqa: E402

TINY = {
    # name: (model_type, hidden, layers, heads, intermediate, num_labels)
    "roberta-h24-2l-3h": ("roberta", 24, 2, 3, 40, 2),
    "bert-h36-3l-4h": ("bert", 36, 3, 4, 52, 3),
    "roberta-h80-2l-5h": ("roberta", 80, 2, 5, 100, 3),
}


def hf_config(model_type, hidden, layers, heads, inter, labels, vocab=97, max_pos=72, dropout=0.0):
    cls = transformers.RobertaConfig if model_type == "roberta" else transformers.BertConfig
    extra = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1) if model_type == "roberta" else {}
    return cls(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
               intermediate_size=inter, max_position_embeddings=max_pos, num_labels=labels,
               hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, **extra)


def make_checkpoint(folder, model_type, hidden, layers, heads, inter, labels, seed=0, **kw):
    """A random HF checkpoint (model.safetensors + config.json) written by transformers."""
    torch.manual_seed(seed)
    cfg = hf_config(model_type, hidden, layers, heads, inter, labels, **kw)
    cls = (transformers.RobertaForSequenceClassification if model_type == "roberta"
           else transformers.BertForSequenceClassification)
    model = cls(cfg).eval()
    model.save_pretrained(folder)
    return model


def randomize_adapter(peft_model, seed=1, scale=0.2):
    """Non-zero A and B (B is zeros after init) so LoRA contributes to logits and grads."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def make_adapter(folder, hf_model, targets=None, r=4, alpha=8, use_rslora=False, seed=1):
    cfg = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                          target_modules=targets, use_rslora=use_rslora)
    pm = peft.get_peft_model(hf_model, cfg)
    randomize_adapter(pm, seed)
    pm.save_pretrained(folder)
    return pm


def random_batch(rng, model_type, lengths, vocab=97, with_types=False):
    """Right-padded ids and mask; RoBERTa rows start with <s>=0 and avoid the pad id 1."""
    L = max(lengths)
    pad = 1 if model_type == "roberta" else 0
    ids = np.full((len(lengths), L), pad, np.int64)
    mask = np.zeros((len(lengths), L), np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(3, vocab, n)
        ids[b, 0] = 0 if model_type == "roberta" else 2
        mask[b, :n] = 1
    types = None
    if with_types:
        types = (np.arange(L)[None, :] >= (np.array(lengths)[:, None] // 2)).astype(np.int64) * mask
    return ids, mask, types


def peft_key(name):
    """peft's named_parameters name -> the key it writes into adapter_model.safetensors."""
    return name.replace(".modules_to_save.default", "").replace(".default.weight", ".weight")


def hf_forward_backward(pm, ids, mask, labels, weights=None, types=None):
    """logits, loss and the trainable grads of a peft model in its current mode."""
    pm.zero_grad()
    kw = {} if types is None else {"token_type_ids": torch.tensor(types)}
    logits = pm(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), **kw).logits
    w = None if weights is None else torch.tensor(weights, dtype=torch.float32)
    loss = torch.nn.CrossEntropyLoss(weight=w)(logits, torch.tensor(labels))
    loss.backward()
    grads = {peft_key(n): p.grad.numpy().copy() for n, p in pm.named_parameters() if p.requires_grad}
    return logits.detach().float().numpy(), float(loss.detach()), grads


def assert_logits_close(ours, ref):
    tol = 1e-5 * np.maximum(1.0, np.abs(ref))
    assert ours.shape == ref.shape
    assert (np.abs(ours - ref) <= tol).all(), f"max |diff| {np.abs(ours - ref).max()}"


def assert_grads_close(ours, ref, rtol=1e-4):
    assert sorted(ours) == sorted(ref)
    for name in ref:
        denom = max(np.linalg.norm(ref[name]), 1e-30)
        rel = np.linalg.norm(ours[name] - ref[name]) / denom
        assert rel <= rtol, f"{name}: relative gradient error {rel:.3g}"
        assert np.linalg.norm(ref[name]) > 0, f"{name}: the reference gradient is zero (test cannot fail)"


def lorafast_model(ckpt, adapter, num_labels):
    base = lf.AutoModelForSequenceClassification.from_pretrained(ckpt, num_labels=num_labels)
    return lf.PeftModel.from_pretrained(base, adapter, is_trainable=True)


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_checkpoint_parity(tmp_path, name):
    model_type, hidden, layers, heads, inter, labels = TINY[name]
    hf = make_checkpoint(tmp_path / "ckpt", *TINY[name])
    targets = ["query", "key", "value", "output.dense", "intermediate.dense"] if hidden == 80 else None
    pm = make_adapter(tmp_path / "adapter", hf, targets=targets, use_rslora=hidden == 80)
    ours = lorafast_model(tmp_path / "ckpt", tmp_path / "adapter", labels)
    rng = np.random.default_rng(0)
    ids, mask, types = random_batch(rng, model_type, [3, 17, 1 + 1, 31, 9], with_types=model_type == "bert")
    y = rng.integers(0, labels, len(ids))
    weights = rng.uniform(0.5, 2.0, labels).astype(np.float32)

    ref_logits, ref_loss, ref_grads = hf_forward_backward(pm, ids, mask, y, weights, types)
    ours.train()
    out = ours(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert_logits_close(out.logits, ref_logits)
    loss, grads = ours.forward_backward(ids, mask, y, class_weights=weights, token_type_ids=types)
    assert abs(loss - ref_loss) <= 1e-6 * abs(ref_loss)
    assert_grads_close(grads, ref_grads)
    n_lora = sum("lora_" in k for k in grads)
    assert n_lora == 2 * layers * (6 if targets else 2)


def test_unweighted_loss_and_labels_in_call(tmp_path):
    hf = make_checkpoint(tmp_path / "ckpt", *TINY["bert-h36-3l-4h"])
    pm = make_adapter(tmp_path / "adapter", hf)
    ours = lorafast_model(tmp_path / "ckpt", tmp_path / "adapter", 3)
    ids, mask, _ = random_batch(np.random.default_rng(3), "bert", [5, 12, 7])
    y = np.array([0, 2, 1])
    ref_logits, ref_loss, ref_grads = hf_forward_backward(pm, ids, mask, y)
    out = ours(input_ids=ids, attention_mask=mask, labels=y)
    assert abs(out.loss - ref_loss) <= 1e-6 * abs(ref_loss)
    loss, grads = ours.forward_backward(ids, mask, y)
    assert abs(loss - ref_loss) <= 1e-6 * abs(ref_loss)
    assert_grads_close(grads, ref_grads)


def test_padding_free_equals_each_row_alone(tmp_path):
    """Packing: a row's logits do not depend on the other rows or on how much padding it has."""
    make_checkpoint(tmp_path / "ckpt", *TINY["roberta-h24-2l-3h"])
    model = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=2)
    ids, mask, _ = random_batch(np.random.default_rng(5), "roberta", [4, 40, 11])
    batch = model(input_ids=ids, attention_mask=mask).logits
    for b in range(len(ids)):
        n = int(mask[b].sum())
        alone = model(input_ids=ids[b : b + 1, :n], attention_mask=mask[b : b + 1, :n]).logits
        np.testing.assert_allclose(batch[b : b + 1], alone, rtol=1e-5, atol=1e-6)


def tweets(shared, n):
    import csv

    with open(shared / "data" / "disaster_tweets" / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    return [r["text"] for r in rows], np.array([int(r["target"]) for r in rows])


def test_minilm_real_weights_on_64_tweets(tmp_path, shared):
    folder = minilm_folder()
    texts, labels = tweets(shared, 64)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
    ids, mask, types = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64), enc["token_type_ids"]
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    pm = make_adapter(tmp_path / "adapter", hf, r=8, alpha=16)
    ours = lorafast_model(folder, tmp_path / "adapter", 2)
    weights = np.array([0.877521613832853, 1.1622137404580153], np.float32)
    ref_logits, ref_loss, ref_grads = hf_forward_backward(pm.eval(), ids, mask, labels, weights, types)
    ours.eval()  # dropout off on both sides (the checkpoint's config has 0.1)
    out = ours(input_ids=ids, attention_mask=mask, token_type_ids=types)
    assert_logits_close(out.logits, ref_logits)
    loss, grads = ours.forward_backward(ids, mask, labels, class_weights=weights, token_type_ids=types)
    assert abs(loss - ref_loss) <= 1e-6 * abs(ref_loss)
    assert_grads_close(grads, ref_grads)


@pytest.mark.parametrize("name", ["roberta-h24-2l-3h", "bert-h36-3l-4h"])
def test_gradient_checkpointing_gives_the_same_step(tmp_path, name):
    """gradient_checkpointing_enable(): each layer is recomputed in backward from its input,
    dropout masks included (train mode, every dropout on), so the step is the same bit for bit."""
    make_checkpoint(tmp_path / "ckpt", *TINY[name], dropout=0.1)
    base = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=TINY[name][-1])
    model = lf.get_peft_model(base, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=2, lora_alpha=4,
                                                  lora_dropout=0.1))
    ids, mask, _ = random_batch(np.random.default_rng(4), TINY[name][0], [7, 30, 3, 12])
    y = np.array([0, 1, 1, 0])
    weights = [0.8, 1.3, 1.1][: TINY[name][-1]]
    model.train()
    model.manual_seed(3)
    loss_a, plain = model.forward_backward(ids, mask, y, class_weights=weights)
    model.gradient_checkpointing_enable()
    model.manual_seed(3)
    loss_b, recomputed = model.forward_backward(ids, mask, y, class_weights=weights)
    assert loss_a == loss_b
    assert sorted(plain) == sorted(recomputed) and any("layer.0." in k and "lora_A" in k for k in plain)
    for key in plain:
        np.testing.assert_array_equal(recomputed[key], plain[key], err_msg=key)
    model.gradient_checkpointing_disable()
    model.manual_seed(4)
    loss_c, _ = model.forward_backward(ids, mask, y, class_weights=weights)
    assert loss_c != loss_a  # another seed: other masks (the comparison above could see a difference)


def test_dropout_modes(tmp_path):
    """eval(): no dropout, deterministic, equal to the same model with every dropout at 0;
    train(): hidden, attention, classifier and LoRA dropout draw a new mask each step from the
    seeded stream (keep rate and scaling: tests/test_ops.py), reproducible with manual_seed."""
    make_checkpoint(tmp_path / "ckpt", *TINY["roberta-h24-2l-3h"], dropout=0.1)
    ids, mask, _ = random_batch(np.random.default_rng(2), "roberta", [7, 12, 3])
    y = np.array([0, 1, 1])

    def build(p):
        base = lf.AutoModelForSequenceClassification.from_pretrained(
            tmp_path / "ckpt", num_labels=2, hidden_dropout_prob=p, attention_probs_dropout_prob=p)
        return lf.get_peft_model(base, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=2, lora_alpha=4, lora_dropout=p))

    model, plain = build(0.1), build(0.0)
    model.eval()
    a = model(input_ids=ids, attention_mask=mask).logits
    np.testing.assert_array_equal(a, model(input_ids=ids, attention_mask=mask).logits)
    np.testing.assert_array_equal(a, plain.eval()(input_ids=ids, attention_mask=mask).logits)
    model.train()
    model.manual_seed(5)
    t1 = model(input_ids=ids, attention_mask=mask).logits
    t2 = model(input_ids=ids, attention_mask=mask).logits
    assert not np.allclose(t1, a) and not np.allclose(t1, t2)
    model.manual_seed(5)
    np.testing.assert_array_equal(model(input_ids=ids, attention_mask=mask).logits, t1)
    np.testing.assert_array_equal(model(input_ids=ids, attention_mask=mask).logits, t2)
    # the same step twice from the same seed: the same loss and gradients
    model.manual_seed(9)
    loss1, g1 = model.forward_backward(ids, mask, y)
    model.manual_seed(9)
    loss2, g2 = model.forward_backward(ids, mask, y)
    assert loss1 == loss2 and all(np.array_equal(g1[k], g2[k]) for k in g1)
    plain.train()  # every dropout at 0: training mode computes what eval computes
    np.testing.assert_array_equal(plain(input_ids=ids, attention_mask=mask).logits, a)
