"""Sequence classifiers with HF's names. The model is lorafast._C.Model (C); this module
builds it from a config, loads checkpoint weights into it (borrowed numpy memory maps), and
turns numpy batches into calls to C."""

import contextlib
import os
import threading
import warnings

import numpy as np

from ._backend import _C
from .configuration import AutoConfig, PretrainedConfig, resolve_model_folder
from .modeling_weights import load_checkpoint, to_dtype

_DTYPES = {None: None, "auto": None, "float32": "float32", "float16": "float16", "bfloat16": "bfloat16",
           np.float32: "float32", np.float16: "float16"}


class SequenceClassifierOutput:
    """transformers' ModelOutput for a classifier: attributes, and a dict of the fields that are not
    None (`out["logits"]`, `out.get("loss")`, `out[0]`: the first of loss, logits that is set)."""

    def __init__(self, logits, loss=None):
        self.logits = logits
        self.loss = loss

    def keys(self):
        return [k for k in ("loss", "logits") if getattr(self, k) is not None]

    def to_tuple(self):
        return tuple(getattr(self, k) for k in self.keys())

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key) if key in self.keys() else default

    def __contains__(self, key):
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def __repr__(self):
        return f"SequenceClassifierOutput(loss={self.loss}, logits={self.logits!r})"


def _dtype_name(dtype):
    key = getattr(dtype, "name", dtype) if not isinstance(dtype, str) and dtype is not None else dtype
    if type(key).__module__ == "torch":  # a torch.dtype: str() is "torch.bfloat16"
        key = str(key)
    if isinstance(key, str) and key.startswith("torch."):
        key = key[len("torch."):]
    if key not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported (None, 'float32', 'float16', 'bfloat16')")
    return _DTYPES[key]


def _warn_slow_cpu_bf16():
    """Warns once per process when this CPU has neither AMX-BF16 nor AVX512-BF16 (build_info's cpu_bf16)."""
    info = _C.build_info()
    if not info["cpu_bf16"] and not _SLOW_BF16_WARNED:
        _SLOW_BF16_WARNED.append(True)
        warnings.warn(f"bfloat16 on this CPU is slower than float32: {info['cpu_bf16_reason']}", UserWarning,
                      stacklevel=3)


_SLOW_BF16_WARNED = []


def _is_dtype(obj):
    if obj is None or isinstance(obj, bool):
        return False
    try:
        _dtype_name(obj)
    except (ValueError, TypeError):
        return False
    return True


def _device_kind(device):
    """(kind, index): ('cpu', None), or ('cuda', N) for "cuda:N", N, or a torch.device-like object (.type,
    .index); "cuda" alone is cuda:0, as torch's current device is by default. A bad index (one this process
    does not see) is the C side's error when the model moves."""
    if isinstance(device, int) and not isinstance(device, bool):
        kind, index = "cuda", device
    elif isinstance(device, str):
        kind, sep, index = device.partition(":")
        if sep and not index.isdigit():
            raise ValueError(f"device {device!r} is not a device: 'cpu', 'cuda' or 'cuda:0'")
        index = int(index) if sep else None
    elif isinstance(getattr(device, "type", None), str):
        kind, index = device.type, getattr(device, "index", None)
    else:
        raise ValueError(f"device {device!r} is not a device: 'cpu', 'cuda' or 'cuda:0'")
    name = repr(device) if isinstance(device, (str, int)) else str(device)  # torch.device: "cuda:1"
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device {name} is not supported: lorafast runs on 'cpu' or 'cuda' ('cuda:N')")
    if kind == "cpu":
        if index not in (None, 0):
            raise ValueError(f"device {name} is not a device: 'cpu' has no index")
        return "cpu", None
    if isinstance(index, bool) or (index is not None and (not isinstance(index, int) or index < 0)):
        raise ValueError(f"device {name} is not a device: the CUDA index must be an integer >= 0")
    return "cuda", index or 0


