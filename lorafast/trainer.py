"""`Trainer` with the API of transformers.Trainer, its loop in C (csrc/train/loop.c).

`train()` hands the tokenized dataset to C once (flat int32 ids, int64 offsets, int32 labels);
C shuffles, batches, steps (forward/backward, clipping, schedule, AdamW) and calls back here
after every update and at every epoch end, only to report progress, log, evaluate (through
`compute_metrics`) and save checkpoints. The loss is torch.nn.CrossEntropyLoss(weight=
class_weights) in C; a subclass's `compute_loss` override (torch needed) is called by the C loop
on each micro-batch's logits instead, and its `loss.backward()` gradient of the logits goes back
into C for the backward pass.
"""

import collections
import dataclasses
import datetime
import html
import itertools
import json
import logging
import math
import os
import re
import shutil
import sys
import time
import warnings

import numpy as np

from ._backend import _C
from .data_collator import DataCollatorWithPadding
from .distributed import DataParallel
from .modeling_weights import read_safetensors, write_safetensors
from .peft import PeftModel
from .training_args import TrainingArguments

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "TrainerState", "TrainerControl", "TrainerCallback", "TrainOutput", "PredictionOutput",
           "EvalPrediction", "get_last_checkpoint"]

PREFIX_CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
SCHEDULER_NAME = "scheduler.json"
LOOP_STATE_NAME = "loop_state.json"
TRAINING_ARGS_NAME = "training_args.json"
_CHECKPOINT_RE = re.compile(r"^" + PREFIX_CHECKPOINT_DIR + r"-(\d+)$")
_TEMP_RE = re.compile(r"^\.(" + PREFIX_CHECKPOINT_DIR + r"-\d+)\.(tmp|old)-(\d+)$")  # .checkpoint-N.tmp-<writer PID>
LOCK_NAME = ".lorafast.lock"  # in output_dir: flock'ed by the run that trains into it, holds its PID
LOG_FILE = "trainer_log.jsonl"  # report_to="tensorboard_json": one JSON line per log entry in logging_dir
_EVERY = {"no": 0, "steps": 1, "epoch": 2}  # lf_train_config's LF_EVERY_*
_LABEL_COLUMNS = ("labels", "label", "label_ids")
_COUNTERS = ("global_step", "epoch", "batch_in_epoch", "micro_steps", "last_log_step", "skipped_steps",
             "growth_tracker")
LOSS_SCALE_INIT = _C.LOSS_SCALE_INIT  # torch.amp.GradScaler's init_scale (csrc/train/loss_scale.h)


# transformers.trainer_utils' NamedTuples
TrainOutput = collections.namedtuple("TrainOutput", ["global_step", "training_loss", "metrics"])
PredictionOutput = collections.namedtuple("PredictionOutput", ["predictions", "label_ids", "metrics"])


class EvalPrediction:
    """What compute_metrics receives: `.predictions` (logits, (n, num_labels)) and `.label_ids`;
    `predictions, labels = eval_pred` unpacks it, as transformers.EvalPrediction."""

    def __init__(self, predictions, label_ids, inputs=None):
        self.predictions = predictions
        self.label_ids = label_ids
        self.inputs = inputs

    def __iter__(self):
        return iter((self.predictions, self.label_ids) if self.inputs is None else
                    (self.predictions, self.label_ids, self.inputs))

    def __getitem__(self, i):
        return tuple(self)[i]

    def __len__(self):
        return len(tuple(self))


@dataclasses.dataclass
class TrainerState:
    """transformers.TrainerState's fields; saved as trainer_state.json in each checkpoint."""

    epoch: float = 0
    global_step: int = 0
    max_steps: int = 0
    logging_steps: int = 500
    eval_steps: int = 500
    save_steps: int = 500
    train_batch_size: int = None
    num_train_epochs: int = 0
    num_input_tokens_seen: int = 0
    total_flos: float = 0
    log_history: list = None
    best_metric: float = None
    best_global_step: int = None
    best_model_checkpoint: str = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str = None
    trial_params: dict = None
    stateful_callbacks: dict = None

    def __post_init__(self):
        if self.log_history is None:
            self.log_history = []
        if self.stateful_callbacks is None:
            self.stateful_callbacks = {}

    def save_to_json(self, path):
        """Strict JSON: a non-finite metric (a diverged loss) is written as null."""
        _write_json(path, _json_safe(dataclasses.asdict(self)))

    @classmethod
    def load_from_json(cls, path):
        data = _read_json(path, "a trainer state (an object with global_step, log_history ...)")
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data.get("log_history", []), list):
            raise ValueError(f"{path}: log_history must be a list, got {type(data['log_history']).__name__}")
        return cls(**{k: v for k, v in data.items() if k in names})


class _FiniteWatch:
    """A run's view of its losses for Trainer._watch_finite: the loss sum since the last log with
    non-finite losses replaced (HF's filter), the last log step, and whether a non-finite step was
    replaced in this logging window."""

    def __init__(self, since_log, last_log):
        self.filtered = since_log if math.isfinite(since_log) else 0.0
        self.last_log = last_log
        self.replaced = False


@dataclasses.dataclass
class TrainerControl:
    """Flags a callback may set; should_training_stop stops the C loop after this step."""

    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False


class TrainerCallback:
    """transformers.TrainerCallback's events that lorafast raises: each gets (args, state,
    control, **kwargs) and may return a TrainerControl."""

    def on_train_begin(self, args, state, control, **kwargs): pass
    def on_train_end(self, args, state, control, **kwargs): pass
    def on_epoch_end(self, args, state, control, **kwargs): pass
    def on_step_end(self, args, state, control, **kwargs): pass
    def on_evaluate(self, args, state, control, **kwargs): pass
    def on_predict(self, args, state, control, **kwargs): pass
    def on_save(self, args, state, control, **kwargs): pass
    def on_log(self, args, state, control, **kwargs): pass


def _sorted_checkpoints(folder):
    """The checkpoint-N folders of output_dir, by increasing N."""
    if not os.path.isdir(folder):
        return []
    found = sorted((int(m.group(1)), os.path.join(folder, name)) for name in os.listdir(folder)
                   if (m := _CHECKPOINT_RE.match(name)) and os.path.isdir(os.path.join(folder, name)))
    return [path for _, path in found]


def get_last_checkpoint(folder):
    """The checkpoint-N folder of output_dir with the largest N, or None (transformers' rule)."""
    found = _sorted_checkpoints(folder)
    return found[-1] if found else None


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text(path, text):  # fsync'd with the rest of its checkpoint
    with open(path, "w") as f:
        f.write(text)


