"""TrainingArguments: HF's names, defaults and derived values; unsupported arguments warn by name."""

import math
import warnings

import pytest

from lorafast import TrainingArguments

transformers = pytest.importorskip("transformers")

SHARED = ["learning_rate", "lr_scheduler_type", "warmup_steps", "max_grad_norm", "per_device_train_batch_size",
          "per_device_eval_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
          "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "eval_strategy", "save_strategy",
          "logging_strategy", "eval_steps", "save_steps", "logging_steps", "load_best_model_at_end",
          "metric_for_best_model", "greater_is_better", "save_total_limit", "seed", "fp16", "bf16", "tf32",
          "dataloader_drop_last", "use_cpu", "report_to", "gradient_checkpointing"]


def _norm(v):
    return getattr(v, "value", v)


@pytest.mark.parametrize("kwargs", [
    {},
    {"learning_rate": 1e-4, "lr_scheduler_type": "constant", "max_grad_norm": 0.3, "num_train_epochs": 5,
     "weight_decay": 0.001, "eval_strategy": "epoch", "save_strategy": "epoch", "load_best_model_at_end": True,
     "gradient_checkpointing": True, "per_device_eval_batch_size": 4},
    {"eval_strategy": "steps", "logging_steps": 7, "save_steps": 14, "load_best_model_at_end": True,
     "metric_for_best_model": "f1"},
    {"report_to": "none", "lr_scheduler_type": "cosine", "warmup_steps": 0.25, "max_steps": 40},
])
def test_defaults_and_derived_values_equal_hf(tmp_path, kwargs):
    ours = TrainingArguments(output_dir=str(tmp_path), **kwargs)
    ref = transformers.TrainingArguments(output_dir=str(tmp_path), **kwargs)
    for name in SHARED:
        assert _norm(getattr(ours, name)) == _norm(getattr(ref, name)), name
    for total in (1, 9, 30, 3810):
        assert ours.get_warmup_steps(total) == ref.get_warmup_steps(total)


def test_old_names_and_warmup_ratio(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), evaluation_strategy="epoch", warmup_ratio=0.1)
    assert args.eval_strategy == "epoch"
    assert args.get_warmup_steps(30) == 3 and args.get_warmup_steps(3810) == math.ceil(381.0)


def test_unsupported_arguments_warn_by_name(tmp_path):
    with pytest.warns(UserWarning, match="deepspeed") as record:
        TrainingArguments(output_dir=str(tmp_path), deepspeed="ds.json", report_to="wandb")
    assert "report_to=['wandb']" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainingArguments(output_dir=str(tmp_path), report_to="none", optim="adamw_torch")


def test_bad_values(tmp_path):
    with pytest.raises(ValueError, match="lr_scheduler_type"):
        TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="polynomial")
    with pytest.raises(ValueError, match="save and eval strategy"):
        TrainingArguments(output_dir=str(tmp_path), eval_strategy="epoch", save_strategy="steps",
                          load_best_model_at_end=True)
    with pytest.raises(ValueError, match="per_device_train_batch_size"):
        TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=0)


def test_tf32_is_a_cuda_setting(tmp_path, monkeypatch):
    """tf32=True without a usable GPU is refused as transformers refuses it (ValueError), saying why;
    tf32=False or unset has nothing to turn off there and is accepted without a warning."""
    from lorafast import _backend

    monkeypatch.setattr(_backend, "cuda_status", lambda: (False, "no CUDA driver found"))
    with pytest.raises(ValueError, match="tf32=True is a CUDA setting.*no CUDA driver found"):
        TrainingArguments(output_dir=str(tmp_path), tf32=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainingArguments(output_dir=str(tmp_path), tf32=False).tf32 is False
        assert TrainingArguments(output_dir=str(tmp_path)).tf32 is None
