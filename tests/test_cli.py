"""`python -m lorafast train`: help, bad arguments (clear errors before training), and a short run
on the real MiniLM weights whose adapter peft loads and whose test predictions peft reproduces;
the shipped data used when no file is given, the best epoch named, the options passed through."""

import csv
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lorafast.__main__ import main

from conftest import REPO, minilm_folder


def tweets(shared, name="train.csv"):
    return str(shared / "data" / "disaster_tweets" / name)


QUICK = ["--max_train_samples", "16", "--max_eval_samples", "8", "--max_predict_samples", "8",
         "--num_train_epochs", "1", "--disable_tqdm"]


def csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def predictions(folder):
    """predict_results.txt: (header, first column, predictions)."""
    lines = (folder / "predict_results.txt").read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    return lines[0], [r[0] for r in rows], [int(r[1]) for r in rows]


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
    header, ids, written = predictions(out)
    assert header == "id\tprediction" and ids == [str(i) for i in test["id"]]  # the test file's id column
    np.testing.assert_array_equal(written, predicted)
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


def test_shipped_data_is_the_shared_disaster_tweets(shared):
    """The package's copy of the data, byte for byte, with its SOURCE.md."""
    from lorafast import workflow

    for name, path in (("train.csv", workflow.DEFAULT_TRAIN_FILE), ("test.csv", workflow.DEFAULT_TEST_FILE)):
        with open(path, "rb") as ours, open(tweets(shared, name), "rb") as theirs:
            assert hashlib.sha256(ours.read()).digest() == hashlib.sha256(theirs.read()).digest(), name
    source = (pathlib.Path(workflow.DEFAULT_TRAIN_FILE).parent / "SOURCE.md").read_text()
    assert "MichaelSzczepaniak/llmamd" in source and "socialmedia-disaster-tweets-DFE.csv" in source


def test_no_data_arguments_train_on_the_shipped_tweets(shared, tmp_path, capsys):
    """No --train_file / --test_file: the disaster tweets, split as datasets splits them (the class
    weights of the first 16 train rows by the notebook's formula), test.csv predicted with its ids."""
    minilm_folder()
    out = tmp_path / "out"
    assert main(["train", "--output_dir", str(out)] + QUICK) == 0
    results = json.loads((out / "all_results.json").read_text())
    assert results["rows"] == {"train": 16, "val": 8, "test": 8}
    import lorafast

    split = lorafast.load_dataset("csv", data_files=tweets(shared), split="train").train_test_split(
        train_size=0.8, seed=42)["train"].select(range(16))
    labels = np.asarray(split["target"])
    assert results["class_weights"] == [16 / (2 * (labels == 0).sum()), 16 / (2 * (labels == 1).sum())]
    header, ids, written = predictions(out)
    assert header == "id\tprediction"
    assert ids == [row["id"] for row in csv_rows(tweets(shared, "test.csv"))[:8]]
    assert len(written) == 8 and set(written) <= {0, 1}
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert "***** train metrics *****" in capsys.readouterr().out  # the train summary


