"""lorafast and the installed peft on the same models: adapters peft writes load (modules_to_save
entries naming no module ignored as peft ignores them), adapters lorafast writes are peft's
format, target_modules="all-linear" / regular expressions / exclude_modules select what peft
selects, merge_and_unload() and unload() give peft's models, base_model_name_or_path and
AutoPeftModelForSequenceClassification as peft."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

import lorafast as lf  # noqa: E402
from conftest import minilm_folder  # noqa: E402
from test_decoder import batch as decoder_batch  # noqa: E402
from test_decoder import hf_config as decoder_config  # noqa: E402
from test_encoder import TINY, make_checkpoint, peft_key, random_batch, randomize_adapter  # noqa: E402

ROBERTA = TINY["roberta-h24-2l-3h"]
BERT = TINY["bert-h36-3l-4h"]
SMALL = dict(vocab_size=60, hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=40,
             max_position_embeddings=40, num_labels=3)


def hf_logits(model, ids, mask):
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()


def peft_adapter(folder, hf_model, head_noise=0.1, **lora):
    """A peft adapter saved by the installed peft: random LoRA A and B, and a trained head
    (the modules_to_save copy moved away from the base model's head)."""
    lora.setdefault("lora_dropout", 0.0)
    pm = peft.get_peft_model(hf_model, peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, **lora))
    randomize_adapter(pm, seed=3)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "modules_to_save" in name:
                p.add_(head_noise * torch.randn(p.shape, generator=g))
    pm.save_pretrained(folder)
    return pm


def trainable_names(pm):
    return {peft_key(n) for n, p in pm.named_parameters() if p.requires_grad}


def meta_pair(model_type, **lora):
    """(peft model on the meta device, lorafast model without weights) of the same small config."""
    config = (decoder_config(model_type, **{k: v for k, v in SMALL.items() if k != "max_position_embeddings"})
              if model_type in ("llama", "mistral") else transformers.AutoConfig.for_model(model_type, **SMALL))
    with torch.device("meta"):
        hf = transformers.AutoModelForSequenceClassification.from_config(config)
    ref = peft.get_peft_model(hf, peft.LoraConfig(task_type="SEQ_CLS", r=2, **lora))
    ours_config = lf.AutoConfig.for_model(model_type, **{k: v for k, v in config.to_dict().items() if k != "model_type"})
    ours = lf.AutoModelForSequenceClassification.from_config(ours_config, materialize=False)
    return ref, ours


# ---------------------------------------------------------------- adapters of peft 0.22


def test_peft_writes_pre_classifier_and_lorafast_loads_it(tmp_path):
    """peft 0.22 adds 'pre_classifier' (a DistilBERT head name) to every SEQ_CLS adapter, and
    ignores, as any name of no module, 'no_such_module' here."""
    hf = make_checkpoint(tmp_path / "ckpt", *ROBERTA)
    pm = peft_adapter(tmp_path / "adapter", hf, r=3, lora_alpha=5, modules_to_save=["no_such_module"])
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert {"pre_classifier", "no_such_module"} <= set(saved["modules_to_save"])
    ids, mask, _ = random_batch(np.random.default_rng(0), "roberta", [6, 15, 3])
    base = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=2)
    ours = lf.PeftModel.from_pretrained(base, tmp_path / "adapter")
    np.testing.assert_allclose(ours(input_ids=ids, attention_mask=mask).logits, hf_logits(pm, ids, mask),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type, entry", [("bert", "pooler"), ("bert", "LayerNorm"), ("roberta", "output.dense"),
                                               ("llama", "norm")])
def test_modules_to_save_lorafast_cannot_train_is_an_error(model_type, entry):
    ref, ours = meta_pair(model_type, modules_to_save=[entry])
    trained = {n for n in trainable_names(ref) if "lora_" not in n}
    head = {n for n in trained if n.startswith(("base_model.model.classifier", "base_model.model.score"))}
    assert trained - head, f"peft trains {entry!r} beyond the head"  # the oracle: the entry names a module
    with pytest.raises(NotImplementedError, match="only the classification head"):
        lf.get_peft_model(ours, lf.LoraConfig(r=2, modules_to_save=[entry]))