def cross_entropy(logits, labels, class_weights=None):
    """torch.nn.CrossEntropyLoss(weight=class_weights) on numpy logits (the weighted mean), in C: the
    loss the training step computes (ops/crossentropy.c)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[-1]):
        raise ValueError(f"labels must lie in [0, {logits.shape[-1]}), got {labels.min()}..{labels.max()}")
    return _C.cross_entropy(logits, labels.astype(np.int32), class_weights)


def _served_output(model, served, input_ids, labels):
    """The output of model(**inputs) inside a compute_loss override: the C loop's logits, and with
    labels the loss transformers' classifiers compute (cross-entropy; MSE for num_labels=1)."""
    logits, shape = served
    got = tuple(getattr(input_ids, "shape", ()))
    if got != shape:
        raise ValueError(f"inside compute_loss the model returns the logits of the batch being trained, whose "
                         f"input_ids have shape {shape}; it was called with input_ids of shape {got}")
    loss = None
    if labels is not None:
        import torch
        labels = torch.as_tensor(labels)
        if model.config.num_labels == 1:
            loss = torch.nn.functional.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        else:
            loss = torch.nn.functional.cross_entropy(logits.view(-1, model.config.num_labels), labels.view(-1))
    return SequenceClassifierOutput(logits, loss)


def _as_batch(input_ids, attention_mask):
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    mask = np.ones(ids.shape, np.int64) if attention_mask is None else np.asarray(attention_mask)
    if mask.ndim == 1:
        mask = mask[None, :]
    return ids, mask