def _write_json(path, obj):
    _write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _read_json(path, what="a JSON object"):
    """The JSON object in path; a ValueError naming the file when it is empty, cut or not an object."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        state = "is empty" if not text.strip() else f"is not valid JSON ({e})"
        raise ValueError(f"{path} {state}: the file was cut short or damaged; expected {what}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected {what}, got a JSON {type(data).__name__}")
    return data


def _json_safe(obj):
    """obj with every non-finite float (NaN, +-Infinity, numpy's too) as None: strict JSON, where
    json.dumps would write the bare NaN / Infinity that JSON parsers other than Python's refuse."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _dump_strict_json(obj, f, **kwargs):
    json.dump(_json_safe(obj), f, allow_nan=False, **kwargs)


# ---- one run per output_dir ---------------------------------------------------------------------

def _process_alive(pid):
    """Whether process pid exists (this one included); a temporary folder of a live writer is kept."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):  # not a PID this system can have
        return False
    return True


def _dir_in_use(out, path):
    try:
        with open(path) as f:
            holder = f.read().strip()
    except OSError:
        holder = ""
    who = (f"process {holder}" + (" (this process: another Trainer is training into it)"
                                  if holder == str(os.getpid()) else "")) if holder else "another process"
    return RuntimeError(f"output_dir {out!r} is in use by another run: {who} holds the lock {path}. Two runs "
                        "writing into one output_dir would mix their checkpoints: wait for it to end or choose "
                        "another output_dir.")


def _acquire_dir_lock(out):
    """An exclusive, non-blocking fcntl.flock on output_dir/.lorafast.lock, the file holding our PID: the
    file descriptor, or a RuntimeError naming the PID of the run that holds it. The lock goes with the
    process (a killed run holds nothing); None where the file system has no flock (with a warning)."""
    import fcntl

    path = os.path.join(out, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _dir_in_use(out, path) from None
        except OSError as e:
            os.close(fd)
            warnings.warn(f"output_dir {out!r} cannot be locked ({e}): a second run into it would not be detected",
                          UserWarning, stacklevel=3)
            return None
        try:  # the holder we followed may have removed the file on release: lock the one at path now
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _release_dir_lock(fd, out):
    """Removes the lock file (still holding it, so no run locks a file that is gone) and unlocks."""
    path = os.path.join(out, LOCK_NAME)
    try:
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            os.remove(path)
    except OSError:
        pass
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _check_dir_lock(out):
    """A RuntimeError naming the holder when a run holds output_dir's lock now (before any work)."""
    import fcntl

    path = os.path.join(out, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:  # no lock file: no run holds it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _dir_in_use(out, path) from None
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- datasets -> (ids, offsets, labels) ------------------------------------------------------

def _is_hf_dataset(data):
    return type(data).__module__.startswith("datasets.") and hasattr(data, "with_format")


def _column_names(data):
    if isinstance(data, dict):
        return list(data)
    if isinstance(data, (list, tuple)):
        return list(data[0]) if data and isinstance(data[0], dict) else []
    return list(getattr(data, "column_names", []))


def _column(data, name, what):
    """The column's values: a pyarrow array for a datasets.Dataset, else a sequence of rows."""
    if _is_hf_dataset(data):
        return data.with_format("arrow")[name]
    if isinstance(data, (list, tuple)):
        values = [row.get(name) for row in data]
        if any(v is None for v in values):
            raise ValueError(f"{what}: example {values.index(None)} has no {name!r}")
        return values
    if hasattr(data, "column") and not isinstance(data, dict):
        return data.column(name)
    return data[name]


def _integers(flat, offsets, what):
    """flat (any dtype) as int64, or a ValueError naming the first value that is not an integer (a float
    such as 2.5, which a cast would truncate, a None, a string) or does not fit int64."""
    flat = np.asarray(flat)
    if flat.dtype.kind == "i" or (flat.dtype.kind == "u" and not (flat.size and flat.max() > np.iinfo(np.int64).max)):
        return flat.astype(np.int64, copy=False)
    if flat.dtype.kind == "u":
        i = int(np.argmax(flat > np.iinfo(np.int64).max))
    elif flat.dtype.kind == "f":
        fractional = np.flatnonzero(~np.isfinite(flat) | (flat != np.trunc(flat)))
        i = int(fractional[0]) if fractional.size else 0
    else:  # object: the first value that is not an int within int64 (the error path only)
        i = next((j for j, v in enumerate(flat.tolist()) if isinstance(v, bool) or not isinstance(v, int)
                  or not -2**63 <= v < 2**63), 0)
    example = int(np.searchsorted(offsets, i, side="right") - 1)
    value = flat[i].item() if hasattr(flat[i], "item") else flat[i]
    raise ValueError(f"{what}: example {example} holds {value!r} at position {i - int(offsets[example])}: token ids "
                     f"must be integers (got {flat.dtype} values, which lorafast does not round)")


def _ragged(values, what, integers=True):
    """(flat int64 values, int64 offsets (n+1,)) of a column of int sequences; with integers=True a value
    that is not an integer is an error naming it (integers=False: cast, for masks)."""
    if hasattr(values, "chunks") or hasattr(values, "offsets"):  # pyarrow ChunkedArray / ListArray
        values = values.combine_chunks() if hasattr(values, "chunks") else values
        offsets = np.asarray(values.offsets, np.int64)
        offsets = offsets - offsets[0]
        flat = np.asarray(values.flatten())
        return (_integers(flat, offsets, what) if integers else flat.astype(np.int64)), offsets
    if isinstance(values, np.ndarray) and values.ndim == 2:
        n, width = values.shape
        offsets = np.arange(n + 1, dtype=np.int64) * width
        flat = values.reshape(-1)
        return (_integers(flat, offsets, what) if integers else flat.astype(np.int64)), offsets
    if hasattr(values, "numpy") and getattr(values, "ndim", 0) == 2:  # a torch tensor
        return _ragged(values.numpy(), what, integers)
    text = next((i for i, v in enumerate(values) if isinstance(v, (str, bytes))), None)
    if text is not None:
        raise ValueError(f"{what}: example {text} is the text {values[text][:40]!r}, not a sequence of token ids: "
                         "tokenize it first")
    try:
        lengths = np.fromiter(map(len, values), np.int64, count=len(values))
    except TypeError as e:
        bad = next(i for i, v in enumerate(values) if not hasattr(v, "__len__"))
        raise ValueError(f"{what}: example {bad} is {values[bad]!r}, not a sequence of token ids") from e
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if not integers:
        return np.fromiter(itertools.chain.from_iterable(values), np.int64, count=int(offsets[-1])), offsets
    rows = [np.asarray(v).reshape(-1) for v in values]  # each row's own dtype: a float stays a float
    flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    return _integers(flat, offsets, what), offsets


def _labels_of(data, name, what):
    values = _column(data, name, what)
    if hasattr(values, "to_pylist"):  # pyarrow
        values = values.to_pylist()
    elif hasattr(values, "numpy"):  # a torch tensor
        values = values.numpy()
    labels = np.asarray(values)
    if labels.dtype == object and any(v is None for v in labels):
        i = next(i for i, v in enumerate(labels) if v is None)
        raise ValueError(f"{what}: example {i} has no label ({name} is None)")
    if labels.ndim != 1 or labels.dtype.kind not in "iub":
        raise ValueError(f"{what}: column {name!r} must hold one integer class id per example, got {labels.dtype} "
                         f"with shape {labels.shape}")
    if labels.dtype.kind != "b" and labels.size:  # the C loop's labels are int32: a cast would wrap 2**32 + 1 to 1
        outside = (labels < np.iinfo(np.int32).min) | (labels > np.iinfo(np.int32).max)
        if outside.any():
            i = int(np.argmax(outside))
            raise ValueError(f"{what}: example {i} has {name} {labels[i].item()}, not a class id (labels must be in "
                             "[0, num_labels))")
    return labels.astype(np.int32)


class _Encoded:
    """A tokenized dataset as the C loop takes it: ids (int32), offsets (int64), labels (int32 | None)."""

    def __init__(self, data, what, need_labels):
        if data is None:
            raise ValueError(f"{what} is None")
        names = _column_names(data)
        if not names and not isinstance(data, (list, tuple, dict)) and not hasattr(data, "column_names"):
            raise TypeError(f"{what} must be a lorafast or datasets Dataset, a list of dicts or a dict of columns, "
                            f"got {type(data).__name__}")
        n = len(next(iter(data.values()), [])) if isinstance(data, dict) else len(data)
        if n == 0:
            raise ValueError(f"{what} is empty")
        if "input_ids" not in names:
            raise ValueError(f"{what} has no 'input_ids' column (columns: {names}): tokenize it first, e.g. "
                             f"dataset.map(lambda ex: tokenizer(ex['text'], truncation=True), batched=True)")
        ids, offsets = _ragged(_column(data, "input_ids", what), f"{what}['input_ids']")
        if "attention_mask" in names:
            mask, mask_offsets = _ragged(_column(data, "attention_mask", what), f"{what}['attention_mask']",
                                         integers=False)
            if not np.array_equal(mask_offsets, offsets):
                raise ValueError(f"{what}: attention_mask and input_ids differ in length")
            keep = mask != 0
            if not keep.all():  # drop masked tokens: the C loop pads each batch itself
                kept = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
                ids, offsets = ids[keep], kept[offsets]
        if "token_type_ids" in names:
            types, _ = _ragged(_column(data, "token_type_ids", what), f"{what}['token_type_ids']")
            if types.any():
                raise NotImplementedError(f"{what}: non-zero token_type_ids (sentence pairs) are not supported by "
                                          f"lorafast's training loop")
        if ids.size and (ids.min() < np.iinfo(np.int32).min or ids.max() > np.iinfo(np.int32).max):
            bad = ids[(ids < np.iinfo(np.int32).min) | (ids > np.iinfo(np.int32).max)][0]
            raise ValueError(f"{what}: token id {bad} is outside the vocabulary (it does not even fit in int32)")
        self.ids = ids.astype(np.int32)
        self.offsets = offsets
        label_name = next((n for n in _LABEL_COLUMNS if n in names), None)
        if label_name is None and need_labels:
            raise ValueError(f"{what} has no label column (one of {list(_LABEL_COLUMNS)}; columns: {names}): "
                             f"rename it, e.g. dataset.rename_column('target', 'label')")
        self.labels = None if label_name is None else _labels_of(data, label_name, what)
        self.n = len(offsets) - 1

    @property
    def num_tokens(self):
        return int(self.offsets[-1])


# ---- progress and the epoch table -------------------------------------------------------------

def _in_notebook():
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _format_value(v):
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


class _EvalTable:
    """The table HF's notebook callback shows at each evaluation: Epoch (or Step), Training Loss,
    Validation Loss, then each metric. Text in a terminal, an HTML table updated in place in Jupyter."""

    def __init__(self, first_column, write):
        self.first_column = first_column
        self.write = write
        self.columns = None
        self.rows = []
        self.handle = None

    def add(self, state, metrics):
        row = {self.first_column: int(state.epoch) if self.first_column == "Epoch" else state.global_step,
               "Training Loss": "No log", "Validation Loss": metrics.get("eval_loss", "No log")}
        for log in reversed(state.log_history):
            if "loss" in log:
                row["Training Loss"] = log["loss"]
                break
        for key, value in metrics.items():
            if key == "eval_loss" or key.endswith(("_runtime", "_samples_per_second", "_steps_per_second")) \
                    or key in ("epoch", "step"):
                continue
            parts = key.split("_")[1:] if key.startswith("eval_") else key.split("_")
            row[" ".join(p.capitalize() for p in parts)] = value
        if self.columns is None:
            self.columns = list(row)
        self.rows.append([_format_value(row.get(c, "")) for c in self.columns])
        self._show()

    def _show(self):
        if _in_notebook():
            from IPython.display import HTML, display

            head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in self.rows)
            table = HTML(f"<table border='1' class='dataframe'><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
                         "</table>")
            if self.handle is None:
                self.handle = display(table, display_id=True)
            else:
                self.handle.update(table)
            return
        widths = [max(len(c), 12) for c in self.columns]
        if len(self.rows) == 1:
            self.write(" | ".join(c.ljust(w) for c, w in zip(self.columns, widths)))
        self.write(" | ".join(v.ljust(w) for v, w in zip(self.rows[-1], widths)))


def _progress_bar(total, initial, disable, desc="train", leave=True):
    if disable:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=leave)


