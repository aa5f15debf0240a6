"""`TrainingArguments` with the names and defaults of transformers.TrainingArguments.

What lorafast implements is listed below; any other keyword is accepted with a warning that
names it, so a script written for the HF Trainer runs and says what it is not getting.
"""

import dataclasses
import json
import math
import numbers
import os
import warnings

__all__ = ["TrainingArguments", "IntervalStrategy", "SchedulerType"]

STRATEGIES = ("no", "steps", "epoch")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw")
LOGGERS = ("none", "tensorboard_json")
INT32_MAX = 2**31 - 1  # the C loop's batch sizes are C ints


class IntervalStrategy:
    NO, STEPS, EPOCH = STRATEGIES


class SchedulerType:
    LINEAR, COSINE, CONSTANT, CONSTANT_WITH_WARMUP = SCHEDULERS


def _value(v):  # enums from transformers hold their name in .value
    return getattr(v, "value", v)


@dataclasses.dataclass
class TrainingArguments:
    output_dir: str = None
    overwrite_output_dir: bool = False
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    eval_strategy: str = "no"
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    num_train_epochs: float = 3.0
    max_steps: int = -1
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: float = 0
    logging_dir: str = None
    logging_strategy: str = "steps"
    logging_first_step: bool = False
    logging_nan_inf_filter: bool = True
    logging_steps: float = 500
    save_strategy: str = "steps"
    save_steps: float = 500
    save_total_limit: int = None
    save_only_model: bool = False
    eval_steps: float = None
    seed: int = 42
    data_seed: int = None
    fp16: bool = False
    bf16: bool = False
    tf32: bool = None
    use_cpu: bool = False
    gradient_checkpointing: bool = False
    dataloader_drop_last: bool = False
    dataloader_num_workers: int = 0
    disable_tqdm: bool = None
    load_best_model_at_end: bool = False
    metric_for_best_model: str = None
    greater_is_better: bool = None
    report_to: object = "none"
    run_name: str = None
    optim: str = "adamw_torch_fused"
    label_names: list = None
    remove_unused_columns: bool = True
    push_to_hub: bool = False
    local_rank: int = -1
    ddp_backend: str = None
    ddp_timeout: int = 1800
    ignored: dict = dataclasses.field(default_factory=dict, repr=False)

    def __init__(self, output_dir=None, evaluation_strategy=None, **kwargs):
        names = {f.name for f in dataclasses.fields(self)} - {"ignored"}
        ignored = {k: v for k, v in kwargs.items() if k not in names}
        for f in dataclasses.fields(self):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(self, f.name, kwargs.get(f.name, default))
        self.output_dir = output_dir
        if evaluation_strategy is not None:
            if "eval_strategy" in kwargs:
                raise ValueError("give eval_strategy or its old name evaluation_strategy, not both")
            self.eval_strategy = evaluation_strategy
        self.ignored = ignored
        self.__post_init__()

    def __post_init__(self):
        if self.output_dir is None:
            self.output_dir = "trainer_output"
        self.output_dir = os.path.expanduser(os.fspath(self.output_dir))
        for name in ("eval_strategy", "logging_strategy", "save_strategy", "lr_scheduler_type", "optim"):
            setattr(self, name, str(_value(getattr(self, name))))
        self._check_choice("eval_strategy", STRATEGIES)
        self._check_choice("logging_strategy", STRATEGIES)
        self._check_choice("save_strategy", STRATEGIES)
        self._check_choice("lr_scheduler_type", SCHEDULERS)
        self._check_positive()
        self._check_distributed()
        if self.fp16 and self.bf16:
            raise ValueError("At most one of fp16 and bf16 can be True, but not both")
        if self.logging_dir is None:
            self.logging_dir = os.path.join(self.output_dir, "runs")
        if self.disable_tqdm is None:
            self.disable_tqdm = False
        if self.eval_strategy == "steps" and not self.eval_steps:
            self.eval_steps = self.logging_steps
        if self.eval_strategy != "no":
            self.do_eval = True
        if self.tf32 is not None:
            from ._backend import set_tf32

            set_tf32(self.tf32)
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            self.metric_for_best_model = "loss"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        if self.load_best_model_at_end:
            if self.eval_strategy != self.save_strategy:
                raise ValueError(
                    "load_best_model_at_end requires the save and eval strategy to match, but found eval_strategy="
                    f"{self.eval_strategy!r} and save_strategy={self.save_strategy!r}"
                )
            if self.eval_strategy == "steps" and self.save_steps % self.eval_steps != 0:
                raise ValueError(
                    f"load_best_model_at_end requires save_steps ({self.save_steps}) to be a multiple of "
                    f"eval_steps ({self.eval_steps})"
                )
        report = self.report_to
        report = [] if report in (None, "none", ["none"]) else [report] if isinstance(report, str) else list(report)
        unknown = [r for r in report if r not in LOGGERS]
        if unknown:
            self.ignored["report_to"] = unknown
            report = [r for r in report if r in LOGGERS]
        self.report_to = report
        self._warn_unsupported()

    def _check_choice(self, name, choices):
        if getattr(self, name) not in choices:
            raise ValueError(f"{name}={getattr(self, name)!r} is not supported; choose one of {choices}")

    def _check_positive(self):
        """Every numeric argument in its range, the argument named: what the C loop takes as a 32-bit int
        below 2**31, every float finite (a NaN passes the comparisons below)."""
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= INT32_MAX:
                raise ValueError(f"{name} must be an integer in [1, 2**31 - 1], got {value!r}")
        for name in ("learning_rate", "max_grad_norm", "weight_decay", "adam_epsilon", "adam_beta1", "adam_beta2",
                     "num_train_epochs", "warmup_ratio", "warmup_steps", "logging_steps", "save_steps", "eval_steps"):
            value = getattr(self, name)
            if value is None and name in ("max_grad_norm", "eval_steps"):
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        for name in ("learning_rate", "max_grad_norm", "weight_decay", "num_train_epochs"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.adam_epsilon <= 0:
            raise ValueError(f"adam_epsilon must be > 0 (AdamW divides by sqrt(v) + adam_epsilon, and v is 0 where a "
                             f"gradient is 0), got {self.adam_epsilon!r}")
        if not 0 <= self.adam_beta1 < 1 or not 0 <= self.adam_beta2 < 1:
            raise ValueError(f"adam_beta1/adam_beta2 must be in [0, 1), got {self.adam_beta1}, {self.adam_beta2}")
        if not 0 <= self.warmup_ratio <= 1 or self.warmup_steps < 0:
            raise ValueError(f"warmup_ratio must be in [0, 1] and warmup_steps >= 0, got {self.warmup_ratio}, "
                             f"{self.warmup_steps}")
        for name in ("logging_steps", "save_steps"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def _check_distributed(self):
        """ddp_backend and ddp_timeout in range; LOCAL_RANK from the launcher wins over local_rank (HF's rule)."""
        from .distributed import check_backend, launcher_env

        check_backend(self.ddp_backend)
        t = self.ddp_timeout
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t) or t <= 0:
            raise ValueError(f"ddp_timeout must be a number of seconds > 0, got {t!r}")
        self._rank, self._world_size, local = launcher_env()
        if local != -1:
            self.local_rank = local

    @property
    def world_size(self):
        """Processes of the run (the launcher's WORLD_SIZE), 1 without a launcher."""
        return self._world_size

    @property
    def process_index(self):
        """This process's rank among all (RANK), 0 without a launcher."""
        return self._rank

    @property
    def local_process_index(self):
        """This process's rank on its machine (LOCAL_RANK), 0 without a launcher."""
        return max(self.local_rank, 0)

    @property
    def should_save(self):
        """HF's: only the main process writes (checkpoints, the adapter, metrics, logs)."""
        return self._rank == 0

    def _warn_unsupported(self):
        if self.optim not in OPTIMIZERS:
            self.ignored["optim"] = self.optim
        if self.push_to_hub:
            self.ignored["push_to_hub"] = True
        if self.dataloader_num_workers:
            self.ignored["dataloader_num_workers"] = self.dataloader_num_workers
        if self.ignored:
            warnings.warn(
                "TrainingArguments: not implemented by lorafast and ignored: "
                + ", ".join(f"{k}={v!r}" for k, v in self.ignored.items()),
                UserWarning,
                stacklevel=4,
            )

    @property
    def device(self):
        """Where the Trainer computes, as transformers decides it: when CUDA is available and use_cpu is False,
        "cuda:LOCAL_RANK" under a launcher (local_rank, which the launcher's LOCAL_RANK sets) and "cuda:0"
        without one; else "cpu" (a str, where transformers returns a torch.device)."""
        if self.use_cpu:
            return "cpu"
        from ._backend import cuda_status

        return f"cuda:{self.local_process_index}" if cuda_status()[0] else "cpu"

    @property
    def n_gpu(self):
        return 1 if self.device.startswith("cuda") else 0

    @property
    def train_batch_size(self):
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self):
        return self.per_device_eval_batch_size

    def get_warmup_steps(self, num_training_steps):
        """Warmup steps as transformers computes them: warmup_steps >= 1 is a count, a float below 1
        (or warmup_ratio) a fraction of the training steps, rounded up."""
        if self.warmup_steps >= 1:
            return int(self.warmup_steps)
        ratio = self.warmup_steps if self.warmup_steps > 0 else self.warmup_ratio
        return math.ceil(num_training_steps * ratio)

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "ignored"}

    def to_json_string(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)