class PreTrainedModel:
    """A C model with HF's surface: config, train()/eval(), __call__, parameter counting."""

    def __init__(self, config, c_model, seed=0):
        self.config = config
        self._c = c_model
        self.training = False
        self._seed = int(seed)
        self._c.set_mode(False, self._seed)
        self.is_gradient_checkpointing = False
        self.name_or_path = getattr(config, "_name_or_path", None)

    # ---- modes
    def train(self, mode=True):
        self._c.set_mode(bool(mode), self._seed)  # first: refused while another thread trains the model
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        """Keeps only each layer's input in forward and recomputes the layer in backward
        (decoders; same gradients, less memory)."""
        self._c.set_gradient_checkpointing(True)
        self.is_gradient_checkpointing = True

    def gradient_checkpointing_disable(self):
        self._c.set_gradient_checkpointing(False)
        self.is_gradient_checkpointing = False

    # ---- device
    def to(self, device=None, dtype=None):
        """Moves the compute, as torch's Module.to: device "cuda" / "cuda:0" / "cpu" (or a torch.device,
        or 0), dtype the compute dtype (float32, bfloat16, float16 on CUDA; None: the device's current
        one, float32 at first). `model.to(dtype)` keeps the device. On CUDA the frozen weights are copied
        to the GPU in dtype and forward / backward run there; the trainable tensors stay on the host (f32)
        and are uploaded at every call, so everything that reads or writes them works as on the CPU. On the
        CPU, bfloat16 computes the frozen linears' products in bf16 as torch.autocast("cpu") does (each
        weight converted and packed for oneDNN once, here; LoRA, head, norms, softmax and loss in float32);
        float16 there is a ValueError. Returns the model."""
        if _is_dtype(device):
            device, dtype = None, device if dtype is None else dtype
        if device is None:
            kind, index = self._c.device, self._c.device_index or 0
        else:
            kind, index = _device_kind(device)
        name = _dtype_name(dtype)
        if kind == "cpu" and name == "bfloat16":
            _warn_slow_cpu_bf16()
        self._c.to_device(kind, name, index or 0)
        return self

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    def cpu(self):
        return self.to("cpu")

    @property
    def device(self):
        """The device as a str, "cuda:N" or "cpu" (transformers returns a torch.device)."""
        return f"cuda:{self._c.device_index}" if self._c.device == "cuda" else "cpu"

    def manual_seed(self, seed):
        """Seeds the dropout streams (lorafast's RNG, not torch's) and restarts them, as
        torch.manual_seed restarts torch's: the same seed gives the same masks again."""
        self._seed = int(seed)
        self._c.set_mode(self.training, self._seed, True)

    # ---- compute
    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, class_weights=None):
        served = self.__dict__.get("_served", {}).get(threading.get_ident())
        if served is not None:
            return _served_output(self, served, input_ids, labels)
        return self.forward(input_ids, attention_mask, token_type_ids, labels, class_weights)

    @contextlib.contextmanager
    def serving_logits(self, logits, input_shape):
        """Inside the block, a call from this thread on input_ids of input_shape returns `logits` (a torch
        tensor the C loop computed) instead of running the model: how the Trainer hands a batch's logits
        to a compute_loss override that calls model(**inputs)."""
        served, key = self.__dict__.setdefault("_served", {}), threading.get_ident()
        served[key] = (logits, tuple(input_shape))
        try:
            yield
        finally:
            served.pop(key, None)

    def _sync_config(self):
        """Decoders read config.pad_token_id at each call, as transformers does (the notebook sets
        model.config.pad_token_id after loading); encoders fix their padding_idx at build, as HF."""
        if self.config.model_type in ("llama", "mistral"):
            pad = self.config.pad_token_id
            self._c.set_pad_token_id(-1 if pad is None else int(pad))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, class_weights=None):
        self._sync_config()
        ids, mask = _as_batch(input_ids, attention_mask)
        logits = self._c.forward(ids, mask, token_type_ids)
        loss = None
        if labels is not None:
            labels = np.asarray(labels, np.int64).reshape(-1)
            self._check_labels(labels, len(logits), class_weights)
            loss = cross_entropy(logits, labels, class_weights)
        return SequenceClassifierOutput(logits, loss)

    def _check_labels(self, labels, batch, class_weights):
        if len(labels) != batch:
            raise ValueError(f"labels has {len(labels)} values for a batch of {batch} rows")
        bad = (labels < 0) | (labels >= self.config.num_labels)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"labels[{i}] = {labels[i]} is outside [0, num_labels={self.config.num_labels})")
        if class_weights is not None and len(np.asarray(class_weights).reshape(-1)) != self.config.num_labels:
            raise ValueError(
                f"class_weights has {len(np.asarray(class_weights).reshape(-1))} values, "
                f"the model has num_labels={self.config.num_labels}"
            )

    def forward_backward(self, input_ids, attention_mask, labels, class_weights=None, token_type_ids=None):
        """One training forward + backward with the class-weighted cross-entropy (torch's weighted
        mean). Returns (loss, {peft adapter key: gradient}) for the trainable tensors."""
        self._sync_config()
        ids, mask = _as_batch(input_ids, attention_mask)
        self._c.zero_grad()
        loss, _ = self._c.forward_backward(ids, mask, labels, class_weights, token_type_ids)
        return loss, {name: grad.copy() for name, _, grad, _ in self._c.params()}

    # ---- parameters
    def trainable_state_dict(self):
        return {name: data.copy() for name, data, _, _ in self._c.params()}

    def load_trainable_state_dict(self, tensors, strict=True):
        """Copies {peft key: array} into the trainable tensors (shapes checked)."""
        params = {name: data for name, data, _, _ in self._c.params()}
        missing = sorted(set(params) - set(tensors))
        unexpected = sorted(set(tensors) - set(params))
        if strict and (missing or unexpected):
            raise ValueError(f"adapter keys do not match the model: missing {missing}, unexpected {unexpected}")
        for name, value in tensors.items():
            if name not in params:
                continue
            value = np.asarray(value)
            if value.shape != params[name].shape:
                raise ValueError(f"{name}: shape {value.shape} does not match the model's {params[name].shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"{name} holds a non-finite value (NaN or Inf)")
            np.copyto(params[name], value, casting="same_kind")

    def named_parameter_shapes(self):
        """[(name, shape, trainable)] of every parameter, frozen ones included."""
        frozen = [(name, shape, False) for name, shape, _ in self._c.frozen_specs()]
        return frozen + [(name, data.shape, True) for name, data, _, _ in self._c.params()]

    def get_nb_trainable_parameters(self):
        trainable = all_params = 0
        for _, shape, is_trainable in self.named_parameter_shapes():
            n = int(np.prod(shape, dtype=np.int64))
            all_params += n
            trainable += n if is_trainable else 0
        return trainable, all_params

    def num_parameters(self, only_trainable=False):
        trainable, all_params = self.get_nb_trainable_parameters()
        return trainable if only_trainable else all_params

    def no_decay_parameter_names(self):
        """Trainable names that HF's Trainer keeps out of weight decay (biases, norms)."""
        return [name for name, _, _, no_decay in self._c.params() if no_decay]

    @property
    def c_model(self):
        """The lorafast._C.Model (for the C training loop)."""
        self._sync_config()
        return self._c


class AutoModelForSequenceClassification:
    @staticmethod
    def from_config(config, num_labels=None, seed=0, materialize=True, dtype=None):
        """A model with HF-style random weights (seeded); materialize=False allocates no frozen
        weights (enough to count parameters)."""
        if num_labels is not None:
            config.num_labels = num_labels
        c_model = _C.Model(config.c_config())
        model = PreTrainedModel(config, c_model, seed)
        if materialize:
            _fill_frozen(model, {}, _dtype_name(dtype))
        _fill_head(model, {})
        return model

    @staticmethod
    def from_pretrained(path_or_id, num_labels=2, dtype=None, seed=0, device=None, **config_kwargs):
        """device: where the model computes ("cuda", "cuda:0", "cpu"; None: the CPU), as
        `.to(device, dtype)` after loading (dtype, when given, is also the CUDA compute dtype)."""
        folder = resolve_model_folder(path_or_id)
        config = AutoConfig.from_pretrained(folder, **config_kwargs)
        config._name_or_path = os.fspath(path_or_id)
        if num_labels is not None:
            config.num_labels = num_labels
        c_model = _C.Model(config.c_config())
        model = PreTrainedModel(config, c_model, seed)
        tensors = load_checkpoint(folder)
        try:
            missing = _fill_frozen(model, tensors, _dtype_name(dtype)) + _fill_head(model, tensors)
        except ValueError as e:  # a bad tensor: name the checkpoint it came from
            raise ValueError(f"checkpoint {folder}: {e}") from None
        if missing:
            warnings.warn(f"Some weights of the model were not initialized from the checkpoint at {folder} and are "
                          f"newly initialized: {missing}")
        if device is not None:
            model.to(device, dtype=_dtype_name(dtype))
        return model


def _lookup(tensors, name, prefix):
    """The checkpoint tensor for a model name, with or without the base model prefix."""
    if name in tensors:
        return tensors[name]
    if prefix and name.startswith(prefix + "."):
        return tensors.get(name[len(prefix) + 1:])
    return None


def _fill_frozen(model, tensors, dtype):
    """Frozen weights from the checkpoint (the C side checks each is finite), else HF's init.
    Returns the names that were not in the checkpoint."""
    config = model.config
    prefix = getattr(config, "base_model_prefix", None)
    missing = []
    arrays = model.__dict__.setdefault("_frozen_arrays", {})  # index -> (array, dtype): what merge_and_unload reads
    for index, (name, shape, _) in enumerate(model._c.frozen_specs()):
        found = _lookup(tensors, name, prefix)
        if found is None:
            missing.append(name)
            target = "float32" if len(shape) == 1 else (dtype or "float32")
            array = _random_frozen(name, shape, target, config, model._seed, index)
        else:
            array, src = found
            if tuple(array.shape) != tuple(shape):
                raise ValueError(f"checkpoint tensor {name} has shape {tuple(array.shape)}, the config needs {shape}")
            if src not in ("float32", "float16", "bfloat16"):
                raise ValueError(f"checkpoint tensor {name} has dtype {src}; weights must be float32/16 or bfloat16")
            target = "float32" if len(shape) == 1 else (dtype or src)
            array = np.ascontiguousarray(to_dtype(array, src, target))
        model._c.set_frozen(index, array, target)
        arrays[index] = (array, target)
    return missing


_STORAGE = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}
_ONE = {"float32": np.float32(1), "float16": np.float16(1), "bfloat16": np.uint16(0x3F80)}


