"""Issue 17, points 3, 4, 6 and 7: bad files, arguments and values named in their errors; silent
coercions refused; non-finite values refused at load; one run per output_dir; strict JSON metrics and
a diverging run that says so (one warning, transformers' logging_nan_inf_filter)."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import lorafast as lf
from lorafast.modeling_weights import read_safetensors, write_safetensors
from test_trainer import tiny_roberta, token_rows

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = lf.build_info()["openmp_threads"]
    lf._C.set_num_threads(1)
    yield
    lf._C.set_num_threads(threads)


def args(out, **overrides):
    return lf.TrainingArguments(**{"output_dir": str(out), "disable_tqdm": True, "save_strategy": "no",
                                   "per_device_train_batch_size": 4, "max_steps": 2, "logging_steps": 1,
                                   "report_to": "none", **overrides})


def rows(n=8, seed=5):
    return token_rows(n, 97, seed=seed, bos=0)


# ---- config.json: wrong types and non-finite values, the file and key named ----------------------

def config_folder(tmp_path, model_type, **changes):
    sizes = dict(vocab_size=97, hidden_size=24, num_hidden_layers=1, num_attention_heads=3, intermediate_size=40)
    folder = tmp_path / model_type
    lf.AutoConfig.for_model(model_type, **sizes).save_pretrained(folder)
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))  # a float nan / inf as NaN / Infinity, which Python's json reads
    return folder, path


@pytest.mark.parametrize("model_type, key, value, expected", [
    ("bert", "hidden_size", "384", r"hidden_size must be an integer >= 1, got '384' \(str\)"),
    ("roberta", "num_attention_heads", 0, r"num_attention_heads must be an integer >= 1, got 0"),
    ("bert", "num_hidden_layers", [2], r"num_hidden_layers must be an integer >= 1, got \[2\] \(list\)"),
    ("llama", "num_attention_heads", 0, r"num_attention_heads must be an integer >= 1, got 0"),
    ("llama", "hidden_size", 32.5, r"hidden_size must be an integer >= 1, got 32.5"),
    ("bert", "hidden_dropout_prob", "0.1", r"hidden_dropout_prob must be a number in \[0, 1\], got '0.1'"),
    ("bert", "layer_norm_eps", float("nan"), r"layer_norm_eps must be a finite number > 0, got nan"),
    ("roberta", "layer_norm_eps", -1, r"layer_norm_eps must be a finite number > 0, got -1"),
    ("llama", "rms_norm_eps", float("nan"), r"rms_norm_eps must be a finite number > 0, got nan"),
    ("mistral", "rms_norm_eps", 0, r"rms_norm_eps must be a finite number > 0, got 0"),
    ("llama", "rope_theta", float("inf"), r"rope_theta must be a finite number > 0 or null, got inf"),
])
def test_bad_config_values_name_the_file_and_key(tmp_path, model_type, key, value, expected):
    folder, path = config_folder(tmp_path, model_type, **{key: value})
    with pytest.raises(ValueError, match=f"{path}: {expected}"):
        lf.AutoConfig.from_pretrained(folder)
    with pytest.raises(ValueError, match=expected):
        lf.AutoModelForSequenceClassification.from_pretrained(folder)


def test_bad_config_values_set_in_code_are_refused_when_the_model_is_built():
    with pytest.raises(ValueError, match="BertConfig: num_attention_heads must be an integer >= 1, got 0"):
        lf.AutoConfig.for_model("bert", num_attention_heads=0)
    config = lf.AutoConfig.for_model("llama", hidden_size=32, num_attention_heads=4, intermediate_size=40,
                                     num_hidden_layers=1, vocab_size=50)
    config.rms_norm_eps = float("nan")
    with pytest.raises(ValueError, match="LlamaConfig: rms_norm_eps must be a finite number > 0, got nan"):
        lf.AutoModelForSequenceClassification.from_config(config)


def test_config_json_that_is_not_an_object(tmp_path):
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=f"{tmp_path / 'config.json'}: expected a JSON object"):
        lf.AutoConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": 2')
    with pytest.raises(ValueError, match=f"{tmp_path / 'config.json'}: not valid JSON"):
        lf.AutoConfig.from_pretrained(tmp_path)


# ---- tokenizer.json without "model" ---------------------------------------------------------------

@pytest.mark.parametrize("content, expected", [
    ({"version": "1.0", "added_tokens": []}, r'no "model" object'),
    ({"version": "1.0", "model": {"type": "BPE", "merges": []}}, r'model has no "vocab"'),
    ({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": 1}]},
     r'added_tokens\[0\] must be an object with a string "content"'),
])
def test_tokenizer_json_without_its_model_names_the_file_and_key(tmp_path, content, expected):
    (tmp_path / "tokenizer.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=f"{tmp_path / 'tokenizer.json'}: {expected}"):
        lf.AutoTokenizer.from_pretrained(tmp_path)


# ---- CSV: what datasets' csv builder reads, and a decoding error named ----------------------------

def test_csv_with_a_field_over_the_csv_module_limit(tmp_path):
    path = tmp_path / "big.csv"
    big = "word " * 220_000  # 1.1 MB, over csv.field_size_limit()'s 131072
    path.write_text(f'text,target\n"{big}",1\nshort,0\n', encoding="utf-8")
    limit = __import__("csv").field_size_limit()
    ds = lf.load_dataset("csv", data_files=str(path), split="train")
    assert ds["text"] == [big, "short"] and ds["target"] == [1, 0]
    assert __import__("csv").field_size_limit() == limit  # the process-wide limit is left as it was


def test_csv_with_a_utf8_byte_order_mark(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext,target\nhello,1\n")
    for kwargs in ({}, {"encoding": "utf-8"}, {"encoding": "UTF8"}):
        ds = lf.load_dataset("csv", data_files=str(path), split="train", **kwargs)
        assert ds.column_names == ["text", "target"] and ds["text"] == ["hello"]
    hf = pytest.importorskip("datasets")
    assert hf.load_dataset("csv", data_files=str(path), split="train").column_names == ["text", "target"]


def test_csv_that_is_not_utf8_names_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,target\nhello,1\nfire in the caf\u00e9,0\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{path}: line 3 \(byte 35, b'\\xe9'\) is not valid utf-8 .*encoding="):
        lf.load_dataset("csv", data_files=str(path))
    ds = lf.load_dataset("csv", data_files=str(path), split="train", encoding="latin-1")
    assert ds["text"] == ["hello", "fire in the caf\u00e9"]


# ---- TrainingArguments and LoraConfig: non-finite and out-of-range values named ----------------------

@pytest.mark.parametrize("name, value, expected", [
    ("num_train_epochs", float("nan"), "num_train_epochs must be a finite number, got nan"),
    ("num_train_epochs", float("inf"), "num_train_epochs must be a finite number, got inf"),
    ("per_device_train_batch_size", 2**31, r"per_device_train_batch_size must be an integer in \[1, 2\*\*31 - 1\], "
                                           "got 2147483648"),
    ("per_device_eval_batch_size", 2**31, "per_device_eval_batch_size must be an integer"),
    ("gradient_accumulation_steps", 2**40, "gradient_accumulation_steps must be an integer"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number, got nan"),
    ("learning_rate", float("inf"), "learning_rate must be a finite number, got inf"),
    ("adam_epsilon", 0, r"adam_epsilon must be > 0 .*got 0"),
    ("adam_epsilon", -1e-8, r"adam_epsilon must be > 0 .*got -1e-08"),
    ("adam_epsilon", float("nan"), "adam_epsilon must be a finite number, got nan"),
    ("weight_decay", float("nan"), "weight_decay must be a finite number, got nan"),
    ("max_grad_norm", float("inf"), "max_grad_norm must be a finite number, got inf"),
    ("warmup_ratio", float("nan"), "warmup_ratio must be a finite number, got nan"),
])
def test_training_arguments_out_of_range_name_the_argument(tmp_path, name, value, expected):
    with pytest.raises(ValueError, match=expected):
        lf.TrainingArguments(output_dir=str(tmp_path), **{name: value})


def test_logging_nan_inf_filter_is_an_argument_with_hf_default(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not "ignored" with a warning
        assert lf.TrainingArguments(output_dir=str(tmp_path)).logging_nan_inf_filter is True
        assert lf.TrainingArguments(output_dir=str(tmp_path), logging_nan_inf_filter=False).logging_nan_inf_filter \
            is False
    transformers = pytest.importorskip("transformers")
    assert transformers.TrainingArguments(output_dir=str(tmp_path)).logging_nan_inf_filter is True


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -float("inf")])
def test_lora_alpha_must_be_finite(alpha):
    with pytest.raises(ValueError, match=f"LoraConfig: lora_alpha must be a finite number, got {alpha}"):
        lf.LoraConfig(r=2, lora_alpha=alpha)


# ---- the Trainer refuses what a cast would change ---------------------------------------------------

def float_id_datasets():
    good = rows()
    bad = [dict(r) for r in good]
    bad[3] = {**bad[3], "input_ids": [0, 2.5] + bad[3]["input_ids"][2:]}
    kinds = {
        "list of dicts": lambda: bad,
        "lorafast Dataset": lambda: lf.Dataset.from_list(bad),
        "2-D float array": lambda: {"input_ids": np.full((8, 4), 2.5), "attention_mask": np.ones((8, 4), np.int64),
                                    "label": np.zeros(8, np.int64)},
    }
    return kinds


@pytest.mark.parametrize("kind", ["list of dicts", "lorafast Dataset", "2-D float array", "datasets"])
def test_float_input_ids_are_refused_not_truncated(tmp_path, kind):
    if kind == "datasets":
        hf = pytest.importorskip("datasets")
        bad = float_id_datasets()["list of dicts"]()
        data = hf.Dataset.from_list(bad)
        expected = r"train_dataset\['input_ids'\]: example 3 holds 2.5 at position 1: token ids must be integers"
    else:
        data = float_id_datasets()[kind]()
        expected = (r"example 0 holds 2.5 at position 0" if kind == "2-D float array" else
                    r"train_dataset\['input_ids'\]: example 3 holds 2.5 at position 1: token ids must be integers")
    trainer = lf.Trainer(model=tiny_roberta(), args=args(tmp_path), train_dataset=data)
    with pytest.raises(ValueError, match=expected):
        trainer.train()
    with pytest.raises(TypeError, match="input_ids must be an integer array"):  # as model(...) refuses them
        trainer.model(input_ids=np.array([[0, 2.5, 4]]))


def test_integral_ids_still_train_from_every_kind(tmp_path):
    data = rows()
    as_arrays = [{**r, "input_ids": np.asarray(r["input_ids"], np.int32)} for r in data]
    for i, d in enumerate((data, as_arrays, lf.Dataset.from_list(data))):
        out = lf.Trainer(model=tiny_roberta(), args=args(tmp_path / str(i)), train_dataset=d).train()
        assert out.global_step == 2


@pytest.mark.parametrize("label", [2**32 + 1, 2**31, -2**31 - 1, 2**63 + 5])
def test_a_label_outside_int32_is_refused_not_wrapped(tmp_path, label):
    data = rows()
    data[5] = {**data[5], "label": label}
    trainer = lf.Trainer(model=tiny_roberta(), args=args(tmp_path), train_dataset=data)
    if label >= 2**63:  # beyond int64 numpy makes it an object column: not a class id either
        with pytest.raises(ValueError, match="must hold one integer class id per example"):
            trainer.train()
        return
    with pytest.raises(ValueError, match=rf"train_dataset: example 5 has label {label}, not a class id"):
        trainer.train()


def test_a_label_outside_int32_in_a_datasets_dataset(tmp_path):
    hf = pytest.importorskip("datasets")
    data = rows()
    data[2] = {**data[2], "label": 2**32 + 1}
    trainer = lf.Trainer(model=tiny_roberta(), args=args(tmp_path), train_dataset=hf.Dataset.from_list(data))
    with pytest.raises(ValueError, match=r"example 2 has label 4294967297, not a class id"):
        trainer.train()


# ---- resuming from a damaged checkpoint: the file named -----------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    lf.Trainer(model=tiny_roberta(), args=args(out, save_strategy="steps", save_steps=2),
               train_dataset=rows()).train()
    return out / "checkpoint-2"


def resume_from(tmp_path, checkpoint, damage):
    import shutil

    folder = tmp_path / "checkpoint-2"
    shutil.copytree(checkpoint, folder)
    damage(folder)
    trainer = lf.Trainer(model=tiny_roberta(), args=args(tmp_path / "out", max_steps=4), train_dataset=rows())
    trainer.train(resume_from_checkpoint=str(folder))
    return trainer


def test_resume_from_an_intact_checkpoint(tmp_path, checkpoint):
    assert resume_from(tmp_path, checkpoint, lambda folder: None).state.global_step == 4


@pytest.mark.parametrize("name, text, expected", [
    ("loop_state.json", "", "loop_state.json is empty: the file was cut short or damaged"),
    ("loop_state.json", '{"global_step": 2, "epo', "loop_state.json is not valid JSON"),
    ("loop_state.json", "[]", "loop_state.json: expected the loop state"),
    ("loop_state.json", '{"global_step": 2}', "loop_state.json: no 'num_examples'"),
    ("trainer_state.json", None, "trainer_state.json is not valid JSON"),  # cut in half
    ("trainer_state.json", "", "trainer_state.json is empty"),
])
def test_resume_from_a_damaged_state_file_names_it(tmp_path, checkpoint, name, text, expected):
    def damage(folder):
        path = folder / name
        path.write_text(path.read_text()[: len(path.read_text()) // 2] if text is None else text)

    with pytest.raises(ValueError, match=f"{tmp_path / 'checkpoint-2'}/{expected}"):
        resume_from(tmp_path, checkpoint, damage)


@pytest.mark.parametrize("moment, value, expected", [
    ("exp_avg", np.nan, r"holds .*\.exp_avg\[3\] = nan; AdamW's moments are finite"),
    ("exp_avg_sq", -1.0, r"holds .*\.exp_avg_sq\[3\] = -1.0; AdamW's moments are finite and >= 0"),
    ("exp_avg_sq", np.inf, r"holds .*\.exp_avg_sq\[3\] = inf"),
])
def test_resume_refuses_non_finite_or_negative_adamw_moments(tmp_path, checkpoint, moment, value, expected):
    def damage(folder):
        path = str(folder / "optimizer.safetensors")
        tensors = {k: np.array(a) for k, (a, _) in read_safetensors(path).items()}
        key = sorted(k for k in tensors if k.endswith("." + moment))[0]
        tensors[key].reshape(-1)[3] = value
        write_safetensors(tensors, path, metadata={"step": "2"})

    with pytest.raises(ValueError, match=f"cannot resume from {tmp_path / 'checkpoint-2'}: optimizer.safetensors "
                                         + expected):
        resume_from(tmp_path, checkpoint, damage)


# ---- one run per output_dir ----------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys
    from lorafast.trainer import _acquire_dir_lock
    fd = _acquire_dir_lock(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.read()  # holds the lock until the test closes stdin
""")


