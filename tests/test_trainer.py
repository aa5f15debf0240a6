"""lorafast.Trainer (the loop in C) against transformers.Trainer + peft: the trajectory of every
trainable tensor over 30 steps of the notebook's settings with class weights (tiny RoBERTa and
tiny Llama), bitwise resume, Ctrl-C, a kill during a save, checkpoint layout, the best model at
the end, save_total_limit, and bad input caught before training starts."""

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import lorafast as lf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS_WEIGHTS = [0.877521613832853, 1.1622137404580153]  # the notebook's (neg, pos) from the 80/20 split
# The notebook's TrainingArguments, with one batch holding the whole dataset and 30 steps.
NOTEBOOK_ARGS = dict(learning_rate=1e-4, lr_scheduler_type="constant", warmup_ratio=0.1, max_grad_norm=0.3,
                     weight_decay=0.001, max_steps=30, logging_steps=1, eval_strategy="no", save_strategy="no",
                     per_device_eval_batch_size=5,
                     seed=42, disable_tqdm=True, report_to="none")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one OpenMP (and torch) thread avoids barrier waits on a loaded 2-core machine, which
    made these tests several times slower. Nothing here depends on the thread count."""
    threads = lf.build_info()["openmp_threads"]
    lf._C.set_num_threads(1)
    try:
        import torch
    except ImportError:
        torch = None
    torch_threads = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(1)
    yield
    lf._C.set_num_threads(threads)
    if torch:
        torch.set_num_threads(torch_threads)


def token_rows(n, vocab, seed, bos=None, min_len=4, max_len=12, num_labels=2):
    """n tokenized examples of varying length (ids in [3, vocab)), labels from the tokens."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        ids = rng.integers(3, vocab, int(rng.integers(min_len, max_len + 1))).tolist()
        if bos is not None:
            ids[0] = bos
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "label": int(sum(ids) % num_labels)})
    return rows


def tiny_base(dropout=0.0, seed=0):
    """A random tiny RoBERTa classifier (lorafast's own init)."""
    cfg = lf.AutoConfig.for_model("roberta", vocab_size=97, hidden_size=24, num_hidden_layers=2,
                                  num_attention_heads=3, intermediate_size=40, max_position_embeddings=40,
                                  pad_token_id=1, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return lf.AutoModelForSequenceClassification.from_config(cfg, num_labels=2, seed=seed)


def tiny_roberta(dropout=0.0, seed=0, r=4, lora_dropout=0.0, lora_seed=None):
    """tiny_base with LoRA on query/value (and a head) initialized from lora_seed."""
    return lf.get_peft_model(tiny_base(dropout, seed), lf.LoraConfig(r=r, lora_alpha=8, lora_dropout=lora_dropout),
                             seed=seed + 1 if lora_seed is None else lora_seed)


def accuracy(eval_pred):
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, -1) == labels).mean())}


def without_runtime(history):
    return [{k: v for k, v in e.items() if not k.endswith(("_runtime", "_per_second"))} for e in history]


# ---- trajectory parity with transformers.Trainer + peft ----------------------------------------


