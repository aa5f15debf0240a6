"""`python -m lorafast train`: help, bad arguments (clear errors before training), and a short run
on the real MiniLM weights whose adapter peft loads and whose test predictions peft reproduces."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lorafast.__main__ import main

from conftest import REPO, minilm_folder


def tweets(shared, name="train.csv"):
    return str(shared / "data" / "disaster_tweets" / name)


def test_help_documents_the_notebook_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for expected in ("--train_file", "--test_file", "--model_name_or_path", "--output_dir", "--lora_r",
                     "--learning_rate", "default: 0.0001", "default: 0.3", "default: 0.001", "default: 8",
                     "all-MiniLM-L6-v2"):
        assert expected in text, expected


@pytest.mark.parametrize("argv, message", [
    (["--train_file", "no/such.csv"], "--train_file no/such.csv: no such file"),
    (["--lora_r", "0"], "--lora_r/--lora-r: must be a positive integer, got 0"),
    (["--train_size", "1.5"], "must be a fraction in (0, 1), got 1.5"),
    (["--learning_rate", "fast"], "not a number: 'fast'"),
    (["--lr_scheduler_type", "polynomial"], "invalid choice: 'polynomial'"),
])
def test_bad_arguments(shared, tmp_path, capsys, argv, message):
    args = ["train", "--train_file", tweets(shared), "--output_dir", str(tmp_path)] + argv
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("id,tweet,target\n1,hello,1\n", "column(s) ['text'] not found; the file has ['id', 'tweet', 'target']"),
    ("id,text,target\n1,hello,1\n2,,0\n", "column 'text' has no text in data row 2 (value None)"),
    ("id,text,target\n1,hello,1\n2,world,2\n", "column 'target' has label 2 in data row 2, outside 0..1"),
    ("id,text,target\n1,hello,1\n2,world,\n", "column 'target' must hold integer class ids 0..1"),
    ("id,text,target\n", "no data rows"),
])
def test_bad_data_is_reported_before_training(tmp_path, capsys, content, message):
    path = tmp_path / "data.csv"
    path.write_text(content)
    assert main(["train", "--train_file", str(path), "--output_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"lorafast train: error: {path}: ") and message in err
    assert not (tmp_path / "out").exists()


def test_missing_model_names_where_it_looked(shared, tmp_path, capsys):
    missing = tmp_path / "no-model"
    assert main(["train", "--train_file", tweets(shared), "--output_dir", str(tmp_path / "out"),
                 "--model_name_or_path", str(missing)]) == 1
    assert f"model {str(missing)!r} not found" in capsys.readouterr().err


def test_short_run_writes_an_adapter_peft_loads(shared, tmp_path):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    sk = pytest.importorskip("sklearn.metrics")
    folder = minilm_folder()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lorafast", "train", "--train_file", tweets(shared), "--test_file",
           tweets(shared, "test.csv"), "--output_dir", str(out), "--max_train_samples", "24",
           "--max_eval_samples", "16", "--max_predict_samples", "16", "--num_train_epochs", "2",
           "--learning_rate", "1e-3", "--disable_tqdm"]
    # 1 thread: on a loaded machine, OpenMP threads spin-waiting against other jobs made this short run
    # take minutes instead of seconds (see README, Benchmarks); the results do not depend on it
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trainable params: 19,202 || all params: 22,733,188" in proc.stdout  # r=2 on query,value: peft's count
    assert "Validation Loss" in proc.stdout and "Accuracy" in proc.stdout  # the epoch table
    results = json.loads((out / "all_results.json").read_text())
    assert results["rows"] == {"train": 24, "val": 16, "test": 16}
    assert results["train"]["train_samples_per_second"] > 0
    for split, prefix in (("eval", "eval_"), ("predict", "test_")):
        for name in ("precision", "recall", "f1-score", "accuracy"):
            assert 0.0 <= results[split][prefix + name] <= 1.0
        assert np.isfinite(results[split][prefix + "loss"])
    # the class weights of the 24-row train split, by the reference notebook's formula
    import lorafast

    split = lorafast.load_dataset("csv", data_files=tweets(shared), split="train").train_test_split(
        train_size=0.8, seed=42)["train"].select(range(24))
    labels = np.asarray(split["target"])
    assert results["class_weights"] == [len(labels) / (2 * (labels == 0).sum()), len(labels) / (2 * (labels == 1).sum())]

    # peft loads the adapter onto the HF model and predicts what the CLI predicted
    base = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    model = peft.PeftModel.from_pretrained(base, str(out)).eval()
    test = lorafast.load_dataset("csv", data_files=tweets(shared, "test.csv"), split="train").select(range(16))
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    enc = tok(test["text"], padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**enc).logits.argmax(-1).numpy()
    written = np.loadtxt(out / "predict_results.txt", dtype=np.int64, skiprows=1)
    np.testing.assert_array_equal(written[:, 0], np.arange(16))
    np.testing.assert_array_equal(written[:, 1], predicted)
    assert results["predict"]["test_f1-score"] == pytest.approx(sk.f1_score(test["target"], predicted), abs=1e-12)


def test_none_text_in_the_notebooks_map_names_the_row():
    """The notebook tokenizes with data.map(batched=True): a missing text (a csv gap reads as None,
    as in datasets) is a clear error naming the item, as the CLI's check names the csv row."""
    import lorafast

    tok = lorafast.AutoTokenizer.from_pretrained(minilm_folder())
    data = lorafast.Dataset.from_dict({"text": ["a tweet", "another", None, "last"], "target": [0, 1, 0, 1]})
    with pytest.raises(ValueError, match=r"got list whose item 2 is None, not a str"):
        data.map(lambda e: tok(e["text"], truncation=True, max_length=512), batched=True)