def _random_frozen(name, shape, dtype, config, seed, stream):
    """A tensor as HF's _init_weights makes it, allocated in its storage dtype: norm
    weights 1, biases 0, else normal(0, initializer_range) drawn in C (parallel, a function of
    (seed, stream) only), the embedding's padding row 0."""
    if name.endswith(("LayerNorm.weight", "norm.weight")):
        return np.full(shape, _ONE[dtype], _STORAGE[dtype])
    if name.endswith(".bias"):
        return np.zeros(shape, _STORAGE[dtype])
    x = np.empty(shape, _STORAGE[dtype])
    _C.random_normal_fill(x, 0.0, config.initializer_range, seed, stream)
    pad = config.pad_token_id
    if name.endswith(("word_embeddings.weight", "embed_tokens.weight")) and pad is not None and 0 <= pad < shape[0]:
        x[pad] = 0
    return x


def _fill_head(model, tensors):
    """Head tensors from the checkpoint (finite), else HF's init: normal(0, initializer_range),
    zero bias. Returns the names that were not in the checkpoint (or had another shape)."""
    config = model.config
    streams = len(model._c.frozen_specs())
    missing = []
    for i, (name, data, _, _) in enumerate(model._c.params()):
        found = tensors.get(name)
        if found is not None and tuple(found[0].shape) == data.shape:
            value = to_dtype(found[0], found[1], "float32")
            if not np.isfinite(value).all():
                raise ValueError(f"weight {name} ({found[1]}) holds a non-finite value (NaN or Inf)")
            np.copyto(data, value)
        else:
            missing.append(name)
            np.copyto(data, _random_frozen(name, data.shape, "float32", config, model._seed, streams + i))
    return missing