# ---- a compute_loss override: the loss of C's logits in torch ----------------------------------

def _import_torch(trainer_name):
    try:
        import torch
    except ImportError:
        raise TypeError(
            f"{trainer_name} overrides compute_loss, which needs torch (its loss is torch code): install torch, or "
            "for a class-weighted cross-entropy (torch.nn.CrossEntropyLoss(weight=w)) drop the override and pass "
            "class_weights=[w_0, w_1, ...] to the Trainer.") from None
    return torch


def _padded_batch(enc, rows, pad_token_id):
    """Examples `rows` of an _Encoded as DataCollatorWithPadding pads them: ids, mask (B, L) int64."""
    starts, lengths = enc.offsets[rows], enc.offsets[rows + 1] - enc.offsets[rows]
    columns = np.arange(lengths.max())
    real = columns[None, :] < lengths[:, None]
    ids = np.full(real.shape, pad_token_id, np.int64)
    ids[real] = enc.ids[(starts[:, None] + columns[None, :])[real]]
    return ids, real.astype(np.int64)


class _LogitsLoss:
    """Runs the Trainer's compute_loss on logits computed in C: model(**inputs) inside it returns them
    (a torch tensor, requiring grad in training) instead of running the model again."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.torch = _import_torch(type(trainer).__name__)
        self.data = self.pad = None  # the _Encoded being trained on, the pad id of its batches

    def pad_id(self):
        """What batches are padded with: the model's pad id (what lf_unpad_batch drops)."""
        return max(int(self.trainer.model.config.c_config()["pad_token_id"]), 0)

    def start(self, data):
        """A training run over data begins."""
        self.data, self.pad = data, self.pad_id()

    def inputs(self, enc, rows, pad):
        """HF's collated inputs of examples `rows`: padded as DataCollatorWithPadding pads them, int64
        torch tensors."""
        ids, mask = _padded_batch(enc, rows, pad)
        t, device = self.torch, self.device()
        return {"input_ids": t.from_numpy(ids).to(device), "attention_mask": t.from_numpy(mask).to(device),
                "labels": t.from_numpy(enc.labels[rows].astype(np.int64)).to(device)}

    def device(self):
        """Where the step's torch tensors live, as HF's Trainer puts its inputs: the model's GPU when
        torch can use it, else the CPU."""
        device = self.trainer.model.device
        return device if device.startswith("cuda") and self.torch.cuda.is_available() else "cpu"

    def call(self, inputs, logits, return_outputs):
        trainer = self.trainer
        with trainer.model.base_model.serving_logits(logits, tuple(inputs["input_ids"].shape)):
            result = trainer.compute_loss(trainer.model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=None)
        loss = result[0] if return_outputs else result
        if not self.torch.is_tensor(loss) or loss.numel() != 1:
            raise TypeError(f"{type(trainer).__name__}.compute_loss must return a scalar torch tensor "
                            f"(the loss), got {type(loss).__name__}")
        return loss

    def train_step(self, rows, logits):
        """Called by the C loop for each micro-batch (rows: its examples): (loss, d loss / d logits)."""
        z = self.torch.from_numpy(logits).to(self.device()).requires_grad_(True)
        loss = self.call(self.inputs(self.data, rows, self.pad), z, False)
        if not loss.requires_grad:
            raise RuntimeError(f"{type(self.trainer).__name__}.compute_loss returned a loss that does not depend "
                               "on the logits of model(**inputs): there is nothing to train")
        loss.backward()
        grad = z.grad if z.grad is not None else self.torch.zeros_like(z)
        return float(loss.detach()), grad.cpu().numpy()

    def eval_loss(self, enc, logits, batch_size):
        """HF's eval loss with the override: each eval batch's loss, averaged over the examples."""
        total, pad = 0.0, self.pad_id()
        with self.torch.no_grad():
            for start in range(0, enc.n, batch_size):
                stop = min(start + batch_size, enc.n)
                inputs = self.inputs(enc, np.arange(start, stop), pad)
                loss = self.call(inputs, self.torch.from_numpy(logits[start:stop]).to(self.device()), True)
                total += float(loss.detach().mean()) * (stop - start)
        return total / enc.n