def test_adapter_config_is_what_peft_writes(tmp_path):
    hf = make_checkpoint(tmp_path / "ckpt", *ROBERTA)
    base_path = str(tmp_path / "ckpt")
    lora = dict(r=3, lora_alpha=5, lora_dropout=0.1, target_modules=["query", "value"], use_rslora=True)
    ref = peft.get_peft_model(transformers.AutoModelForSequenceClassification.from_pretrained(base_path),
                              peft.LoraConfig(task_type="SEQ_CLS", **lora))
    ref.save_pretrained(tmp_path / "theirs")
    ours = lf.get_peft_model(lf.AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=2),
                             lf.LoraConfig(task_type="SEQ_CLS", **lora))
    ours.save_pretrained(tmp_path / "ours")
    theirs = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    mine = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    assert sorted(mine.pop("target_modules")) == sorted(theirs.pop("target_modules"))
    assert mine == theirs
    assert theirs["peft_version"] == peft.__version__ and theirs["base_model_name_or_path"] == base_path
    assert lf.LoraConfig.from_dict(theirs).to_dict()["modules_to_save"] == theirs["modules_to_save"]
    del hf


# ---------------------------------------------------------------- which modules take LoRA


@pytest.mark.parametrize("model_type", ["roberta", "llama", "mistral"])
def test_all_linear_selects_what_peft_selects(model_type, capsys):
    ref, ours = meta_pair(model_type, target_modules="all-linear")
    ref.print_trainable_parameters()
    expected = capsys.readouterr().out.strip()
    config = lf.LoraConfig(r=2, target_modules="all-linear")
    pm = lf.get_peft_model(ours, config)
    pm.print_trainable_parameters()
    assert capsys.readouterr().out.strip() == expected
    assert set(pm.trainable_state_dict()) == trainable_names(ref)
    assert sorted(config.target_modules) == sorted(ref.peft_config["default"].target_modules)


def test_all_linear_on_bert_takes_the_pooler_which_lorafast_cannot():
    ref, ours = meta_pair("bert", target_modules="all-linear")
    assert "base_model.model.bert.pooler.dense.lora_A.weight" in trainable_names(ref)
    with pytest.raises(NotImplementedError, match="bert.pooler.dense"):
        lf.get_peft_model(ours, lf.LoraConfig(r=2, target_modules="all-linear"))


@pytest.mark.parametrize("model_type, lora", [
    ("roberta", dict(target_modules=r".*\.(query|value)")),
    ("roberta", dict(target_modules=r".*\.(intermediate|output)\.dense")),  # classifier.dense: the head, skipped
    ("roberta", dict(target_modules=["dense", "query"], exclude_modules=["attention.output.dense"])),
    ("llama", dict(target_modules=r"model\.layers\.\d+\.mlp\..*_proj", exclude_modules=r".*down_proj")),
])
def test_pattern_and_exclude_select_what_peft_selects(model_type, lora):
    ref, ours = meta_pair(model_type, **lora)
    pm = lf.get_peft_model(ours, lf.LoraConfig(r=2, **lora))
    assert set(pm.trainable_state_dict()) == trainable_names(ref)
    assert pm.get_nb_trainable_parameters() == ref.get_nb_trainable_parameters()


def test_targets_lorafast_cannot_take():
    ref, ours = meta_pair("roberta", target_modules=r".*layer\.0\.attention\.self\.query")
    assert len([n for n in trainable_names(ref) if "lora_A" in n]) == 1  # peft: one layer only
    with pytest.raises(NotImplementedError, match=r"layers \[0\] only"):
        lf.get_peft_model(ours, lf.LoraConfig(r=2, target_modules=r".*layer\.0\.attention\.self\.query"))
    _, ours = meta_pair("roberta")
    with pytest.raises(ValueError, match="not found"):
        lf.get_peft_model(ours, lf.LoraConfig(r=2, target_modules=r"query"))  # fullmatch: no module is 'query'


# ---------------------------------------------------------------- merge_and_unload, unload


@pytest.mark.parametrize("kind", ["roberta", "llama"])
def test_merge_and_unload_and_unload_as_peft(tmp_path, kind):
    if kind == "roberta":
        make_checkpoint(tmp_path / "ckpt", *ROBERTA)
        ids, mask, _ = random_batch(np.random.default_rng(0), "roberta", [6, 15, 3])
        lora, labels = dict(r=3, lora_alpha=5, target_modules=["query", "value", "intermediate.dense"]), 2
    else:
        torch.manual_seed(0)
        transformers.AutoModelForSequenceClassification.from_config(decoder_config("llama")).save_pretrained(
            tmp_path / "ckpt")
        ids, mask, _ = decoder_batch("right")
        lora, labels = dict(r=4, lora_alpha=8, target_modules="all-linear"), 3
    load_hf = lambda: transformers.AutoModelForSequenceClassification.from_pretrained(  # noqa: E731
        tmp_path / "ckpt", attn_implementation="eager").eval()
    peft_adapter(tmp_path / "adapter", load_hf(), **lora)
    expected = {}
    for how in ("merge_and_unload", "unload"):
        ref = getattr(peft.PeftModel.from_pretrained(load_hf(), tmp_path / "adapter"), how)()
        assert isinstance(ref, transformers.PreTrainedModel)
        expected[how] = (hf_logits(ref, ids, mask), sum(p.numel() for p in ref.parameters()))
    adapted = hf_logits(peft.PeftModel.from_pretrained(load_hf(), tmp_path / "adapter"), ids, mask)
    np.testing.assert_allclose(expected["merge_and_unload"][0], adapted, rtol=1e-4, atol=1e-5)
    assert not np.allclose(expected["unload"][0], adapted, atol=1e-3)  # the two differ: the test can tell them apart

    for how in ("merge_and_unload", "unload"):
        base = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=labels)
        pm = lf.PeftModel.from_pretrained(base, tmp_path / "adapter")
        model = getattr(pm, how)()
        assert model is base  # peft returns the model it was given, without adapters
        logits, n_params = expected[how]
        np.testing.assert_allclose(model(input_ids=ids, attention_mask=mask).logits, logits, rtol=1e-5, atol=1e-5)
        assert model.get_nb_trainable_parameters()[1] == n_params
        assert not any("lora_" in name for name in model.trainable_state_dict())
        with pytest.raises(ValueError, match="already merged or unloaded"):
            pm.merge_and_unload()
        # the model takes a new adapter, as peft's unloaded model does
        lf.get_peft_model(model, lf.LoraConfig(r=2))


