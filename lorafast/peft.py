"""LoRA with peft's names: LoraConfig, TaskType, get_peft_model, PeftModel. The adapters live
in the C model (lorafast._C.Model.add_lora); this module maps peft's options onto it and
reads/writes peft's adapter folders (adapter_config.json + adapter_model.safetensors)."""

import enum
import json
import math
import os
import re

import numpy as np

from .modeling import PreTrainedModel
from .modeling_weights import read_safetensors, to_dtype, write_safetensors

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_VERSION = "0.21.2"  # the peft release whose adapter format is written


class TaskType(str, enum.Enum):
    SEQ_CLS = "SEQ_CLS"


class LoraConfig:
    """peft.LoraConfig: the options lorafast implements, with peft's defaults."""

    def __init__(self, task_type=None, r=8, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=None,
                 use_rslora=False, modules_to_save=None, fan_in_fan_out=False, init_lora_weights=True,
                 layers_to_transform=None, use_dora=False, inference_mode=False, base_model_name_or_path=None,
                 **unsupported):
        unsupported = {k: v for k, v in unsupported.items() if v not in (None, False, {}, [], "")}
        checks = [
            (task_type is not None and TaskType(task_type) != TaskType.SEQ_CLS, f"task_type {task_type}"),
            (bias != "none", f"bias={bias!r}"),
            (fan_in_fan_out, "fan_in_fan_out=True"),
            (init_lora_weights is not True, f"init_lora_weights={init_lora_weights!r}"),
            (layers_to_transform is not None, "layers_to_transform"),
            (use_dora, "use_dora=True"),
            (isinstance(target_modules, str), "target_modules as a regular expression string"),
        ]
        for bad, what in checks:
            if bad:
                raise NotImplementedError(f"LoraConfig: {what} is not supported by lorafast")
        if unsupported:
            raise NotImplementedError(f"LoraConfig options not supported by lorafast: {sorted(unsupported)}")
        if int(r) < 1:
            raise ValueError(f"LoraConfig: r must be >= 1, got {r}")
        if not 0.0 <= float(lora_dropout) < 1.0:
            raise ValueError(f"LoraConfig: lora_dropout must be in [0, 1), got {lora_dropout}")
        self.task_type = TaskType.SEQ_CLS if task_type is None else TaskType(task_type)
        self.peft_type = "LORA"
        self.r = int(r)
        self.lora_alpha = lora_alpha
        self.lora_dropout = float(lora_dropout)
        self.bias = bias
        self.target_modules = None if target_modules is None else sorted(set(target_modules))
        self.use_rslora = bool(use_rslora)
        self.modules_to_save = None if modules_to_save is None else list(modules_to_save)
        self.inference_mode = bool(inference_mode)
        self.base_model_name_or_path = base_model_name_or_path

    @property
    def scaling(self):
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def to_dict(self):
        """adapter_config.json as peft writes it."""
        return {
            "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": self.base_model_name_or_path,
            "bias": self.bias, "exclude_modules": None, "fan_in_fan_out": False,
            "inference_mode": self.inference_mode, "init_lora_weights": True, "layer_replication": None,
            "layers_pattern": None, "layers_to_transform": None, "loftq_config": {}, "lora_alpha": self.lora_alpha,
            "lora_bias": False, "lora_dropout": self.lora_dropout, "megatron_config": None,
            "megatron_core": "megatron.core", "modules_to_save": self.modules_to_save, "peft_type": "LORA",
            "peft_version": PEFT_VERSION, "r": self.r, "rank_pattern": {}, "revision": None,
            "target_modules": self.target_modules, "target_parameters": None, "task_type": self.task_type.value,
            "trainable_token_indices": None, "use_dora": False, "use_rslora": self.use_rslora,
        }

    @classmethod
    def from_dict(cls, d):
        known = {"task_type", "r", "lora_alpha", "lora_dropout", "bias", "target_modules", "use_rslora",
                 "modules_to_save", "fan_in_fan_out", "init_lora_weights", "layers_to_transform", "use_dora",
                 "inference_mode", "base_model_name_or_path"}
        # keys peft writes that lorafast accepts at peft's default value only
        defaults = {"peft_type": "LORA", "peft_version": None, "auto_mapping": None, "revision": None,
                    "megatron_core": "megatron.core", "alpha_pattern": {}, "rank_pattern": {}, "loftq_config": {},
                    "lora_bias": False, "exclude_modules": None, "layer_replication": None, "layers_pattern": None,
                    "megatron_config": None, "target_parameters": None, "trainable_token_indices": None,
                    "qalora_group_size": 16, "use_qalora": False, "ensure_weight_tying": False,
                    "alora_invocation_tokens": None, "arrow_config": None, "corda_config": None,
                    "eva_config": None, "kasa_config": None, "lora_ga_config": None, "monteclora_config": None,
                    "use_bdlora": None, "velora_config": None}
        ignored = {k for k, v in d.items() if k in defaults and (v == defaults[k] or k == "peft_version")}
        if d.get("peft_type", "LORA") != "LORA":
            raise NotImplementedError(f"peft_type {d.get('peft_type')!r} is not supported (LORA)")
        for key in ("alpha_pattern", "rank_pattern"):
            if d.get(key):
                raise NotImplementedError(f"adapter_config {key} is not supported")
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items() if k not in known and k not in ignored}
        return cls(**kwargs, **extra)