def _speed_metrics(prefix, start, num_samples=None, num_steps=None):
    runtime = time.time() - start
    out = {f"{prefix}_runtime": round(runtime, 4)}
    if num_samples is not None:
        out[f"{prefix}_samples_per_second"] = round(num_samples / runtime, 3)
    if num_steps is not None:
        out[f"{prefix}_steps_per_second"] = round(num_steps / runtime, 3)
    return out


def _steps_arg(value, max_steps):
    """HF: a *_steps below 1 is a fraction of max_steps."""
    if value is None:
        return None
    return math.ceil(max_steps * value) if value < 1 else int(value)


# ---- the Trainer -------------------------------------------------------------------------------

class Trainer:
    """transformers.Trainer for lorafast PeftModels, with the training loop in C.

    The loss is torch.nn.CrossEntropyLoss(weight=class_weights) (class_weights: one weight per
    label, or None for the plain mean); evaluation uses the same loss.
    """

    def __init__(self, model=None, args=None, train_dataset=None, eval_dataset=None, data_collator=None,
                 compute_metrics=None, class_weights=None, callbacks=None, processing_class=None, tokenizer=None):
        if not isinstance(model, PeftModel):
            raise TypeError("Trainer needs a lorafast PeftModel (lf.get_peft_model(model, LoraConfig(...)) or "
                            f"lf.PeftModel.from_pretrained(..., is_trainable=True)), got {type(model).__name__}")
        if args is None:
            args = TrainingArguments(output_dir="trainer_output")
        self.model = model
        self.args = args
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.processing_class = processing_class if processing_class is not None else tokenizer
        self.data_collator = self._check_collator(data_collator)
        self.compute_metrics = compute_metrics
        self.class_weights = self._check_class_weights(class_weights)
        # a compute_loss override runs in torch on C's logits (class_weights then only as the override uses them)
        self._logits_loss = _LogitsLoss(self) if type(self).compute_loss is not Trainer.compute_loss else None
        self.callbacks = [cb() if isinstance(cb, type) else cb for cb in (callbacks or [])]
        # under a launcher (torchrun, accelerate launch, mpiexec): data parallel, rank 0 alone writes
        self._dp = DataParallel(args)
        self.state = TrainerState(is_local_process_zero=args.local_process_index == 0,
                                  is_world_process_zero=args.process_index == 0)
        self.control = TrainerControl()
        self._encoded = {}
        self._bar = None  # the training progress bar while train() runs
        self._output_lock = None  # (lock file descriptor, output_dir) while train() runs
        if args.eval_strategy != "no" and eval_dataset is None:
            raise ValueError(f"You have set args.eval_strategy to {args.eval_strategy} but you didn't pass an "
                             "`eval_dataset` to `Trainer`. Either set `args.eval_strategy` to `no` or pass an "
                             "`eval_dataset`.")
        self._move_model()
        if args.gradient_checkpointing:
            model.gradient_checkpointing_enable()

    # ---- arguments
    def _move_model(self):
        """The model goes to args.device, as transformers' Trainer places it; it computes in bfloat16 with
        bf16=True (on the CPU as torch.autocast("cpu", dtype=torch.bfloat16) does), on CUDA in float16 with
        dynamic loss scaling with fp16=True (torch.amp.GradScaler's defaults, as HF's Trainer), else float32
        (the trainable tensors and the optimizer stay float32)."""
        args = self.args
        if not args.device.startswith("cuda"):
            if args.fp16:
                warnings.warn("fp16: lorafast's CPU training loop computes in float32 (or bfloat16 with bf16=True); "
                              "the flag is ignored", UserWarning, stacklevel=3)
            self.model.to("cpu", dtype="bfloat16" if args.bf16 else "float32")
            return
        try:
            self.model.to(args.device, dtype="bfloat16" if args.bf16 else "float16" if args.fp16 else "float32")
        except RuntimeError as e:
            if not self._dp.enabled:
                raise
            raise RuntimeError(f"data parallel: rank {args.process_index} has local rank {args.local_process_index} "
                               f"and so computes on {args.device}, one GPU per rank of a machine as in HF's Trainer: "
                               f"{e}") from e

    def _check_collator(self, collator):
        if collator is None or isinstance(collator, DataCollatorWithPadding):
            return collator
        name = getattr(collator, "__name__", None) or type(collator).__name__
        if name in ("DataCollatorWithPadding", "default_data_collator"):
            return collator  # transformers' own: the C loop pads the same way
        raise ValueError(f"data_collator {name} cannot be honoured: lorafast's training loop batches and pads the "
                         "tokenized dataset itself in C (as DataCollatorWithPadding does). Pass data_collator=None "
                         "or DataCollatorWithPadding(tokenizer), and do any other preprocessing in dataset.map().")

    def _check_class_weights(self, class_weights):
        if class_weights is None:
            return None
        w = np.asarray(class_weights, np.float32).reshape(-1)
        n = self.model.config.num_labels
        if w.size != n:
            raise ValueError(f"class_weights has {w.size} values, the model has num_labels={n}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"class_weights must be finite and >= 0, got {w.tolist()}")
        return w

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The loss of a padded batch (numpy), as the C loop computes it: the class-weighted
        cross-entropy. A subclass may override it as in transformers (torch code on the
        `model(**inputs).logits` tensor); the C loop then calls the override on every micro-batch."""
        labels = inputs.get("labels", inputs.get("label"))
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                        labels=labels, class_weights=self.class_weights)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _encode(self, data, what, need_labels):
        key = id(data)
        if key not in self._encoded or self._encoded[key][0] is not data:
            enc = _Encoded(data, what, need_labels)
            labels = enc.labels if need_labels or enc.labels is not None else None
            _C.dataset_check(self.model.c_model, enc.ids, enc.offsets, labels, what)
            self._check_lengths(enc, what)
            self._encoded[key] = (data, enc)
        enc = self._encoded[key][1]
        if need_labels and enc.labels is None:
            raise ValueError(f"{what} has no label column (one of {list(_LABEL_COLUMNS)})")
        return enc

    def _check_lengths(self, enc, what):
        """Every example fits the model's position embeddings (RoBERTa's start after padding_idx)."""
        c = self.model.config.c_config()
        limit = c["max_positions"] - (c["pad_token_id"] + 1 if c.get("position_rule") == 1 else 0)
        lengths = np.diff(enc.offsets)
        if lengths.max() > limit:
            i = int(np.argmax(lengths > limit))
            raise ValueError(f"{what}: example {i} has {lengths[i]} tokens, more than the model's {limit} positions "
                             f"(max_position_embeddings={c['max_positions']}): tokenize with truncation=True, "
                             f"max_length={limit}")

    def _check_output_dir(self):
        out = self.args.output_dir
        try:
            os.makedirs(out, exist_ok=True)
            probe = os.path.join(out, f".lorafast-write-test-{os.getpid()}")
            with open(probe, "w") as f:
                f.write("")
            os.remove(probe)
        except OSError as e:
            raise OSError(f"output_dir {out!r} cannot be written: {e}") from e
        _check_dir_lock(out)  # another run trains into it: fail now (train() takes the lock for the run)
        for name in os.listdir(out):  # what a save that was killed left behind, its writer dead
            m = _TEMP_RE.match(name)
            if not m or _process_alive(int(m.group(3))):
                continue
            final = os.path.join(out, m.group(1))
            if m.group(2) == "old" and not os.path.exists(final):  # killed between the two renames
                os.rename(os.path.join(out, name), final)
            else:
                shutil.rmtree(os.path.join(out, name), ignore_errors=True)

    def _lock_output_dir(self):
        """output_dir is this run's until _unlock_output_dir: a second run fails at once naming our PID."""
        out = self.args.output_dir
        self._output_lock = (_acquire_dir_lock(out), out)

    def _unlock_output_dir(self):
        fd, out = self._output_lock or (None, None)
        self._output_lock = None
        if fd is not None:
            _release_dir_lock(fd, out)

    def _callback(self, event, **kwargs):
        for cb in self.callbacks:
            result = getattr(cb, event, None)
            if result is None:
                continue
            control = result(self.args, self.state, self.control, model=self.model, **kwargs)
            if isinstance(control, TrainerControl):
                self.control = control

    # ---- training
    def _plan(self, train):
        args = self.args
        n = self._dp.epoch_size(train.n, args.per_device_train_batch_size, args.dataloader_drop_last) \
            if self._dp.enabled else train.n
        batches, updates = _C.updates_per_epoch(n, args.per_device_train_batch_size,
                                                bool(args.dataloader_drop_last), args.gradient_accumulation_steps)
        if args.max_steps > 0:
            max_steps = int(args.max_steps)
            epochs = max_steps // updates + int(max_steps % updates > 0)
        else:
            max_steps = math.ceil(args.num_train_epochs * updates)
            epochs = math.ceil(args.num_train_epochs)
        if max_steps < 1:
            raise ValueError(f"num_train_epochs={args.num_train_epochs} and max_steps={args.max_steps} leave no "
                             "training step")
        s = self.state
        s.max_steps, s.num_train_epochs = max_steps, epochs
        s.train_batch_size = args.per_device_train_batch_size
        s.logging_steps = _steps_arg(args.logging_steps, max_steps)
        s.eval_steps = _steps_arg(args.eval_steps, max_steps) or s.logging_steps
        s.save_steps = _steps_arg(args.save_steps, max_steps)
        return dict(
            schedule=args.lr_scheduler_type, batch_size=args.per_device_train_batch_size,
            grad_accum=args.gradient_accumulation_steps, drop_last=int(bool(args.dataloader_drop_last)),
            max_steps=max_steps, warmup_steps=args.get_warmup_steps(max_steps), lr=float(args.learning_rate),
            beta1=float(args.adam_beta1), beta2=float(args.adam_beta2), eps=float(args.adam_epsilon),
            weight_decay=float(args.weight_decay), max_grad_norm=float(args.max_grad_norm or 0.0),
            seed=int(args.data_seed if args.data_seed is not None else args.seed),
            log_every=_EVERY[args.logging_strategy], eval_every=_EVERY[args.eval_strategy],
            save_every=_EVERY[args.save_strategy], log_first_step=int(bool(args.logging_first_step)),
            log_steps=s.logging_steps, eval_steps=s.eval_steps, save_steps=s.save_steps or 0,
            loss_scaling=int(bool(args.fp16) and self.model.device.startswith("cuda")),
        )

    def _params(self):
        return [(name, data) for name, data, _, _ in self.model.c_model.params()]

    def _non_embedding_params(self):
        shapes = self.model.named_parameter_shapes()
        return sum(int(np.prod(s)) for name, s, _ in shapes
                   if "embeddings." not in name and "embed_tokens" not in name)

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """Trains with the C loop; returns TrainOutput(global_step, training_loss, metrics)."""
        if kwargs:
            raise TypeError(f"train() got unexpected keyword arguments: {sorted(kwargs)}")
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        if getattr(self.model, "_inference", False):
            raise ValueError("the model's adapter was loaded with is_trainable=False: it has no trainable "
                             "parameters (use PeftModel.from_pretrained(..., is_trainable=True))")
        args = self.args
        train = self._encode(self.train_dataset, "train_dataset", True)
        evaluating = args.eval_strategy != "no"
        if evaluating:
            self._encode(self.eval_dataset, "eval_dataset", True)
        if args.should_save:
            self._check_output_dir()
        config = self._plan(train)
        config["compute_loss"] = None
        if self._dp.enabled:
            config["epoch_order"], config["epoch_size"] = self._dp.epoch_order(
                train.n, config["seed"], args.per_device_train_batch_size, args.dataloader_drop_last)
            config["grad_reduce"] = self._dp.gradient_all_reduce(lambda: self._loop["global_step"])
            if self._dp.on_device:
                c_model = self.model.c_model
                if c_model.device != "cuda":
                    raise ValueError("ddp_backend='nccl' all-reduces the gradients on the GPU: the model must train "
                                     "on CUDA (a GPU and use_cpu=False); on the CPU use ddp_backend='gloo'")
                self._dp.nccl_setup(c_model, c_model.device_index)
                config["grad_reduce_device"] = True
        if self._logits_loss is not None:
            self._logits_loss.start(train)
            config["compute_loss"] = self._logits_loss.train_step
        numel = sum(d.size for _, d in self._params())
        # the loop's state by name (csrc/python/bind_train.c: C reads it and writes it back at each callback)
        self._loop = {**dict.fromkeys(_COUNTERS, 0), "loss_total": 0.0, "loss_since_log": 0.0,
                      "loss_scale": LOSS_SCALE_INIT, "exp_avg": np.zeros(numel, np.float32),
                      "exp_avg_sq": np.zeros(numel, np.float32)}
        self._finite_watch = _FiniteWatch(0.0, 0)
        self.first_nonfinite_step = None  # the step of this run whose loss or gradient norm was first inf/NaN
        self._config = config
        self._dropout_seed = int(args.seed)
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"No valid checkpoint found in output directory ({args.output_dir})")
        if resume_from_checkpoint:
            self._load_checkpoint(os.fspath(resume_from_checkpoint), train)
        else:
            self.state.log_history = []
            self.state.epoch, self.state.global_step = 0, 0
            self.state.best_metric = self.state.best_global_step = self.state.best_model_checkpoint = None
            self.state.total_flos = 0
        # each rank its own dropout masks (its stream seeded by seed + rank; rank 0's are a single process's)
        self.model.c_model.set_mode(True, self._dropout_seed + args.process_index)
        self._train_tokens, self._train_n = train.num_tokens, train.n
        self._flops_per_token = 6 * self._non_embedding_params()
        self._table = _EvalTable("Epoch" if args.eval_strategy == "epoch" else "Step", self._write)
        self._last = {"grad_norm": None, "learning_rate": None}
        was_training = self.model.training
        self._bar = _progress_bar(config["max_steps"], self._loop["global_step"],
                                  args.disable_tqdm or not self.state.is_local_process_zero)
        self._start = time.time()
        self.control = TrainerControl()
        self._callback("on_train_begin")
        try:
            if args.should_save:
                self._lock_output_dir()
            _C.train_run(self.model.c_model, (train.ids, train.offsets, train.labels), state=self._loop,
                         config=config, callback=self._on_event, class_weights=self.class_weights)
        finally:
            self._unlock_output_dir()
            self._sync_state()
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self.model.c_model.set_mode(was_training, self.model._seed)
        return self._finish(train)

    def _write(self, line):
        if not self.state.is_world_process_zero:
            return
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line)

    def _sync_state(self):
        self.state.global_step = self._loop["global_step"]
        self.state.total_flos = float(self._flops_per_token * self._train_tokens *
                                      (self.state.epoch or 0.0))

    def _on_event(self, ev):
        """Called by the C loop (with the GIL) after each update and at each epoch end; True stops it."""
        self._watch_finite(ev)
        self.state.epoch = ev["epoch"]
        self._sync_state()
        self.control = TrainerControl()
        if ev["epoch_end"]:
            self._callback("on_epoch_end")
        else:
            self._last = {"grad_norm": ev["grad_norm"], "learning_rate": ev["learning_rate"]}
            if self._bar is not None:
                self._bar.update(1)
            self._callback("on_step_end")
        if ev["should_log"]:
            self.log({"loss": ev["loss"], **self._last})
        if ev["should_evaluate"] or self.control.should_evaluate:  # a callback may ask for either
            metrics = self._evaluate_in_training()
            self._update_best(metrics)
        if ev["should_save"] or self.control.should_save:
            self._save_checkpoint()
            self._callback("on_save")
        return bool(self.control.should_training_stop)

    def _watch_finite(self, ev):
        """After each update: one warning per run at the first non-finite training loss or gradient norm,
        naming the step; and transformers' logging_nan_inf_filter: a non-finite update's loss counts as
        (the window's earlier losses) / (its place in the logging window), so ev["loss"], the logged mean,
        is replaced where its window had one."""
        w, step = self._finite_watch, ev["global_step"]
        if not ev["epoch_end"]:
            loss, norm = ev["step_loss"], ev["grad_norm"]
            bad_norm = not ev["skipped"] and not math.isfinite(norm)  # fp16 skips inf steps by design
            if (bad_norm or not math.isfinite(loss)) and self.first_nonfinite_step is None:
                self.first_nonfinite_step = step
                warnings.warn(f"step {step}: the training loss is {loss} and the gradient norm {norm}: training "
                              "has diverged (a learning_rate, lora_alpha or class weight too large, or fp16 "
                              "overflow); later non-finite steps are not reported again", RuntimeWarning,
                              stacklevel=2)
            if not math.isfinite(loss) and self.args.logging_nan_inf_filter:
                loss = w.filtered / (step - w.last_log)  # transformers: tr_loss += tr_loss / (1 + step - last)
                w.replaced = True
            w.filtered += loss
        if ev["should_log"]:
            if w.replaced:
                ev["loss"] = w.filtered / (step - w.last_log)
            w.filtered = 0.0
            w.replaced = False
            w.last_log = step

    def _finish(self, train):
        args, state = self.args, self.state
        if args.load_best_model_at_end and state.best_model_checkpoint is not None:
            self._dp.barrier()  # rank 0 has written it
            logger.info(f"Loading best model from {state.best_model_checkpoint} (score: {state.best_metric}).")
            self.model.load_adapter_weights(state.best_model_checkpoint)
        num_samples = state.max_steps * args.per_device_train_batch_size * args.gradient_accumulation_steps \
            if args.max_steps > 0 else train.n * args.num_train_epochs
        metrics = _speed_metrics("train", self._start, num_samples=num_samples, num_steps=state.max_steps)
        train_loss = float(self._loop["loss_total"]) / max(state.global_step, 1)
        metrics["total_flos"] = state.total_flos
        metrics["train_loss"] = train_loss
        self.log(metrics)
        self._callback("on_train_end")
        return TrainOutput(state.global_step, train_loss, metrics)

    def log(self, logs, start_time=None):
        if self.state.epoch is not None:
            logs["epoch"] = self.state.epoch
        entry = {**logs, "step": self.state.global_step}
        self.state.log_history.append(entry)
        if "tensorboard_json" in self.args.report_to and self.args.should_save:
            os.makedirs(self.args.logging_dir, exist_ok=True)
            with open(os.path.join(self.args.logging_dir, LOG_FILE), "a") as f:
                f.write(json.dumps(entry) + "\n")
        self._callback("on_log", logs=logs)

    def _update_best(self, metrics):
        args, state = self.args, self.state
        if args.metric_for_best_model is None:
            return
        key = args.metric_for_best_model
        key = key if key.startswith("eval_") else f"eval_{key}"
        if key not in metrics:
            raise KeyError(f"The `metric_for_best_model` training argument is set to '{key}', which is not found in "
                           f"the evaluation metrics. The available evaluation metrics are: {list(metrics)}. Consider "
                           "changing the `metric_for_best_model` via the TrainingArguments.")
        better = np.greater if args.greater_is_better else np.less
        if state.best_metric is None:
            state.best_metric = float("-inf") if args.greater_is_better else float("inf")
        if better(metrics[key], state.best_metric):
            state.best_metric = float(metrics[key])
            if args.save_strategy != "no":
                state.best_global_step = state.global_step

    # ---- checkpoints
    def _save_checkpoint(self):
        """output_dir/checkpoint-N: the adapter (peft format), optimizer moments, scheduler, loop and RNG
        state, trainer_state.json. Written into a temporary folder renamed into place."""
        args, state = self.args, self.state
        out = args.output_dir
        name = f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        final = os.path.join(out, name)
        tmp = os.path.join(out, f".{name}.tmp-{os.getpid()}")
        if state.best_global_step:
            best = os.path.join(out, f"{PREFIX_CHECKPOINT_DIR}-{state.best_global_step}")
            if state.best_global_step == state.global_step or os.path.exists(best):
                state.best_model_checkpoint = best
        if not args.should_save:  # the other ranks: the bookkeeping only, rank 0 writes
            return
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            self.model.save_pretrained(tmp)
            if not args.save_only_model:
                self._save_optimizer_and_loop(tmp)
            state.stateful_callbacks = {"TrainerControl": {"args": dataclasses.asdict(self.control), "attributes": {}}}
            state.save_to_json(os.path.join(tmp, TRAINER_STATE_NAME))
            _write_text(os.path.join(tmp, TRAINING_ARGS_NAME), args.to_json_string() + "\n")
            for f in os.listdir(tmp):
                _fsync(os.path.join(tmp, f))
            if os.path.exists(final):  # saved again at the same step: swap it out
                old = os.path.join(out, f".{name}.old-{os.getpid()}")
                os.rename(final, old)
                os.rename(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
            _fsync(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._rotate_checkpoints()

    def _save_optimizer_and_loop(self, folder):
        """AdamW moments, the schedule, and the loop's counters, loss sums and RNG seeds."""
        step, c = self.state.global_step, self._config
        moments, offset = {}, 0
        for pname, data in self._params():
            for key in ("exp_avg", "exp_avg_sq"):
                moments[f"{pname}.{key}"] = self._loop[key][offset:offset + data.size].reshape(data.shape)
            offset += data.size
        write_safetensors(moments, os.path.join(folder, OPTIMIZER_NAME), metadata={"step": str(step)})
        _write_json(os.path.join(folder, SCHEDULER_NAME), {
            "lr_scheduler_type": c["schedule"], "base_lr": c["lr"], "warmup_steps": c["warmup_steps"],
            "max_steps": c["max_steps"], "last_epoch": step})
        _write_json(os.path.join(folder, LOOP_STATE_NAME), {
            **{k: int(self._loop[k]) for k in _COUNTERS},
            **{k: float(self._loop[k]) for k in ("loss_total", "loss_since_log", "loss_scale")},
            "data_seed": c["seed"], "dropout_seed": self._dropout_seed, "num_examples": self._train_n,
            "batch_size": c["batch_size"], "grad_accum": c["grad_accum"], "drop_last": c["drop_last"]})

    def _rotate_checkpoints(self):
        """save_total_limit as transformers: delete the oldest, never the best (nor the last when the
        limit is 1 and the best is older)."""
        limit = self.args.save_total_limit
        if limit is None or limit <= 0:
            return
        ckpts = _sorted_checkpoints(self.args.output_dir)
        best = self.state.best_model_checkpoint
        if best is not None and best in ckpts:
            i = ckpts.index(best)
            for j in range(i, len(ckpts) - 2):
                ckpts[j], ckpts[j + 1] = ckpts[j + 1], ckpts[j]
        if limit == 1 and best is not None and ckpts and ckpts[-1] != best:
            limit = 2
        for path in ckpts[:max(0, len(ckpts) - limit)]:
            shutil.rmtree(path, ignore_errors=True)

    def _load_checkpoint(self, folder, train):
        for f in (TRAINER_STATE_NAME, OPTIMIZER_NAME, LOOP_STATE_NAME):
            if not os.path.isfile(os.path.join(folder, f)):
                raise OSError(f"{folder} is not a lorafast checkpoint: {f} is missing")
        loop_path = os.path.join(folder, LOOP_STATE_NAME)
        loop = _read_json(loop_path, "the loop state (counters, loss sums, seeds)")
        missing = [k for k in ("num_examples", "batch_size", "grad_accum", "drop_last", "data_seed", "loss_total",
                               "loss_since_log", "dropout_seed", "global_step", "epoch") if k not in loop]
        if missing:
            raise ValueError(f"{loop_path}: no {', '.join(map(repr, missing))}: not a lorafast loop state, or damaged")
        c = self._config
        for key, now in (("num_examples", train.n), ("batch_size", c["batch_size"]),
                         ("grad_accum", c["grad_accum"]), ("drop_last", c["drop_last"])):
            if loop[key] != now:
                raise ValueError(f"cannot resume from {folder}: it was trained with {key}={loop[key]}, now {now}")
        if loop["data_seed"] != c["seed"]:
            warnings.warn(f"resuming from {folder} with data seed {c['seed']}, it was trained with "
                          f"{loop['data_seed']}: the remaining epochs are shuffled differently", UserWarning,
                          stacklevel=3)
        self.model.load_adapter_weights(folder)
        moments = {k: a for k, (a, _) in read_safetensors(os.path.join(folder, OPTIMIZER_NAME)).items()}
        offset = 0
        for pname, data in self._params():
            for key, dst in ((f"{pname}.exp_avg", self._loop["exp_avg"]),
                             (f"{pname}.exp_avg_sq", self._loop["exp_avg_sq"])):
                if key not in moments or moments[key].size != data.size:
                    raise ValueError(f"{folder}/{OPTIMIZER_NAME} has no {key} of {data.size} values")
                values = np.asarray(moments[key], np.float32).reshape(-1)
                bad = ~np.isfinite(values) | ((values < 0) if key.endswith("_sq") else False)
                if bad.any():  # AdamW would train on it to NaN
                    i = int(np.argmax(bad))
                    raise ValueError(f"cannot resume from {folder}: {OPTIMIZER_NAME} holds {key}[{i}] = {values[i]}; "
                                     f"AdamW's moments are finite{' and >= 0' if key.endswith('_sq') else ''} (the "
                                     "run had diverged or the file is damaged: resume from an earlier checkpoint)")
                dst[offset:offset + data.size] = values
            offset += data.size
        self._loop.update({k: int(loop.get(k, 0)) for k in _COUNTERS})  # older checkpoints: no skipped steps
        self._loop.update(loss_total=float(loop["loss_total"]), loss_since_log=float(loop["loss_since_log"]),
                          loss_scale=float(loop.get("loss_scale", LOSS_SCALE_INIT)))
        self._dropout_seed = int(loop["dropout_seed"])
        self._finite_watch = _FiniteWatch(self._loop["loss_since_log"], self._loop["last_log_step"])
        saved = TrainerState.load_from_json(os.path.join(folder, TRAINER_STATE_NAME))
        for f in ("log_history", "best_metric", "best_global_step", "best_model_checkpoint", "total_flos",
                  "epoch", "global_step"):
            setattr(self.state, f, getattr(saved, f))

    # ---- evaluation and prediction
    def _predict_logits(self, enc, batch_size, prefix):
        """The logits (n, num_labels) and the class-weighted eval loss (None without labels), computed
        in C a chunk of batches at a time, with a progress bar (HF's prediction bar). Data parallel: sharded."""
        if self._dp.enabled and self._dp.shards_evaluation:
            return self._predict_logits_sharded(enc, batch_size, prefix)
        n_batches = math.ceil(enc.n / batch_size)
        chunk = max(1, min(64, n_batches // 20 or 1)) * batch_size  # about 20 bar updates
        bar = _progress_bar(n_batches, 0, self.args.disable_tqdm or not self.state.is_local_process_zero, desc=prefix,
                            leave=self._bar is None)
        parts, loss_sum = [], 0.0
        try:
            for start in range(0, enc.n, chunk):
                stop = min(start + chunk, enc.n)
                a, b = enc.offsets[start], enc.offsets[stop]
                labels = None if enc.labels is None else enc.labels[start:stop]
                logits, loss = _C.predict(self.model.c_model, enc.ids[a:b], enc.offsets[start:stop + 1] - a, labels,
                                          batch_size, self.class_weights)
                parts.append(logits)
                loss_sum += 0.0 if loss is None else loss * (stop - start)
                if bar is not None:
                    bar.update(math.ceil((stop - start) / batch_size))
        finally:
            if bar is not None:
                bar.close()
        return np.concatenate(parts), (None if enc.labels is None else loss_sum / enc.n)

    def _predict_logits_sharded(self, enc, batch_size, prefix):
        """_predict_logits over the ranks, as HF's evaluation under torchrun shards it: the eval batches in order,
        batch i computed by rank i % world_size (accelerate's BatchSamplerShard), the logits and the batches' loss
        sums gathered on every rank and put back in order (gather_for_metrics): the same batches, so the same
        logits and loss as one process, and every rank has them (the same metrics, the same decisions)."""
        dp, n = self._dp, enc.n
        n_batches = math.ceil(n / batch_size)
        mine = range(dp.rank, n_batches, dp.world_size)
        bar = _progress_bar(len(mine), 0, self.args.disable_tqdm or not self.state.is_local_process_zero, desc=prefix,
                            leave=self._bar is None)
        parts, loss_sums = [], []
        try:
            for i in mine:
                start, stop = i * batch_size, min((i + 1) * batch_size, n)
                a, b = enc.offsets[start], enc.offsets[stop]
                labels = None if enc.labels is None else enc.labels[start:stop]
                logits, loss = _C.predict(self.model.c_model, enc.ids[a:b], enc.offsets[start:stop + 1] - a, labels,
                                          batch_size, self.class_weights)
                parts.append(logits)
                loss_sums.append(0.0 if loss is None else loss * (stop - start))
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        gathered = dp.gather((parts, loss_sums))
        batches = [gathered[i % dp.world_size][0][i // dp.world_size] for i in range(n_batches)]
        total = sum(gathered[i % dp.world_size][1][i // dp.world_size] for i in range(n_batches))  # batch order
        return np.concatenate(batches), (None if enc.labels is None else total / n)

    def _prediction_loop(self, data, what, prefix):
        enc = self._encode(data, what, False)
        start = time.time()
        bs = self.args.per_device_eval_batch_size
        logits, loss = self._predict_logits(enc, bs, prefix)
        if loss is not None and self._logits_loss is not None:
            loss = self._logits_loss.eval_loss(enc, logits, bs)
        label_ids = None if enc.labels is None else enc.labels.astype(np.int64)  # HF's labels are int64
        metrics = {}
        if label_ids is not None and self.compute_metrics is not None:
            metrics = dict(self.compute_metrics(EvalPrediction(predictions=logits, label_ids=label_ids)))
        if loss is not None:
            metrics[f"{prefix}_loss"] = loss
        for key in list(metrics):
            if not key.startswith(f"{prefix}_"):
                metrics[f"{prefix}_{key}"] = metrics.pop(key)
        metrics.update(_speed_metrics(prefix, start, num_samples=enc.n, num_steps=math.ceil(enc.n / bs)))
        return PredictionOutput(logits, label_ids, metrics)

    def _evaluate_in_training(self):
        metrics = self.evaluate()
        self._table.add(self.state, metrics)
        return metrics

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        """Metrics of eval_dataset (default: the Trainer's) with the prefix; logged to state.log_history."""
        data = self.eval_dataset if eval_dataset is None else eval_dataset
        if data is None:
            raise ValueError("Trainer: evaluation requires an eval_dataset.")
        out = self._prediction_loop(data, "eval_dataset", metric_key_prefix)
        self.log(out.metrics)  # adds "epoch", as HF's
        self._callback("on_evaluate", metrics=out.metrics)
        return out.metrics

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test"):
        """PredictionOutput(predictions=logits, label_ids, metrics) of test_dataset."""
        out = self._prediction_loop(test_dataset, "test_dataset", metric_key_prefix)
        self._callback("on_predict", metrics=out.metrics)
        return out

    def add_callback(self, callback):
        self.callbacks.append(callback() if isinstance(callback, type) else callback)

    def is_world_process_zero(self):
        return self.args.process_index == 0

    def is_local_process_zero(self):
        return self.args.local_process_index == 0

    @staticmethod
    def metrics_format(metrics):
        """Metrics made readable as transformers does: runtimes as h:mm:ss.cc, total_flos in GF, floats rounded."""
        out = dict(metrics)
        for k, v in out.items():
            if "_runtime" in k:
                out[k] = f"{datetime.timedelta(seconds=int(v))}.{int(abs(v - int(v)) * 100):02d}"
            elif k == "total_flos":
                out[k] = f"{int(v) >> 30}GF"
            elif isinstance(v, float):
                out[k] = round(v, 4)
        return out

    def log_metrics(self, split, metrics):
        if not self.is_world_process_zero():
            return
        print(f"***** {split} metrics *****")
        formatted = self.metrics_format(metrics)
        k_width = max(len(str(k)) for k in formatted)
        v_width = max(len(str(v)) for v in formatted.values())
        for key in sorted(formatted):
            print(f"  {key: <{k_width}} = {formatted[key]:>{v_width}}")

    def save_metrics(self, split, metrics, combined=True):
        """output_dir/{split}_results.json (and all_results.json, merged); rank 0 alone."""
        if not self.is_world_process_zero():
            return
        os.makedirs(self.args.output_dir, exist_ok=True)
        with open(os.path.join(self.args.output_dir, f"{split}_results.json"), "w", encoding="utf-8") as f:
            _dump_strict_json(metrics, f, indent=4, sort_keys=True)  # NaN / Infinity as null
        if combined:
            path = os.path.join(self.args.output_dir, "all_results.json")
            merged = _read_json(path, "an object of metrics") if os.path.exists(path) else {}
            merged.update(metrics)
            with open(path, "w", encoding="utf-8") as f:
                _dump_strict_json(merged, f, indent=4, sort_keys=True)

    def save_state(self):
        if not self.is_world_process_zero():
            return
        os.makedirs(self.args.output_dir, exist_ok=True)
        self.state.save_to_json(os.path.join(self.args.output_dir, TRAINER_STATE_NAME))

    def save_model(self, output_dir=None):
        """The adapter in peft format (adapter_config.json + adapter_model.safetensors); rank 0 alone."""
        if not self.args.should_save:
            return
        self.model.save_pretrained(output_dir or self.args.output_dir)