TINY = {  # hub id: (shared tokenizer folder, transformers config class name, config)
    "tiny/roberta": ("roberta-large", "RobertaConfig", dict(
        vocab_size=50265, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)),
    "tiny/llama": ("meta-llama--Llama-2-7b-hf", "LlamaConfig", dict(
        vocab_size=32000, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=32, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=None)),
}


@pytest.mark.parametrize("hub_id", sorted(TINY))
def test_other_architectures_from_the_hub_cache(shared, tmp_path, monkeypatch, hub_id):
    """The notebook's other models by hub id from the Hugging Face cache, as tiny random
    checkpoints with the real tokenizers: RoBERTa (add_prefix_space, query/value) and Llama (pad =
    eos, r=16 / dropout 0.05 on q_proj/v_proj). peft loads the adapter and predicts the same."""
    import shutil

    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    import lorafast

    tokenizer_folder, config_class, config = TINY[hub_id]
    repo = tmp_path / "hub" / ("models--" + hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abc"
    shutil.copytree(shared / "models" / tokenizer_folder, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    torch.manual_seed(0)
    cfg = getattr(transformers, config_class)(num_labels=2, **config)
    transformers.AutoModelForSequenceClassification.from_config(cfg).save_pretrained(snapshot)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    out = tmp_path / "out"
    assert main(["train", "--train_file", tweets(shared), "--test_file", tweets(shared, "test.csv"), "--output_dir",
                 str(out), "--model_name_or_path", hub_id, "--max_train_samples", "16", "--max_eval_samples", "8",
                 "--max_predict_samples", "8", "--num_train_epochs", "1", "--max_length", "120",
                 "--learning_rate", "1e-2", "--disable_tqdm"]) == 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    decoder = config_class == "LlamaConfig"
    assert (adapter["r"], adapter["lora_dropout"], adapter["target_modules"]) == (
        (16, 0.05, ["q_proj", "v_proj"]) if decoder else (2, 0.1, ["query", "value"]))

    base = transformers.AutoModelForSequenceClassification.from_pretrained(snapshot, num_labels=2)
    model = peft.PeftModel.from_pretrained(base, str(out)).eval()
    test = lorafast.load_dataset("csv", data_files=tweets(shared, "test.csv"), split="train").select(range(8))
    if decoder:  # pad = eos; the tokenizers library on tokenizer.json (transformers converts the slow Llama
        # tokenizer for 18 s here)
        tokenizers = pytest.importorskip("tokenizers")
        base.config.pad_token_id = config["eos_token_id"]
        tok = tokenizers.Tokenizer.from_file(str(snapshot / "tokenizer.json"))
        tok.enable_truncation(120)
        tok.enable_padding(pad_id=config["eos_token_id"], pad_token="</s>")
        rows = tok.encode_batch(test["text"])
        enc = {"input_ids": torch.tensor([r.ids for r in rows]),
               "attention_mask": torch.tensor([r.attention_mask for r in rows])}
    else:
        tok = transformers.AutoTokenizer.from_pretrained(snapshot, add_prefix_space=True)
        enc = tok(test["text"], padding=True, truncation=True, max_length=120, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**enc).logits.argmax(-1).numpy()
    written = np.loadtxt(out / "predict_results.txt", dtype=np.int64, skiprows=1)
    np.testing.assert_array_equal(written[:, 1], predicted)