def _target_mask(model, targets):
    """peft's module matching (name == t or name ends with '.' + t) onto the C model's LoRA
    sites; a target that matches another module (pooler, head) is not supported."""
    layers = getattr(model.config, "layers_prefix", None) or f"{model.config.base_model_prefix}.encoder.layer"
    sites = model._c.lora_targets()
    layer_names = [f"{layers}.0.{s}" for s in sites]
    other_names = [name[: -len(".weight")] for name, _, _ in model.named_parameter_shapes()
                   if name.endswith(".weight") and not name.startswith(layers + ".")]
    mask = 0
    for t in targets:
        hits = [i for i, name in enumerate(layer_names) if name == t or name.endswith("." + t)]
        others = [name for name in other_names if name == t or name.endswith("." + t)]
        if others:
            raise NotImplementedError(f"LoRA target {t!r} matches {others}: only transformer-layer linears are supported")
        if not hits:
            raise ValueError(
                f"Target modules {{{t!r}}} not found in the base model. Supported targets: {', '.join(sites)}"
            )
        for i in hits:
            mask |= 1 << i
    return mask


class PeftModel:
    """A model with LoRA adapters (peft.PeftModelForSequenceClassification's surface)."""

    def __init__(self, model, peft_config, seed=0, adapter_name="default"):
        if not isinstance(model, PreTrainedModel):
            raise TypeError("get_peft_model needs a lorafast model (AutoModelForSequenceClassification)")
        if getattr(model, "_has_peft", False):
            raise ValueError("this model already has LoRA adapters")
        extra = [m for m in (peft_config.modules_to_save or []) if m not in ("classifier", "score")]
        if extra:
            raise NotImplementedError(f"modules_to_save {extra}: only the classification head is supported")
        if peft_config.target_modules is None:
            peft_config.target_modules = sorted(model.config.default_lora_targets)
        peft_config.modules_to_save = ["classifier", "score"]
        if peft_config.base_model_name_or_path is None:
            peft_config.base_model_name_or_path = model.name_or_path
        mask = _target_mask(model, peft_config.target_modules)
        model._c.add_lora(peft_config.r, peft_config.scaling, peft_config.lora_dropout, mask, seed)
        model._has_peft = True
        self.base_model = model
        self.peft_config = {adapter_name: peft_config}
        self.active_adapter = adapter_name
        self._inference = False

    def __getattr__(self, name):  # config, train, eval, trainable_state_dict, ... of the model
        if name == "base_model":
            raise AttributeError(name)
        return getattr(self.base_model, name)

    def __call__(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def train(self, mode=True):
        self.base_model.train(mode)
        return self

    # the base model moves (see PreTrainedModel.to); these return the PeftModel, as torch's do
    def to(self, device=None, dtype=None):
        self.base_model.to(device, dtype)
        return self

    def cuda(self, device=None):
        self.base_model.cuda(device)
        return self

    def cpu(self):
        self.base_model.cpu()
        return self

    @property
    def device(self):
        return self.base_model.device

    def eval(self):
        return self.train(False)

    def forward_backward(self, *args, **kwargs):
        if self._inference:
            raise RuntimeError("this adapter was loaded with is_trainable=False: it has no trainable parameters")
        return self.base_model.forward_backward(*args, **kwargs)

    def get_nb_trainable_parameters(self):
        trainable, all_params = self.base_model.get_nb_trainable_parameters()
        return (0 if self._inference else trainable), all_params

    def print_trainable_parameters(self):
        trainable, all_params = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {all_params:,d} || "
            f"trainable%: {100 * trainable / all_params:.4f}"
        )

    def save_pretrained(self, save_directory):
        """peft's adapter folder: adapter_config.json + adapter_model.safetensors (head included)."""
        os.makedirs(save_directory, exist_ok=True)
        config = self.peft_config[self.active_adapter]
        d = config.to_dict()
        d["inference_mode"] = True
        with open(os.path.join(save_directory, ADAPTER_CONFIG), "w") as f:
            json.dump(d, f, indent=2, sort_keys=True)
        write_safetensors(self.base_model.trainable_state_dict(), os.path.join(save_directory, ADAPTER_WEIGHTS),
                          metadata={"format": "pt"})

    def load_adapter_weights(self, folder):
        """Copies the tensors of a peft adapter folder's adapter_model.safetensors into the
        model's LoRA and head tensors (keys and shapes checked)."""
        weights = os.path.join(os.fspath(folder), ADAPTER_WEIGHTS)
        if not os.path.isfile(weights):
            raise OSError(f"{weights} not found (adapter_model.bin is not supported: save as safetensors)")
        tensors = {k: to_dtype(a, src, "float32") for k, (a, src) in read_safetensors(weights).items()}
        self.base_model.load_trainable_state_dict(_strip_adapter_name(tensors, self.active_adapter))

    @classmethod
    def from_pretrained(cls, model, model_id, is_trainable=False, adapter_name="default"):
        """Loads a peft adapter folder (written by peft or lorafast) onto a base model."""
        folder = os.fspath(model_id)
        path = os.path.join(folder, ADAPTER_CONFIG)
        if not os.path.isfile(path):
            raise OSError(f"{path} not found: {folder!r} is not a peft adapter folder")
        with open(path) as f:
            config = LoraConfig.from_dict(json.load(f))
        config.inference_mode = not is_trainable
        peft = cls(model, config, adapter_name=adapter_name)
        peft.load_adapter_weights(folder)
        peft._inference = not is_trainable
        if not is_trainable:
            peft.eval()
        return peft


def _strip_adapter_name(tensors, adapter_name):
    """peft's saved keys carry no adapter name; tolerate '.default.' forms too."""
    pattern = re.compile(r"\.(lora_[AB])\." + re.escape(adapter_name) + r"\.weight$")
    return {pattern.sub(r".\1.weight", k): np.asarray(v) for k, v in tensors.items()}


def get_peft_model(model, peft_config, adapter_name="default", seed=0):
    """peft.get_peft_model: LoRA on the targets (peft's default for the model type when None),
    the classification head trained in full (modules_to_save). A: kaiming-uniform(a=sqrt 5)
    from seed, B: zeros."""
    return PeftModel(model, peft_config, seed=seed, adapter_name=adapter_name)


PeftModelForSequenceClassification = PeftModel