def torch_collate(features, pad_id):
    """The HF side's collator: right-padded torch batches of token rows with their labels."""
    import torch

    length = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), length), dtype=torch.long)
    for i, f in enumerate(features):
        ids[i, :len(f["input_ids"])] = torch.tensor(f["input_ids"])
        mask[i, :len(f["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["label"] for f in features])}

def hf_tiny(kind, folder):
    """A tiny random checkpoint saved by transformers and a peft adapter (random A and B) for it."""
    import torch
    import transformers
    import peft

    torch.manual_seed(0)
    if kind == "roberta":
        cfg = transformers.RobertaConfig(vocab_size=97, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                         intermediate_size=40, max_position_embeddings=40, num_labels=2,
                                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=1,
                                         bos_token_id=0, eos_token_id=2, type_vocab_size=1)
        targets = None
    else:
        cfg = transformers.LlamaConfig(vocab_size=101, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, pad_token_id=2, eos_token_id=2,
                                       bos_token_id=1, num_labels=2, rms_norm_eps=1e-5, rope_theta=500.0)
        targets = ["q_proj", "v_proj"]
    model = transformers.AutoModelForSequenceClassification.from_config(cfg, attn_implementation="eager")
    model.save_pretrained(folder / "base")
    pm = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0,
                                                     target_modules=targets))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    pm.save_pretrained(folder / "adapter")
    return cfg


def hf_train(folder, rows, pad_id, class_weights, evaluate=True, **overrides):
    """transformers.Trainer + peft with the notebook's WeightedCELossTrainer (NOTEBOOK_ARGS with overrides; one
    batch of all rows unless per_device_train_batch_size is among them): final trainable tensors, logs and
    (evaluate=True) the metrics of an evaluation on rows."""
    import torch
    import transformers
    import peft

    class WeightedCELossTrainer(transformers.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.get("logits")
            loss_fct = torch.nn.CrossEntropyLoss(weight=torch.tensor(class_weights, device=model.device,
                                                                     dtype=logits.dtype))
            loss = loss_fct(logits.view(-1, self.model.config.num_labels), labels.view(-1))
            return (loss, outputs) if return_outputs else loss

    collate = functools.partial(torch_collate, pad_id=pad_id)

    base = transformers.AutoModelForSequenceClassification.from_pretrained(folder / "base",
                                                                           attn_implementation="eager")
    model = peft.PeftModel.from_pretrained(base, folder / "adapter", is_trainable=True)
    kw = {"per_device_train_batch_size": len(rows), **NOTEBOOK_ARGS, **overrides}
    kw["warmup_steps"] = kw.pop("warmup_ratio")  # transformers 5: warmup_steps < 1 is the ratio
    args = transformers.TrainingArguments(output_dir=str(folder / "hf_out"), use_cpu=True, **kw)
    trainer = WeightedCELossTrainer(model=model, args=args, train_dataset=rows, data_collator=collate,
                                    compute_metrics=accuracy)
    trainer.train()
    tensors = {n.replace(".modules_to_save.default", "").replace(".default.weight", ".weight"): p.detach().numpy()
               for n, p in model.named_parameters() if p.requires_grad}
    return tensors, trainer.state.log_history, trainer.evaluate(eval_dataset=rows) if evaluate else None


def assert_follows(ours, ref, start, moved_factor, when):
    """Every trainable tensor of ours within 1e-4 (relative) of ref's, and ref moved more than
    moved_factor x 1e-4 from start (else the comparison could not tell two runs apart)."""
    for name in ref:
        scale = np.linalg.norm(ref[name])
        rel = np.linalg.norm(ours[name] - ref[name]) / scale
        moved = np.linalg.norm(ref[name] - start[name]) / scale
        assert rel <= 1e-4, f"{name}: relative difference {rel:.3g} {when}"
        assert moved > moved_factor * 1e-4, f"{name} moved only {moved:.3g}: the test could not tell the runs apart"


@pytest.mark.parametrize("kind", ["roberta", "llama"])
def test_trajectory_matches_hf_trainer_peft(tmp_path, kind):
    cfg = hf_tiny(kind, tmp_path)
    rows = token_rows(24, cfg.vocab_size, seed=3, bos=0 if kind == "roberta" else None)
    ref, ref_log, ref_eval = hf_train(tmp_path, rows, cfg.pad_token_id, CLASS_WEIGHTS)

    base = lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2)
    model = lf.PeftModel.from_pretrained(base, tmp_path / "adapter", is_trainable=True)
    start = model.trainable_state_dict()
    # the notebook's gradient_checkpointing=True on lorafast's side only (exact recomputation in the
    # decoder; HF + peft would need enable_input_require_grads for it)
    args = lf.TrainingArguments(output_dir=str(tmp_path / "lf_out"), per_device_train_batch_size=len(rows),
                                gradient_checkpointing=True, **NOTEBOOK_ARGS)
    trainer = lf.Trainer(model=model, args=args, train_dataset=rows, class_weights=CLASS_WEIGHTS,
                         compute_metrics=accuracy)
    out = trainer.train()
    ours = model.trainable_state_dict()

    assert out.global_step == 30 and sorted(ours) == sorted(ref)
    assert_follows(ours, ref, start, 50, "after 30 steps")
    steps = [e for e in trainer.state.log_history if "loss" in e]
    ref_steps = [e for e in ref_log if "loss" in e]
    assert [e["step"] for e in steps] == [e["step"] for e in ref_steps] == list(range(1, 31))
    for e, r in zip(steps, ref_steps):
        assert e["learning_rate"] == pytest.approx(r["learning_rate"], rel=1e-12)
        assert e["epoch"] == pytest.approx(r["epoch"])
        assert e["loss"] == pytest.approx(r["loss"], rel=1e-4)
        assert e["grad_norm"] == pytest.approx(r["grad_norm"], rel=1e-3)
    ref_train = next(e for e in ref_log if "train_loss" in e)
    assert out.metrics["train_loss"] == pytest.approx(ref_train["train_loss"], rel=1e-4)
    # evaluation in batches of 5 (the last one short) with the class-weighted loss, as HF's prediction_step
    ours_eval = trainer.evaluate(eval_dataset=rows)
    assert ours_eval["eval_loss"] == pytest.approx(ref_eval["eval_loss"], rel=1e-4)
    assert ours_eval["eval_accuracy"] == ref_eval["eval_accuracy"]
    assert sorted(ours_eval) == sorted(ref_eval)
    assert set(out.metrics) >= {"train_runtime", "train_samples_per_second", "train_steps_per_second",
                                "total_flos", "train_loss", "epoch"}


# ---- resume, Ctrl-C, a kill during a save ------------------------------------------------------

RESUME_ARGS = dict(per_device_train_batch_size=5, gradient_accumulation_steps=2, num_train_epochs=3,
                   learning_rate=3e-3, lr_scheduler_type="linear", warmup_steps=2, weight_decay=0.01,
                   max_grad_norm=0.5, eval_strategy="epoch", save_strategy="steps", save_steps=2, logging_steps=1,
                   seed=7, disable_tqdm=True)


def resume_trainer(out_dir, lora_seed=1, **overrides):
    """24 examples in batches of 5 with accumulation 2: 3 updates per epoch, the last one short;
    hidden and LoRA dropout on, so the RNG state matters."""
    model = tiny_roberta(dropout=0.1, lora_dropout=0.1, lora_seed=lora_seed)
    args = lf.TrainingArguments(output_dir=str(out_dir), **{**RESUME_ARGS, **overrides})
    return lf.Trainer(model=model, args=args, train_dataset=token_rows(24, 97, seed=5, bos=0),
                      eval_dataset=token_rows(10, 97, seed=6, bos=0), compute_metrics=accuracy,
                      class_weights=[1.0, 1.5])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    trainer = resume_trainer(folder)
    out = trainer.train()
    assert out.global_step == 9
    return folder, trainer.model.trainable_state_dict(), trainer.state.log_history


def assert_same_run(trainer, uninterrupted):
    _, weights, history = uninterrupted
    ours = trainer.model.trainable_state_dict()
    for name in weights:
        assert np.array_equal(ours[name], weights[name]), f"{name} differs from the uninterrupted run"
    assert without_runtime(trainer.state.log_history[:-1]) == without_runtime(history[:-1])


@pytest.mark.parametrize("step", [4, 6])  # mid-epoch (after update 1 of epoch 2) and at an epoch's last update
def test_resume_is_bitwise(tmp_path, uninterrupted, step):
    folder = uninterrupted[0]
    trainer = resume_trainer(tmp_path, lora_seed=123)  # other adapter init: it must come from the checkpoint
    trainer.train(resume_from_checkpoint=str(folder / f"checkpoint-{step}"))
    assert_same_run(trainer, uninterrupted)


def test_checkpoint_layout_and_last_checkpoint(uninterrupted):
    import transformers

    folder = uninterrupted[0]
    assert sorted(os.listdir(folder)) == ["checkpoint-2", "checkpoint-4", "checkpoint-6", "checkpoint-8",
                                          "checkpoint-9"]
    ckpt = folder / "checkpoint-4"
    assert sorted(os.listdir(ckpt)) == ["adapter_config.json", "adapter_model.safetensors", "loop_state.json",
                                        "optimizer.safetensors", "scheduler.json", "trainer_state.json",
                                        "training_args.json"]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert set(state) == {f.name for f in dataclasses.fields(transformers.TrainerState)}
    assert state["global_step"] == 4 and state["max_steps"] == 9 and state["epoch"] == pytest.approx(1.4)  # HF counts micro-batches: 1 + 2/5
    assert [e["step"] for e in state["log_history"]] == [1, 2, 3, 3, 4]  # steps 1-3, eval of epoch 1, step 4
    assert lf.trainer.get_last_checkpoint(str(folder)) == str(folder / "checkpoint-9")
    # the adapter is a peft folder
    base = tiny_base()
    loaded = lf.PeftModel.from_pretrained(base, ckpt)
    assert set(loaded.trainable_state_dict()) == set(uninterrupted[1])


SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    sys.path.insert(0, {tests!r})
    import lorafast as lf
    from test_trainer import resume_trainer
    mode, out = sys.argv[1], sys.argv[2]

    if mode == "kill-during-save":
        write_json = lf.trainer._write_json
        def dying_write_json(path, obj):
            if "checkpoint-4" in path:  # in the middle of the second save: adapter and optimizer written
                os.kill(os.getpid(), signal.SIGKILL)
            write_json(path, obj)
        lf.trainer._write_json = dying_write_json
        resume_trainer(out).train()

    if mode == "sigint":
        class Marker(lf.TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == 7:
                    open(os.path.join(out, "marker"), "w").close()
        trainer = resume_trainer(out, num_train_epochs=100000, save_steps=3)
        trainer.callbacks.append(Marker())
        try:
            trainer.train()
        except KeyboardInterrupt:
            weights = trainer.model.trainable_state_dict()
            preds = trainer.predict(trainer.eval_dataset)
            print(json.dumps({{"interrupted": True, "step": trainer.state.global_step,
                              "finite": all(bool((w == w).all()) for w in weights.values()),
                              "predictions": preds.predictions.shape}}))
""")


def run_script(tmp_path, mode, out):
    path = tmp_path / "script.py"
    path.write_text(SCRIPT.format(tests=os.path.join(REPO, "tests")))
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(path), mode, str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path, uninterrupted):
    out = tmp_path / "out"
    proc = run_script(tmp_path, "kill-during-save", out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    names = sorted(os.listdir(out))
    assert "checkpoint-2" in names and "checkpoint-4" not in names, names
    assert [n for n in names if n.startswith(".checkpoint-4.tmp-")], names  # the save was cut short
    assert lf.trainer.get_last_checkpoint(str(out)) == str(out / "checkpoint-2")
    trainer = resume_trainer(out, lora_seed=99)
    trainer.train(resume_from_checkpoint=True)
    assert_same_run(trainer, uninterrupted)
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # the partial save is cleaned up


def test_ctrl_c_stops_at_a_step_boundary_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "out"
    proc = run_script(tmp_path, "sigint", out)
    deadline = time.time() + 120
    while not (out / "marker").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "the training subprocess did not reach step 7"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["interrupted"] and report["finite"] and report["predictions"] == [10, 2]
    assert 7 <= report["step"] < 1000
    last = lf.trainer.get_last_checkpoint(str(out))
    assert last is not None and not [n for n in os.listdir(out) if n.startswith(".")]
    state = json.loads(open(os.path.join(last, "trainer_state.json")).read())
    assert state["global_step"] == int(last.rsplit("-", 1)[1]) and state["global_step"] % 3 == 0
    resumed = lf.PeftModel.from_pretrained(tiny_base(), last, is_trainable=True)
    assert resumed.trainable_state_dict().keys() == tiny_roberta().trainable_state_dict().keys()


# ---- evaluation, best model, save_total_limit ---------------------------------------------------

def test_load_best_model_at_end_and_save_total_limit(tmp_path, capsys):
    model = tiny_roberta(seed=4)
    args = lf.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=4,
                                learning_rate=2e-2, eval_strategy="epoch", save_strategy="epoch",
                                load_best_model_at_end=True, metric_for_best_model="accuracy", save_total_limit=1,
                                disable_tqdm=True, logging_strategy="epoch", report_to="tensorboard_json",
                                logging_dir=str(tmp_path / "logs"))
    train, val = token_rows(16, 97, seed=8, bos=0), token_rows(12, 97, seed=9, bos=0)
    trainer = lf.Trainer(model=model, args=args, train_dataset=train, eval_dataset=val, compute_metrics=accuracy)
    trainer.train()
    evals = [e for e in trainer.state.log_history if "eval_accuracy" in e]
    assert [e["epoch"] for e in evals] == [1.0, 2.0, 3.0, 4.0]
    best = max(evals, key=lambda e: (e["eval_accuracy"], -e["step"]))  # the first of the best (np.greater)
    assert trainer.state.best_metric == best["eval_accuracy"]
    assert trainer.state.best_model_checkpoint == str(tmp_path / f"checkpoint-{best['step']}")
    with open(tmp_path / "logs" / "trainer_log.jsonl") as f:
        assert [json.loads(line) for line in f] == trainer.state.log_history
    kept = sorted(n for n in os.listdir(tmp_path) if n.startswith("checkpoint-"))
    assert f"checkpoint-{best['step']}" in kept and "checkpoint-16" in kept and len(kept) <= 2
    saved = lf.PeftModel.from_pretrained(tiny_base(), trainer.state.best_model_checkpoint)
    for name, value in saved.trainable_state_dict().items():
        assert np.array_equal(model.trainable_state_dict()[name], value)
    # evaluate() after training gives the best model's metrics
    assert trainer.evaluate()["eval_accuracy"] == best["eval_accuracy"]
    table = capsys.readouterr().out
    assert "Epoch" in table and "Training Loss" in table and "Validation Loss" in table and "Accuracy" in table


def test_evaluate_and_predict_match_the_model_and_hf_shapes(tmp_path):
    model = tiny_roberta(seed=2)
    rows = token_rows(9, 97, seed=10, bos=0)
    seen = []

    def metrics(p):
        seen.append(p)
        return accuracy(p)

    trainer = lf.Trainer(model=model, args=lf.TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4),
                         eval_dataset=rows, compute_metrics=metrics, class_weights=[2.0, 0.5])
    m = trainer.evaluate()
    logits, labels = seen[0]
    assert seen[0].predictions is logits and np.array_equal(labels, [r["label"] for r in rows])
    # the model's own forward, batch by batch: HF's eval loss is the batch losses weighted by batch size
    expected_logits, losses = [], []
    for first in range(0, 9, 4):
        batch = rows[first:first + 4]
        L = max(len(r["input_ids"]) for r in batch)
        ids = np.array([r["input_ids"] + [1] * (L - len(r["input_ids"])) for r in batch])
        out = model(input_ids=ids, attention_mask=(ids != 1).astype(np.int64), labels=[r["label"] for r in batch],
                    class_weights=[2.0, 0.5])
        expected_logits.append(out.logits)
        losses += [out.loss] * len(batch)
    np.testing.assert_allclose(logits, np.concatenate(expected_logits), rtol=1e-6, atol=1e-7)
    assert m["eval_loss"] == pytest.approx(np.mean(losses), rel=1e-6)
    assert list(m)[:2] == ["eval_loss", "eval_accuracy"] and "eval_runtime" in m and m["epoch"] == 0
    assert trainer.state.log_history[-1]["eval_loss"] == m["eval_loss"]
    pred = trainer.predict(rows)
    np.testing.assert_array_equal(pred.predictions, logits)
    assert "test_loss" in pred.metrics and "test_accuracy" in pred.metrics
    no_labels = trainer.predict([{"input_ids": r["input_ids"]} for r in rows])
    assert no_labels.label_ids is None and "test_loss" not in no_labels.metrics


@pytest.mark.parametrize("kind", ["lorafast", "datasets", "columns"])
def test_dataset_kinds_train_the_same(tmp_path, kind):
    rows = token_rows(12, 97, seed=11, bos=0)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    data = {"lorafast": lambda: lf.Dataset.from_dict(columns),
            "datasets": lambda: pytest.importorskip("datasets").Dataset.from_dict(columns),
            "columns": lambda: columns}[kind]()
    results = []
    for train in (rows, data):
        model = tiny_roberta(seed=5)
        args = lf.TrainingArguments(output_dir=str(tmp_path / str(len(results))), per_device_train_batch_size=4,
                                    max_steps=4, save_strategy="no", disable_tqdm=True)
        lf.Trainer(model=model, args=args, train_dataset=train,
                   data_collator=lf.DataCollatorWithPadding(tokenizer=None)).train()
        results.append(model.trainable_state_dict())
    for name in results[0]:
        assert np.array_equal(results[0][name], results[1][name])


# ---- bad input: clear errors before training starts ---------------------------------------------

def bad_input_cases(tmp_path):
    good = token_rows(6, 97, seed=12, bos=0)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    return {
        "empty dataset": (dict(train_dataset=[]), {}, ValueError, "train_dataset is empty"),
        "missing label column": (dict(train_dataset=[{"input_ids": r["input_ids"]} for r in good]), {},
                                 ValueError, "train_dataset has no label column"),
        "label out of range": (dict(train_dataset=good[:3] + [{**good[3], "label": 2}]), {}, ValueError,
                               r"example 3 has label 2, outside \[0, 2\)"),
        "vocabularies disagree": (dict(train_dataset=good[:4] + [{**good[4], "input_ids": [0, 5, 200, 2],
                                                                           "attention_mask": [1] * 4}]), {},
                                  ValueError, "example 4 has token id 200, outside the model's vocabulary"),
        "eval label out of range": (dict(train_dataset=good, eval_dataset=[{**good[0], "label": -1}]),
                                    dict(eval_strategy="epoch"), ValueError, "eval_dataset: example 0 has label -1"),
        "output_dir not writable": (dict(train_dataset=good), dict(output_dir=str(blocked / "out")), OSError,
                                    "cannot be written"),
        "too long for the positions": (dict(train_dataset=good + [{"input_ids": [0] + [5] * 40, "attention_mask": [1] * 41,
                                                                          "label": 1}]), {},
                                       ValueError, "example 6 has 41 tokens, more than the model's 38 positions"),
        "no input_ids": (dict(train_dataset=[{"text": "a", "label": 0}]), {}, ValueError, "no 'input_ids' column"),
        "a row without its label": (dict(train_dataset=good[:2] + [{"input_ids": [0, 5], "attention_mask": [1, 1]}]
                                         + good[2:]), {}, ValueError, "example 2 has no 'label'"),
    }


@pytest.mark.parametrize("case", ["empty dataset", "missing label column", "label out of range",
                                  "vocabularies disagree", "eval label out of range", "output_dir not writable",
                                  "too long for the positions", "no input_ids",
                                  "a row without its label"])
def test_bad_input_is_a_clear_error_before_training(tmp_path, case):
    kwargs, arg_overrides, error, message = bad_input_cases(tmp_path)[case]
    model = tiny_roberta()
    before = model.trainable_state_dict()
    args = lf.TrainingArguments(**{"output_dir": str(tmp_path / "out"), "disable_tqdm": True, **arg_overrides})
    with pytest.raises(error, match=message):
        lf.Trainer(model=model, args=args, **kwargs).train()
    after = model.trainable_state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert not os.path.exists(tmp_path / "out" / "checkpoint-1")


def test_bad_trainer_arguments(tmp_path):
    model = tiny_roberta()
    rows = token_rows(4, 97, seed=13, bos=0)
    args = lf.TrainingArguments(output_dir=str(tmp_path), eval_strategy="epoch")
    with pytest.raises(ValueError, match="eval_strategy to epoch but you didn't pass an `eval_dataset`"):
        lf.Trainer(model=model, args=args, train_dataset=rows)

    with pytest.raises(ValueError, match="data_collator my_collator cannot be honoured"):
        def my_collator(features):
            return features
        lf.Trainer(model=model, args=lf.TrainingArguments(output_dir=str(tmp_path)), data_collator=my_collator)
    with pytest.raises(ValueError, match="class_weights has 3 values, the model has num_labels=2"):
        lf.Trainer(model=model, args=lf.TrainingArguments(output_dir=str(tmp_path)), class_weights=[1, 2, 3])
    with pytest.raises(TypeError, match="needs a lorafast PeftModel"):
        lf.Trainer(model=model.base_model, args=lf.TrainingArguments(output_dir=str(tmp_path)))


def test_epoch_table_in_a_notebook_is_one_html_table_updated_in_place(tmp_path, monkeypatch):
    display_mod = pytest.importorskip("IPython.display")
    shown = []

    class Handle:
        def update(self, html):
            shown.append(("update", html.data))

    def display(html, display_id=False):
        shown.append(("display", html.data))
        return Handle()

    monkeypatch.setattr(lf.trainer, "_in_notebook", lambda: True)
    monkeypatch.setattr(display_mod, "display", display)
    args = lf.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=2,
                                eval_strategy="epoch", save_strategy="no", logging_strategy="epoch", disable_tqdm=True)
    trainer = lf.Trainer(model=tiny_roberta(seed=6), args=args, train_dataset=token_rows(8, 97, seed=14, bos=0),
                         eval_dataset=token_rows(4, 97, seed=15, bos=0), compute_metrics=accuracy)
    trainer.train()
    assert [kind for kind, _ in shown] == ["display", "update"]
    html = shown[-1][1]
    assert html.count("<tr>") == 3  # the header and one row per epoch
    for column in ("Epoch", "Training Loss", "Validation Loss", "Accuracy"):
        assert f"<th>{column}</th>" in html
    losses = [e for e in trainer.state.log_history if "loss" in e]
    assert f"<td>{losses[-1]['loss']:.6f}</td>" in html


@pytest.mark.parametrize("key, value, message", [
    ("batch_size", 0, "batch_size"), ("max_steps", -1, "max_steps"), ("lr", float("nan"), "AdamW"),
    ("beta2", 1.0, "AdamW"), ("eval_every", 1, "eval every 0 steps"), ("save_every", 7, "save strategy 7"),
    ("schedule", "polynomial", "lr_scheduler_type polynomial"),
])
def test_c_train_run_validates_its_config(key, value, message):
    model = tiny_roberta()
    rows = token_rows(4, 97, seed=16, bos=0)
    trainer = lf.Trainer(model=model, args=lf.TrainingArguments(output_dir="unused"), train_dataset=rows)
    enc = trainer._encode(rows, "train_dataset", True)
    config = {**trainer._plan(enc), "eval_steps": 0, key: value}
    numel = sum(d.size for _, d in trainer._params())

    def state(**changes):
        return {"global_step": 0, "epoch": 0, "batch_in_epoch": 0, "micro_steps": 0, "last_log_step": 0,
                "skipped_steps": 0, "growth_tracker": 0, "loss_total": 0.0, "loss_since_log": 0.0, "loss_scale": 1.0,
                "exp_avg": np.zeros(numel, np.float32), "exp_avg_sq": np.zeros(numel, np.float32), **changes}

    def run(config, loop_state):
        lf._C.train_run(model.c_model, (enc.ids, enc.offsets, enc.labels), state=loop_state, config=config,
                        callback=lambda ev: False)

    before = model.trainable_state_dict()
    with pytest.raises(ValueError, match=message):
        run(config, state())
    assert all(np.array_equal(v, model.trainable_state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="loop state does not fit"):
        run(trainer._plan(enc), state(batch_in_epoch=3))  # batch 3 of 1 in the epoch
    with pytest.raises(ValueError, match="exp_avg and exp_avg_sq need"):
        run(trainer._plan(enc), state(exp_avg=np.zeros(3, np.float32)))
    with pytest.raises(KeyError, match="loop state is missing growth_tracker"):
        run(trainer._plan(enc), {k: v for k, v in state().items() if k != "growth_tracker"})


def test_log_metrics_save_metrics_save_state_as_hf(tmp_path, capsys):
    import types
    from transformers import trainer_pt_utils

    metrics = {"train_runtime": 12.3456, "train_samples_per_second": 9.87654, "total_flos": 3.5 * 2**30,
               "train_loss": 0.123456789, "epoch": 3.0, "eval_accuracy": 1}
    hf_self = types.SimpleNamespace(is_world_process_zero=lambda: True, args=types.SimpleNamespace(output_dir=str(tmp_path / "hf")))
    trainer_pt_utils.log_metrics(hf_self, "train", metrics)
    expected = capsys.readouterr().out
    trainer = lf.Trainer(model=tiny_roberta(), args=lf.TrainingArguments(output_dir=str(tmp_path / "lf")))
    trainer.log_metrics("train", metrics)
    assert capsys.readouterr().out == expected
    os.makedirs(tmp_path / "hf")
    for split in ("train", "eval"):
        trainer_pt_utils.save_metrics(hf_self, split, {f"{split}_x": 1.5})
        trainer.save_metrics(split, {f"{split}_x": 1.5})
    for name in ("train_results.json", "eval_results.json", "all_results.json"):
        assert (tmp_path / "lf" / name).read_text() == (tmp_path / "hf" / name).read_text()
    trainer.save_state()
    assert json.loads((tmp_path / "lf" / "trainer_state.json").read_text())["global_step"] == 0


def test_transformers_callbacks_drive_the_c_loop(tmp_path):
    import transformers

    seen = []

    class Recorder(lf.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            seen.append(dict(logs))

        def on_step_end(self, args, state, control, **kwargs):
            control.should_save = state.global_step == 1  # a save the strategy would not make

    # learning_rate=0: the metric never improves, so EarlyStoppingCallback(patience=2) stops after epoch 3
    args = lf.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=30,
                                learning_rate=0.0, eval_strategy="epoch", save_strategy="epoch",
                                load_best_model_at_end=True, disable_tqdm=True)
    trainer = lf.Trainer(model=tiny_roberta(), args=args, train_dataset=token_rows(8, 97, 1, bos=0),
                         eval_dataset=token_rows(8, 97, 2, bos=0), compute_metrics=accuracy,
                         callbacks=[transformers.EarlyStoppingCallback(early_stopping_patience=2), Recorder])
    out = trainer.train()
    assert out.global_step == 6 and trainer.state.epoch == 3.0
    assert [e["epoch"] for e in trainer.state.log_history if "eval_loss" in e] == [1.0, 2.0, 3.0]
    assert seen == [{k: v for k, v in e.items() if k != "step"} for e in trainer.state.log_history]
    assert trainer.state.best_model_checkpoint == str(tmp_path / "checkpoint-2")
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-1", "checkpoint-2", "checkpoint-4", "checkpoint-6"]


def test_gradient_accumulation_is_the_mean_over_micro_batches(tmp_path):
    """batch 3 x accumulation 2 = batch 6 (the same examples: the shuffle depends on seed and epoch
    only). transformers 5.25 + peft instead sums the micro-batch losses for these models when
    compute_loss ignores num_items_in_batch (the notebook's WeightedCELossTrainer): see README."""
    rows = token_rows(24, 97, seed=17, bos=0)
    results = []
    for bs, ga in ((3, 2), (6, 1)):
        model = tiny_roberta(seed=7)
        args = lf.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=bs,
                                    gradient_accumulation_steps=ga, num_train_epochs=1, learning_rate=1e-2,
                                    max_grad_norm=0.3, logging_steps=1, save_strategy="no", disable_tqdm=True)
        trainer = lf.Trainer(model=model, args=args, train_dataset=rows)  # unweighted: the mean of means is the mean
        trainer.train()
        results.append((model.trainable_state_dict(), [e for e in trainer.state.log_history if "loss" in e]))
    (w_acc, log_acc), (w_big, log_big) = results
    assert [e["step"] for e in log_acc] == [e["step"] for e in log_big] == [1, 2, 3, 4]
    for a, b in zip(log_acc, log_big):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    for name in w_big:
        rel = np.linalg.norm(w_acc[name] - w_big[name]) / np.linalg.norm(w_big[name])
        assert rel < 1e-4, name
    # an epoch's last update with fewer micro-batches is their mean too (HF divides by len(batch_samples)):
    # 9 equal examples, batch 3 x 2, lr 0: updates of 2 and 1 micro-batches have the same gradient
    args = lf.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=3, gradient_accumulation_steps=2,
                                num_train_epochs=1, learning_rate=0.0, logging_steps=1, save_strategy="no",
                                disable_tqdm=True)
    trainer = lf.Trainer(model=tiny_roberta(seed=7), args=args, train_dataset=[rows[0]] * 9)
    trainer.train()
    (first, last) = [e for e in trainer.state.log_history if "loss" in e]
    assert last["grad_norm"] == pytest.approx(first["grad_norm"], rel=1e-6) and first["grad_norm"] > 0
    assert last["loss"] == pytest.approx(first["loss"], rel=1e-6)


def test_where_transformers_sums_micro_batches_lorafast_averages(tmp_path):
    """The README's note: one update of batch 3 x accumulation 2 against batch 6, HF Trainer and lorafast,
    on the same 6 examples (a single update: the order within it does not matter for the sum)."""
    import torch
    import transformers
    import peft

    hf_tiny("roberta", tmp_path)
    rows = token_rows(6, 97, seed=18, bos=0)

    collate = functools.partial(torch_collate, pad_id=1)

    norms = {}
    for bs, ga in ((3, 2), (6, 1)):
        common = dict(per_device_train_batch_size=bs, gradient_accumulation_steps=ga, max_steps=1, logging_steps=1,
                      save_strategy="no", disable_tqdm=True, report_to="none")
        model = peft.PeftModel.from_pretrained(
            transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base"), tmp_path / "adapter",
            is_trainable=True)
        hf = transformers.Trainer(model=model, args=transformers.TrainingArguments(
            output_dir=str(tmp_path / "hf"), use_cpu=True, **common), train_dataset=rows, data_collator=collate)
        hf.train()
        ours = lf.PeftModel.from_pretrained(lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base"),
                                            tmp_path / "adapter", is_trainable=True)
        trainer = lf.Trainer(model=ours, args=lf.TrainingArguments(output_dir=str(tmp_path / "lf"), **common),
                             train_dataset=rows)
        trainer.train()
        norms[ga] = (hf.state.log_history[0]["grad_norm"], trainer.state.log_history[0]["grad_norm"])
    assert norms[1][1] == pytest.approx(norms[1][0], rel=1e-4)  # one batch of 6: the same
    assert norms[2][0] == pytest.approx(2 * norms[1][0], rel=1e-4)  # HF: the sum of the two micro-batch means
    assert norms[2][1] == pytest.approx(norms[1][1], rel=1e-4)  # lorafast: their mean


def test_step_epoch_log_and_checkpoint_bookkeeping_match_hf_trainer(tmp_path):
    """20 examples, batch 3 x accumulation 2 (7 micro-batches: updates of 2, 2, 2, 1), 2.5 epochs, logging,
    evaluation and saving by steps, the final step's extra evaluation and save, save_total_limit: the same
    log entries (step, epoch, keys, learning rate) and the same checkpoint folders as transformers.Trainer."""
    import torch
    import transformers
    import peft

    hf_tiny("roberta", tmp_path)
    train, val = token_rows(20, 97, seed=19, bos=0), token_rows(7, 97, seed=20, bos=0)
    common = dict(per_device_train_batch_size=3, gradient_accumulation_steps=2, num_train_epochs=2.5,
                  eval_strategy="steps", eval_steps=3, logging_steps=2, save_strategy="steps", save_steps=6,
                  save_total_limit=2, load_best_model_at_end=True, learning_rate=1e-3, lr_scheduler_type="linear",
                  warmup_steps=2, seed=3, disable_tqdm=True, report_to="none", per_device_eval_batch_size=4)

    collate = functools.partial(torch_collate, pad_id=1)

    model = peft.PeftModel.from_pretrained(
        transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base"), tmp_path / "adapter",
        is_trainable=True)
    hf = transformers.Trainer(model=model, args=transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), use_cpu=True, **common), train_dataset=train, eval_dataset=val,
        data_collator=collate, compute_metrics=accuracy)
    hf.train()
    ours = lf.PeftModel.from_pretrained(lf.AutoModelForSequenceClassification.from_pretrained(tmp_path / "base"),
                                        tmp_path / "adapter", is_trainable=True)
    trainer = lf.Trainer(model=ours, args=lf.TrainingArguments(output_dir=str(tmp_path / "lf"), **common),
                         train_dataset=train, eval_dataset=val, compute_metrics=accuracy)
    trainer.train()

    def shape(history):
        return [(e["step"], round(e["epoch"], 9), sorted(e), e.get("learning_rate")) for e in history]

    assert shape(trainer.state.log_history) == shape(hf.state.log_history)
    assert sorted(os.listdir(tmp_path / "lf")) == sorted(os.listdir(tmp_path / "hf"))
    assert trainer.state.max_steps == hf.state.max_steps == 10


@pytest.mark.parametrize("disable", [False, True])
def test_progress_bar_follows_disable_tqdm(tmp_path, capsys, disable):
    args = lf.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3,
                                save_strategy="no", disable_tqdm=disable)
    lf.Trainer(model=tiny_roberta(), args=args, train_dataset=token_rows(8, 97, 21, bos=0)).train()
    err = capsys.readouterr().err
    assert ("3/3" in err) != disable
