"""LoRA as peft does it: parameter counting, default targets, adapter folders both ways,
trainable names and HF Trainer's no-decay groups."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

import lorafast as lf  # noqa: E402
from test_encoder import TINY, make_adapter, make_checkpoint, peft_key, random_batch  # noqa: E402

NOTEBOOK_LINE = "trainable params: 1,248,258 || all params: 356,610,052 || trainable%: 0.3500"


def test_roberta_large_trainable_parameters_line(shared, capsys):
    config = lf.AutoConfig.from_pretrained(shared / "models" / "roberta-large")
    model = lf.AutoModelForSequenceClassification.from_config(config, num_labels=2, materialize=False)
    pm = lf.get_peft_model(model, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=2, lora_alpha=16,
                                                lora_dropout=0.1, bias="none"))
    pm.print_trainable_parameters()
    assert capsys.readouterr().out.strip() == NOTEBOOK_LINE
    assert pm.get_nb_trainable_parameters() == (1_248_258, 356_610_052)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_parameter_counts_equal_peft_on_meta_device(model_type, capsys):
    cfg = dict(vocab_size=1000, hidden_size=96, num_hidden_layers=3, num_attention_heads=4, intermediate_size=200,
               max_position_embeddings=130, num_labels=3)
    hf_cls = {"bert": transformers.BertForSequenceClassification, "roberta": transformers.RobertaForSequenceClassification}
    hf_cfg_cls = {"bert": transformers.BertConfig, "roberta": transformers.RobertaConfig}
    with torch.device("meta"):
        hf = hf_cls[model_type](hf_cfg_cls[model_type](**cfg))
    lora = dict(task_type="SEQ_CLS", r=3, lora_alpha=6, target_modules=["query", "key", "intermediate.dense"])
    ref = peft.get_peft_model(hf, peft.LoraConfig(**lora))
    ref.print_trainable_parameters()
    expected = capsys.readouterr().out.strip()
    ours = lf.get_peft_model(
        lf.AutoModelForSequenceClassification.from_config(lf.AutoConfig.for_model(model_type, **cfg), materialize=False),
        lf.LoraConfig(**lora),
    )
    ours.print_trainable_parameters()
    assert capsys.readouterr().out.strip() == expected
    names = {peft_key(n) for n, p in ref.named_parameters() if p.requires_grad}
    assert set(ours.trainable_state_dict()) == names


def test_no_decay_names_equal_hf_trainer():
    cfg = lf.AutoConfig.for_model("roberta", vocab_size=50, hidden_size=24, num_hidden_layers=2,
                                  num_attention_heads=3, intermediate_size=40, max_position_embeddings=40)
    ours = lf.get_peft_model(lf.AutoModelForSequenceClassification.from_config(cfg), lf.LoraConfig(r=2))
    hf = transformers.RobertaForSequenceClassification(transformers.RobertaConfig(**{
        k: getattr(cfg, k) for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                     "intermediate_size", "max_position_embeddings")}))
    ref = peft.get_peft_model(hf, peft.LoraConfig(task_type="SEQ_CLS", r=2))
    decay = set(transformers.Trainer.get_decay_parameter_names(None, ref))
    trainable = {n for n, p in ref.named_parameters() if p.requires_grad}
    expected = sorted(peft_key(n) for n in trainable - decay)
    assert sorted(ours.no_decay_parameter_names()) == expected
    assert expected  # the head biases


def test_lora_init_as_peft():
    cfg = lf.AutoConfig.for_model("bert", vocab_size=50, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=40, max_position_embeddings=40)
    pm = lf.get_peft_model(lf.AutoModelForSequenceClassification.from_config(cfg), lf.LoraConfig(r=16))
    sd = pm.trainable_state_dict()
    a = sd["base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"]
    b = sd["base_model.model.bert.encoder.layer.0.attention.self.query.lora_B.weight"]
    assert a.shape == (16, 64) and b.shape == (64, 16)
    assert (b == 0).all()
    bound = 1 / np.sqrt(64)  # kaiming_uniform_(a=sqrt(5))
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.9 * bound
    assert abs(a.std() - bound / np.sqrt(3)) < 0.1 * bound
    head = sd["base_model.model.classifier.weight"]
    assert abs(head.std() - cfg.initializer_range) < 0.2 * cfg.initializer_range
    assert (sd["base_model.model.classifier.bias"] == 0).all()


@pytest.mark.parametrize("use_rslora", [False, True])
def test_adapter_round_trip_with_peft(tmp_path, use_rslora):
    model_type, *_rest = TINY["roberta-h24-2l-3h"]
    hf = make_checkpoint(tmp_path / "ckpt", *TINY["roberta-h24-2l-3h"])
    ids, mask, _ = random_batch(np.random.default_rng(0), model_type, [6, 15, 3])
    # peft -> lorafast
    pm = make_adapter(tmp_path / "peft_adapter", hf, r=3, alpha=5, use_rslora=use_rslora)
    with torch.no_grad():
        ref = pm.eval()(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    base = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=2)
    ours = lf.PeftModel.from_pretrained(base, tmp_path / "peft_adapter")
    np.testing.assert_allclose(ours(input_ids=ids, attention_mask=mask).logits, ref, rtol=1e-5, atol=1e-5)
    assert ours.get_nb_trainable_parameters()[0] == 0  # is_trainable=False, as peft
    with pytest.raises(RuntimeError, match="is_trainable"):
        ours.forward_backward(ids, mask, [0, 1, 0])
    # lorafast -> peft: change the adapter in lorafast, save, load with peft
    base = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt", num_labels=2)
    mine = lf.PeftModel.from_pretrained(base, tmp_path / "peft_adapter", is_trainable=True)
    sd = mine.trainable_state_dict()
    rng = np.random.default_rng(7)
    mine.load_trainable_state_dict({k: v + 0.05 * rng.standard_normal(v.shape).astype(np.float32) for k, v in sd.items()})
    mine.eval()
    logits = mine(input_ids=ids, attention_mask=mask).logits
    mine.save_pretrained(tmp_path / "ours_adapter")
    saved = json.loads((tmp_path / "ours_adapter" / "adapter_config.json").read_text())
    assert saved["use_rslora"] is use_rslora and saved["r"] == 3 and saved["task_type"] == "SEQ_CLS"
    hf2 = transformers.RobertaForSequenceClassification.from_pretrained(tmp_path / "ckpt").eval()
    loaded = peft.PeftModel.from_pretrained(hf2, tmp_path / "ours_adapter").eval()
    with torch.no_grad():
        theirs = loaded(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    np.testing.assert_allclose(logits, theirs, rtol=1e-5, atol=1e-5)
    assert not np.allclose(logits, ref, atol=1e-4)  # the change went through


def test_target_module_errors():
    cfg = lf.AutoConfig.for_model("bert", vocab_size=50, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=40, max_position_embeddings=40)
    make = lambda: lf.AutoModelForSequenceClassification.from_config(cfg)  # noqa: E731
    with pytest.raises(ValueError, match="not found"):
        lf.get_peft_model(make(), lf.LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(NotImplementedError, match="pooler"):
        lf.get_peft_model(make(), lf.LoraConfig(target_modules=["dense"]))
    with pytest.raises(NotImplementedError, match="bias"):
        lf.LoraConfig(bias="all")
    with pytest.raises(ValueError, match="r must be"):
        lf.LoraConfig(r=0)


def test_unsupported_model_type_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="supported model types: .*bert.*roberta"):
        lf.AutoConfig.from_pretrained(tmp_path)