def test_a_second_run_into_a_held_output_dir_fails_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": REPO}, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        trainer = lf.Trainer(model=tiny_roberta(), args=args(out, save_strategy="steps", save_steps=1),
                             train_dataset=rows())
        with pytest.raises(RuntimeError, match=rf"output_dir '{out}' is in use by another run: process "
                                               rf"{holder.pid} holds the lock {out / '.lorafast.lock'}"):
            trainer.train()
        assert trainer.state.global_step == 0 and not any(n.startswith("checkpoint-") for n in os.listdir(out))
        with pytest.raises(RuntimeError, match=f"process {holder.pid} holds"):  # the lock itself, past the check
            trainer._lock_output_dir()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    trainer.train()  # the holder is gone: the run goes ahead, and leaves no lock file behind
    assert trainer.state.global_step == 2 and sorted(os.listdir(out)) == ["checkpoint-1", "checkpoint-2"]


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": REPO}, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait(timeout=60)
    assert (out / ".lorafast.lock").read_text().strip() == str(holder.pid)  # the file stays, its flock is gone
    assert lf.Trainer(model=tiny_roberta(), args=args(out), train_dataset=rows()).train().global_step == 2
    assert not (out / ".lorafast.lock").exists()


def test_two_trainers_of_one_process_on_one_output_dir(tmp_path):
    out = tmp_path / "out"
    second = lf.Trainer(model=tiny_roberta(), args=args(out), train_dataset=rows())
    seen = []

    class StartAnother(lf.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                with pytest.raises(RuntimeError, match=f"process {os.getpid()} \\(this process: another Trainer"):
                    second.train()
                seen.append(state.global_step)

    first = lf.Trainer(model=tiny_roberta(), args=args(out), train_dataset=rows(), callbacks=[StartAnother()])
    first.train()
    assert seen == [1] and second.state.global_step == 0
    assert second.train().global_step == 2  # once the first run ended


def test_leftover_temporary_folders_are_removed_only_when_their_writer_is_dead(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    try:
        for name in (f".checkpoint-3.tmp-{live.pid}", f".checkpoint-5.tmp-{dead.pid}", f".checkpoint-4.old-{live.pid}"):
            (out / name).mkdir()
            (out / name / "adapter_model.safetensors").write_bytes(b"partial")
        lf.Trainer(model=tiny_roberta(), args=args(out), train_dataset=rows()).train()
        assert sorted(os.listdir(out)) == [f".checkpoint-3.tmp-{live.pid}", f".checkpoint-4.old-{live.pid}"]
    finally:
        live.stdin.close()
        live.wait(timeout=60)
    lf.Trainer(model=tiny_roberta(), args=args(out), train_dataset=rows()).train()
    assert sorted(os.listdir(out)) == ["checkpoint-4"]  # the .old of a dead writer whose checkpoint is gone: restored


# ---- strict JSON metrics, a diverging run ------------------------------------------------------------

def strict_load(path):
    def refuse(name):
        raise AssertionError(f"{path} holds a bare {name}: not JSON")
    return json.loads(open(path).read(), parse_constant=refuse)


def test_save_metrics_and_trainer_state_write_null_for_non_finite_values(tmp_path):
    trainer = lf.Trainer(model=tiny_roberta(), args=args(tmp_path))
    trainer.save_metrics("eval", {"eval_loss": float("nan"), "eval_f1": np.float32(0.5), "eval_x": float("inf")})
    trainer.save_metrics("train", {"train_loss": float("-inf"), "epoch": 1.0})
    assert strict_load(tmp_path / "eval_results.json") == {"eval_loss": None, "eval_f1": 0.5, "eval_x": None}
    assert strict_load(tmp_path / "all_results.json") == {"eval_loss": None, "eval_f1": 0.5, "eval_x": None,
                                                          "train_loss": None, "epoch": 1.0}
    trainer.state.log_history.append({"loss": float("nan"), "grad_norm": float("inf"), "step": 1})
    trainer.state.best_metric = float("nan")
    trainer.save_state()
    state = strict_load(tmp_path / "trainer_state.json")
    assert state["log_history"] == [{"loss": None, "grad_norm": None, "step": 1}] and state["best_metric"] is None
    assert lf.trainer.TrainerState.load_from_json(str(tmp_path / "trainer_state.json")).best_metric is None


def diverging(tmp_path, name, **overrides):
    """learning_rate 1e37: step 2 moves the weights to ~1e37 and step 3's loss and gradient norm are NaN."""
    trainer = lf.Trainer(model=tiny_roberta(), args=args(tmp_path / name, learning_rate=1e37, max_steps=8,
                                                         lr_scheduler_type="constant", **overrides),
                         train_dataset=rows(16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    diverged = [w for w in caught if "diverged" in str(w.message)]
    return trainer, [e for e in trainer.state.log_history if "loss" in e], diverged


def hf_nan_inf_filter(step_losses, logging_steps):
    """transformers.Trainer's logged losses with logging_nan_inf_filter=True, from each step's loss."""
    logged, tr_loss, last = [], 0.0, 0
    for step, loss in enumerate(step_losses, 1):
        tr_loss += tr_loss / (1 + (step - 1) - last) if not np.isfinite(loss) else loss
        if step % logging_steps == 0:
            logged.append(tr_loss / (step - last))
            tr_loss, last = 0.0, step
    return logged


def test_a_diverging_run_warns_once_naming_the_step_and_filters_the_logged_loss(tmp_path):
    _, raw, diverged = diverging(tmp_path, "raw", logging_nan_inf_filter=False)
    losses = [e["loss"] for e in raw]
    assert np.isfinite(losses[:2]).all() and np.isnan(losses[2:]).all()  # the setting diverges at step 3
    assert len(diverged) == 1 and str(diverged[0].message).startswith("step 3: the training loss is nan and the "
                                                                      "gradient norm nan")
    assert diverged[0].category is RuntimeWarning

    trainer, filtered, diverged = diverging(tmp_path, "filtered", logging_steps=3)
    assert len(diverged) == 1 and str(diverged[0].message).startswith("step 3: ")
    assert [e["loss"] for e in filtered] == pytest.approx(hf_nan_inf_filter(losses, 3), rel=1e-9)
    assert np.isfinite([e["loss"] for e in filtered]).all()
    assert np.isnan(filtered[0]["grad_norm"])  # the grad norm is logged as it is, as HF does
    trainer.save_state()
    assert strict_load(tmp_path / "filtered" / "trainer_state.json")["log_history"][0]["grad_norm"] is None

    _, every_step, _ = diverging(tmp_path, "every-step")  # a window of one NaN step: HF logs 0.0
    assert [e["loss"] for e in every_step] == pytest.approx(hf_nan_inf_filter(losses, 1), rel=1e-9)
    assert [e["loss"] for e in every_step][2:] == [0.0] * 6


def test_a_finite_run_logs_the_same_losses_with_and_without_the_filter(tmp_path):
    runs = [lf.Trainer(model=tiny_roberta(), args=args(tmp_path / str(f), max_steps=4, logging_steps=2,
                                                       logging_nan_inf_filter=f), train_dataset=rows())
            for f in (True, False)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for t in runs:
            t.train()
    logged = [[e["loss"] for e in t.state.log_history if "loss" in e] for t in runs]
    assert len(logged[0]) == 2 and logged[0] == logged[1]  # bit for bit: the filter changes nothing


def test_a_workspace_larger_than_the_memory_is_a_memory_error_before_allocating():
    """A forward whose activations the machine cannot hold (about 32 GB here, more than it has): a
    MemoryError saying how much was asked and what is available, not the OOM killer."""
    cfg = lf.AutoConfig.for_model("bert", vocab_size=50, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=1 << 20, max_position_embeddings=40)
    model = lf.AutoModelForSequenceClassification.from_config(cfg, num_labels=2)
    ids = np.full((100, 40), 7, np.int64)
    with pytest.raises(MemoryError, match=r"MiB asked, [\d.]+ MiB available .*per_device_eval_batch_size"):
        model(input_ids=ids, attention_mask=np.ones_like(ids))
    out = model(input_ids=ids[:2], attention_mask=np.ones_like(ids[:2]))  # a batch it can hold still runs
    assert np.isfinite(out.logits).all()