def test_merge_into_bfloat16_weights_as_peft(tmp_path):
    """Weights kept in bf16: the merged weight is peft's merge of the same bf16 weight (within
    one bf16 rounding: peft rounds the delta to bf16 before adding, lorafast rounds the sum)."""
    torch.manual_seed(0)
    transformers.AutoModelForSequenceClassification.from_config(decoder_config("llama")).save_pretrained(
        tmp_path / "ckpt")
    load_hf = lambda dtype: transformers.AutoModelForSequenceClassification.from_pretrained(  # noqa: E731
        tmp_path / "ckpt", dtype=dtype)
    peft_adapter(tmp_path / "adapter", load_hf(torch.float32), r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    ref = peft.PeftModel.from_pretrained(load_hf(torch.bfloat16), tmp_path / "adapter").merge_and_unload()
    base = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=3, dtype="bfloat16")
    lf.PeftModel.from_pretrained(base, tmp_path / "adapter").merge_and_unload()
    names = [name for name, _, _ in base._c.frozen_specs()]
    for name in ("model.layers.1.self_attn.q_proj.weight", "model.layers.0.self_attn.v_proj.weight"):
        array, dtype = base._frozen_arrays[names.index(name)]
        assert dtype == "bfloat16"
        expected = ref.get_parameter(name).detach().float().numpy()
        np.testing.assert_allclose(lf.modeling_weights.to_dtype(array, dtype, "float32"), expected, rtol=2 ** -7)
        assert not np.array_equal(expected, load_hf(torch.bfloat16).get_parameter(name).detach().float().numpy())


# ---------------------------------------------------------------- base model name, AutoPeftModel


def test_auto_peft_model_both_ways(tmp_path):
    make_checkpoint(tmp_path / "ckpt", *BERT)
    ids, mask, _ = random_batch(np.random.default_rng(2), "bert", [5, 11])
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "ckpt"))
    pm = peft_adapter(tmp_path / "theirs", hf, r=2, lora_alpha=4)
    assert json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tmp_path / "ckpt")
    ours = lf.AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "theirs")
    np.testing.assert_allclose(ours(input_ids=ids, attention_mask=mask).logits, hf_logits(pm, ids, mask),
                               rtol=1e-5, atol=1e-5)
    # lorafast's adapter through peft's AutoPeftModelForSequenceClassification
    trainable = lf.AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "theirs", is_trainable=True)
    sd = trainable.trainable_state_dict()
    trainable.load_trainable_state_dict({k: v * 1.5 for k, v in sd.items()})
    trainable.save_pretrained(tmp_path / "ours")
    theirs = peft.AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "ours", num_labels=BERT[-1])
    np.testing.assert_allclose(trainable.eval()(input_ids=ids, attention_mask=mask).logits,
                               hf_logits(theirs, ids, mask), rtol=1e-5, atol=1e-5)


def test_minilm_adapter_names_the_hub_id_and_loads_without_the_cache(tmp_path, monkeypatch):
    """The package's files stand for sentence-transformers/all-MiniLM-L6-v2: an adapter trained on
    them names that id, and the id resolves to them on a machine whose Hugging Face cache is empty."""
    folder = minilm_folder()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    pm = lf.get_peft_model(lf.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2),
                           lf.LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=16))
    pm.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    loaded = lf.AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "adapter")
    ids = np.array([[101, 7592, 2088, 102]])
    np.testing.assert_array_equal(loaded(input_ids=ids).logits, pm.eval()(input_ids=ids).logits)