def test_a_test_file_without_id_column_is_indexed(tmp_path):
    minilm_folder()
    texts = ["fire in the hills", "lovely sunny day", "flood warning downtown", "my cat sleeps", "earthquake hit",
             "good coffee", "storm damage", "new shoes", "evacuate now", "nice song"]
    (tmp_path / "train.csv").write_text("text,target\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(texts)))
    (tmp_path / "test.csv").write_text("text\nsmoke everywhere\nhello there\nbridge collapsed\n")
    out = tmp_path / "out"
    assert main(["train", "--train_file", str(tmp_path / "train.csv"), "--test_file", str(tmp_path / "test.csv"),
                 "--output_dir", str(out), "--num_train_epochs", "1", "--disable_tqdm"]) == 0
    header, index, written = predictions(out)
    assert header == "index\tprediction" and index == ["0", "1", "2"] and len(written) == 3


def test_the_restored_best_epoch_is_named(shared, tmp_path, capsys):
    """The epoch whose validation loss was lowest is named, its checkpoint restored: the final
    evaluation gives that epoch's loss (the final metrics' "epoch" is the last one, as in HF)."""
    minilm_folder()
    out = tmp_path / "out"
    assert main(["train", "--output_dir", str(out), "--max_train_samples", "24", "--max_eval_samples", "16",
                 "--max_predict_samples", "8", "--num_train_epochs", "3", "--learning_rate", "3e-3",
                 "--disable_tqdm"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "all_results.json").read_text())
    history = results["log_history"]
    end = next(i for i, e in enumerate(history) if "train_runtime" in e)
    evaluations = [e for e in history[:end] if "eval_loss" in e]  # those of training, not the final one
    assert [e["epoch"] for e in evaluations] == [1.0, 2.0, 3.0]
    best = min(evaluations, key=lambda e: e["eval_loss"])
    match = re.search(r"best model: epoch (\d+) \(step (\d+), eval_loss ([0-9.]+)\), its adapter restored from (\S+)",
                      printed)
    assert match, printed
    assert (int(match[1]), int(match[2])) == (best["epoch"], best["step"])
    assert match[4] == str(out / f"checkpoint-{best['step']}")
    assert results["best"]["epoch"] == best["epoch"] and results["best"]["value"] == best["eval_loss"]
    assert results["eval"]["eval_loss"] == pytest.approx(best["eval_loss"], rel=1e-6)


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"lorafast {version('lorafast')}"


@pytest.mark.parametrize("argv, message", [
    (["--bf16", "--fp16"], "argument --fp16: not allowed with argument --bf16"),
    (["--resume_from_checkpoint", "no/such/checkpoint-3"], "--resume_from_checkpoint no/such/checkpoint-3: no such "
                                                           "folder"),
    (["--num_labels", "0"], "--num_labels/--num-labels: must be a positive integer, got 0"),
    (["--save_total_limit", "x"], "not an integer: 'x'"),
])
def test_bad_new_options(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(["train", "--output_dir", str(tmp_path)] + argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_options_reach_the_training_arguments(tmp_path, monkeypatch):
    """--bf16, --fp16, --logging_steps, --save_total_limit, --num_labels and --resume_from_checkpoint
    are handed on as TrainingArguments / train() take them."""
    from lorafast import workflow

    seen = []
    monkeypatch.setattr(workflow, "run", lambda *a, **k: seen.append((a, k)) or {})
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    assert main(["train", "--output_dir", str(tmp_path), "--bf16", "--logging_steps", "7", "--save_total_limit", "2",
                 "--num_labels", "3", "--resume_from_checkpoint", str(checkpoint)]) == 0
    assert main(["train", "--output_dir", str(tmp_path), "--fp16", "--resume_from_checkpoint", "last"]) == 0
    (_, first), (_, second) = seen
    assert {k: first["training"][k] for k in ("bf16", "fp16", "logging_steps", "save_total_limit")} == dict(
        bf16=True, fp16=False, logging_steps=7, save_total_limit=2)
    assert (first["num_labels"], first["resume_from_checkpoint"]) == (3, str(checkpoint))
    assert (second["training"]["fp16"], second["resume_from_checkpoint"]) == (True, True)


def test_resumed_run_ends_as_the_uninterrupted_one(tmp_path):
    """--resume_from_checkpoint last: a run continued from its epoch-1 checkpoint writes the same
    adapter as the run that was never stopped; --save_total_limit 1 keeps the best and the last;
    --logging_steps sets where the loss is logged."""
    minilm_folder()
    from lorafast.safetensors import load_file

    args = ["--max_train_samples", "24", "--max_eval_samples", "8", "--num_train_epochs", "2",
            "--learning_rate", "3e-3", "--logging_steps", "2", "--disable_tqdm"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert main(["train", "--output_dir", str(whole)] + args) == 0
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-3", resumed / "checkpoint-3")
    assert main(["train", "--output_dir", str(resumed), "--resume_from_checkpoint", "last",
                 "--save_total_limit", "1"] + args) == 0
    a, b = load_file(str(whole / "adapter_model.safetensors")), load_file(str(resumed / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    history = json.loads((whole / "all_results.json").read_text())["log_history"]
    assert [e["step"] for e in history if "loss" in e] == [2, 4, 6]
    best = json.loads((resumed / "all_results.json").read_text())["best"]["step"]
    assert sorted(p.name for p in resumed.glob("checkpoint-*")) == sorted({f"checkpoint-{best}", "checkpoint-6"})


def test_num_labels_three_classes(tmp_path):
    """--num_labels 3: labels 0..2 train a 3-way head (peft's layout: modules_to_save.default) with
    the notebook's class weights over three classes."""
    minilm_folder()
    from lorafast.safetensors import load_file

    texts = [f"tweet number {i} about {w}" for i, w in enumerate(["fire", "sun", "rain"] * 10)]
    (tmp_path / "train.csv").write_text("text,target\n" + "".join(f"{t},{i % 3}\n" for i, t in enumerate(texts)))
    out = tmp_path / "out"
    assert main(["train", "--train_file", str(tmp_path / "train.csv"), "--output_dir", str(out), "--num_labels", "3",
                 "--num_train_epochs", "1", "--disable_tqdm"]) == 0
    heads = {k: v.shape for k, v in load_file(str(out / "adapter_model.safetensors")).items() if "classifier" in k}
    assert heads and all(shape[0] == 3 for shape in heads.values()), heads
    import lorafast

    split = lorafast.load_dataset("csv", data_files=str(tmp_path / "train.csv"), split="train").train_test_split(
        train_size=0.8, seed=42)["train"]
    counts = np.bincount(split["target"], minlength=3)
    results = json.loads((out / "all_results.json").read_text())
    assert results["class_weights"] == (len(split) / (3 * counts)).tolist()


def test_a_diverged_run_is_an_error_naming_the_step_and_the_last_finite_checkpoint(tmp_path, capsys):
    """learning_rate 1e4: the loss turns NaN; the CLI exits non-zero, says at which step and which checkpoint
    is the last finite one, writes no final adapter, and its all_results.json stays strict JSON."""
    minilm_folder()
    texts = ["fire in the hills", "lovely sunny day", "flood warning downtown", "my cat sleeps", "earthquake hit",
             "good coffee", "storm damage", "new shoes", "evacuate now", "nice song"] * 2
    (tmp_path / "train.csv").write_text("text,target\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(texts)))
    out = tmp_path / "out"
    with pytest.warns(RuntimeWarning, match=r"step \d+: the training loss is .*training has diverged"):
        code = main(["train", "--train_file", str(tmp_path / "train.csv"), "--output_dir", str(out),
                     "--num_train_epochs", "4", "--learning_rate", "1e4", "--per_device_train_batch_size", "4",
                     "--disable_tqdm"])
    err = capsys.readouterr().err
    assert code == 1
    match = re.search(r"training diverged: the training loss or gradient norm was first inf/NaN at step (\d+); "
                      r"the final adapter holds inf/NaN values and was not written \((.*)\)", err)
    assert match, err
    assert not (out / "adapter_model.safetensors").exists()
    from lorafast.safetensors import load_file

    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert checkpoints
    finite = [c for c in checkpoints
              if all(np.isfinite(a).all() for a in load_file(c / "adapter_model.safetensors").values())]
    assert match.group(2).startswith(f"the last checkpoint with a finite adapter is {finite[-1]};" if finite else
                                     "no checkpoint holds a finite adapter;")
    for checkpoint in checkpoints:  # strict JSON everywhere it wrote
        json.loads((checkpoint / "trainer_state.json").read_text(), parse_constant=pytest.fail)
