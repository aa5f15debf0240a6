"""Model configs with Hugging Face's names: AutoConfig.from_pretrained reads config.json into a
config object whose attributes are HF's (assignable), and each config class says how its model
is built in C (lorafast._C.Model). A new model type is a new config class in CONFIG_CLASSES."""

import copy
import json
import math
import numbers
import os

CONFIG_NAME = "config.json"


# What each config key must hold: (test, what is expected). A key absent or None where allowed is not checked.
def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


POSITIVE_INT = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
TOKEN_ID = (lambda v: v is None or _is_int(v), "an integer or null")
OPTIONAL_POSITIVE_INT = (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1 or null")
OPTIONAL_COUNT = (lambda v: v is None or (_is_int(v) and v >= 0), "an integer >= 0 or null")
PROBABILITY = (lambda v: _is_real(v) and 0 <= v <= 1, "a number in [0, 1]")
OPTIONAL_PROBABILITY = (lambda v: v is None or (_is_real(v) and 0 <= v <= 1), "a number in [0, 1] or null")
POSITIVE_FINITE = (lambda v: _is_real(v) and math.isfinite(v) and v > 0, "a finite number > 0")
OPTIONAL_POSITIVE_FINITE = (lambda v: v is None or (_is_real(v) and math.isfinite(v) and v > 0),
                            "a finite number > 0 or null")
STRING = (lambda v: isinstance(v, str), "a string")
OPTIONAL_DICT = (lambda v: v is None or isinstance(v, dict), "an object or null")


def _where(source):
    return f"{source}: " if source else ""


def resolve_model_folder(path_or_id):
    """A local model folder for a path or a Hugging Face id (lorafast.hub when present)."""
    try:
        from .hub import resolve_model_folder as resolve
    except ImportError:  # before the hub module lands: local folders only
        if os.path.isdir(path_or_id):
            return os.fspath(path_or_id)
        raise OSError(f"model folder not found: {path_or_id!r} (looked for a local folder)") from None
    return os.fspath(resolve(path_or_id))


class PretrainedConfig:
    """HF-shaped config: every key of config.json is an attribute; defaults are HF's."""

    model_type = None
    defaults = {}
    # key -> (test, expected), checked at construction and load (check_values)
    key_checks = {"num_labels": POSITIVE_INT, "id2label": OPTIONAL_DICT, "label2id": OPTIONAL_DICT}
    # peft's default LoRA targets for this model type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)
    default_lora_targets = ()

    def __init__(self, **kwargs):
        values = dict(self.defaults)
        values.update(kwargs)
        values.pop("model_type", None)
        self.check_values(values, type(self).__name__)
        num_labels = values.pop("num_labels", None)
        for key, value in values.items():
            setattr(self, key, value)
        if num_labels is not None:
            self.num_labels = num_labels
        elif not hasattr(self, "id2label"):
            self.num_labels = 2

    @classmethod
    def check_values(cls, values, source=None):
        """A ValueError naming the source (the config.json path), the key, what it must hold and what it
        holds, for the first key of values of the wrong type or outside its range."""
        for key, (test, expected) in cls.key_checks.items():
            if key in values and not test(values[key]):
                value = values[key]
                raise ValueError(f"{_where(source)}{key} must be {expected}, got {value!r} ({type(value).__name__})")
        id2label = values.get("id2label")
        if isinstance(id2label, dict):
            for k in id2label:
                if not (_is_int(k) or (isinstance(k, str) and k.strip().lstrip("-").isdigit())):
                    raise ValueError(f"{_where(source)}id2label keys must be class ids (integers), got {k!r}")

    @property
    def num_labels(self):
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n):
        n = int(n)
        if getattr(self, "id2label", None) is None or len(self.id2label) != n:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {f"LABEL_{i}": i for i in range(n)}

    def _source(self):
        """What error messages name: the config.json it was read from, else the class."""
        return getattr(self, "_config_file", None) or type(self).__name__

    def to_dict(self):
        out = copy.deepcopy({k: v for k, v in vars(self).items() if not k.startswith("_")})
        out["model_type"] = self.model_type
        return out

    def __repr__(self):
        return f"{type(self).__name__} {json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)}"

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    @classmethod
    def from_dict(cls, d, **kwargs):
        d = dict(d)
        cls.check_values(d)
        if "id2label" in d and d["id2label"] is not None:
            d["id2label"] = {int(k): v for k, v in d["id2label"].items()}
        d.update(kwargs)
        return cls(**d)

    def save_pretrained(self, folder):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, CONFIG_NAME), "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)

    def c_config(self):
        """The dict lorafast._C.Model is built from."""
        raise NotImplementedError


class _EncoderConfig(PretrainedConfig):
    arch = None
    base_model_prefix = None
    position_rule = 0  # models/model_desc.h lf_position_rule
    default_lora_targets = ("query", "value")
    key_checks = dict(
        PretrainedConfig.key_checks, vocab_size=POSITIVE_INT, hidden_size=POSITIVE_INT, num_hidden_layers=POSITIVE_INT,
        num_attention_heads=POSITIVE_INT, intermediate_size=POSITIVE_INT, max_position_embeddings=POSITIVE_INT,
        type_vocab_size=POSITIVE_INT, pad_token_id=TOKEN_ID, hidden_act=STRING, hidden_dropout_prob=PROBABILITY,
        attention_probs_dropout_prob=PROBABILITY, classifier_dropout=OPTIONAL_PROBABILITY,
        layer_norm_eps=POSITIVE_FINITE,
    )

    def c_config(self):
        self.check_values(vars(self), self._source())
        if self.hidden_act != "gelu":
            raise NotImplementedError(f"hidden_act {self.hidden_act!r} is not supported (supported: 'gelu')")
        if getattr(self, "position_embedding_type", "absolute") != "absolute":
            raise NotImplementedError("only position_embedding_type='absolute' is supported")
        if getattr(self, "problem_type", None) not in (None, "single_label_classification"):
            raise NotImplementedError(f"problem_type {self.problem_type!r} is not supported")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )
        classifier_dropout = getattr(self, "classifier_dropout", None)
        return dict(
            arch=self.arch,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_hidden_layers,
            num_heads=self.num_attention_heads,
            num_kv_heads=self.num_attention_heads,
            head_dim=self.hidden_size // self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_positions=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            pad_token_id=self.pad_token_id if self.pad_token_id is not None else -1,
            num_labels=self.num_labels,
            norm_eps=self.layer_norm_eps,
            hidden_dropout=self.hidden_dropout_prob,
            attention_dropout=self.attention_probs_dropout_prob,
            classifier_dropout=self.hidden_dropout_prob if classifier_dropout is None else classifier_dropout,
            position_rule=self.position_rule,
            pool_rule=0,
        )


_ENCODER_DEFAULTS = dict(
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=512,
    type_vocab_size=2,
    initializer_range=0.02,
    layer_norm_eps=1e-12,
    pad_token_id=0,
    classifier_dropout=None,
)


class BertConfig(_EncoderConfig):
    model_type = "bert"
    arch = 0  # LF_ARCH_BERT
    base_model_prefix = "bert"
    position_rule = 0  # LF_POS_COLUMN
    defaults = dict(_ENCODER_DEFAULTS)


class RobertaConfig(_EncoderConfig):
    model_type = "roberta"
    arch = 1  # LF_ARCH_ROBERTA
    base_model_prefix = "roberta"
    position_rule = 1  # LF_POS_ROBERTA
    defaults = dict(_ENCODER_DEFAULTS, pad_token_id=1, bos_token_id=0, eos_token_id=2)


class _DecoderConfig(PretrainedConfig):
    """Llama / Mistral (models/decoder.c): RMSNorm, RoPE, grouped-query attention, SwiGLU."""

    arch = None
    base_model_prefix = "model"
    layers_prefix = "model.layers"  # the transformer layers' module names: <layers_prefix>.<i>.<site>
    default_lora_targets = ("q_proj", "v_proj")
    key_checks = dict(
        PretrainedConfig.key_checks, vocab_size=POSITIVE_INT, hidden_size=POSITIVE_INT, num_hidden_layers=POSITIVE_INT,
        num_attention_heads=POSITIVE_INT, num_key_value_heads=OPTIONAL_POSITIVE_INT, head_dim=OPTIONAL_POSITIVE_INT,
        intermediate_size=POSITIVE_INT, max_position_embeddings=POSITIVE_INT, pad_token_id=TOKEN_ID, hidden_act=STRING,
        rms_norm_eps=POSITIVE_FINITE, attention_dropout=OPTIONAL_PROBABILITY, rope_theta=OPTIONAL_POSITIVE_FINITE,
        sliding_window=OPTIONAL_COUNT, rope_parameters=OPTIONAL_DICT, rope_scaling=OPTIONAL_DICT,
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if getattr(self, "head_dim", None) is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if getattr(self, "num_key_value_heads", None) is None:
            self.num_key_value_heads = self.num_attention_heads

    def rope_theta_value(self):
        """rope_theta as transformers reads it (rope_parameters, else the legacy keys); a RoPE
        scaling type other than the default one is not implemented."""
        params = getattr(self, "rope_parameters", None) or getattr(self, "rope_scaling", None) or {}
        kind = params.get("rope_type", params.get("type", "default"))
        if kind != "default":
            raise NotImplementedError(f"rope_scaling / rope_parameters type {kind!r} is not supported (only 'default')")
        theta = params.get("rope_theta", getattr(self, "rope_theta", None) or 10000.0)
        if not POSITIVE_FINITE[0](theta):
            raise ValueError(f"{_where(self._source())}rope_parameters' rope_theta must be {POSITIVE_FINITE[1]}, "
                             f"got {theta!r}")
        return float(theta)

    def c_config(self):
        self.check_values(vars(self), self._source())
        if self.hidden_act != "silu":
            raise NotImplementedError(f"hidden_act {self.hidden_act!r} is not supported (supported: 'silu')")
        for flag in ("attention_bias", "mlp_bias"):
            if getattr(self, flag, False):
                raise NotImplementedError(f"{flag}=True is not supported")
        if getattr(self, "problem_type", None) not in (None, "single_label_classification"):
            raise NotImplementedError(f"problem_type {self.problem_type!r} is not supported")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        window = getattr(self, "sliding_window", None)
        return dict(
            arch=self.arch,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_hidden_layers,
            num_heads=self.num_attention_heads,
            num_kv_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            intermediate_size=self.intermediate_size,
            # RoPE has no position table: transformers runs past max_position_embeddings
            max_positions=2**30,
            pad_token_id=self.pad_token_id if self.pad_token_id is not None else -1,
            num_labels=self.num_labels,
            norm_eps=self.rms_norm_eps,
            attention_dropout=float(getattr(self, "attention_dropout", 0.0) or 0.0),
            rope_theta=self.rope_theta_value(),
            sliding_window=int(window) if window else 0,
            position_rule=0,  # LF_POS_COLUMN: transformers' arange when no position_ids are given
            pool_rule=1,  # LF_POOL_LAST_NONPAD
        )


_DECODER_DEFAULTS = dict(
    vocab_size=32000,
    hidden_size=4096,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=None,
    head_dim=None,
    hidden_act="silu",
    initializer_range=0.02,
    rms_norm_eps=1e-6,
    pad_token_id=None,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
    rope_parameters=None,
    attention_bias=False,
    attention_dropout=0.0,
    mlp_bias=False,
)


class LlamaConfig(_DecoderConfig):
    model_type = "llama"
    arch = 2  # LF_ARCH_LLAMA
    defaults = dict(_DECODER_DEFAULTS, intermediate_size=11008, max_position_embeddings=2048)


class MistralConfig(_DecoderConfig):
    model_type = "mistral"
    arch = 3  # LF_ARCH_MISTRAL
    defaults = dict(
        _DECODER_DEFAULTS, intermediate_size=14336, num_key_value_heads=8, max_position_embeddings=4096 * 32,
        sliding_window=4096,
    )


# model_type -> config class
CONFIG_CLASSES = {"bert": BertConfig, "roberta": RobertaConfig, "llama": LlamaConfig, "mistral": MistralConfig}


def config_class_for(model_type):
    if model_type not in CONFIG_CLASSES:
        raise ValueError(
            f"model_type {model_type!r} is not supported; supported model types: {', '.join(sorted(CONFIG_CLASSES))}"
        )
    return CONFIG_CLASSES[model_type]


class AutoConfig:
    @staticmethod
    def from_pretrained(path_or_id, **kwargs):
        folder = resolve_model_folder(path_or_id)
        path = os.path.join(folder, CONFIG_NAME)
        if not os.path.isfile(path):
            raise OSError(f"{path} not found: {path_or_id!r} has no config.json")
        with open(path, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a JSON object of config keys, got {type(d).__name__}")
        try:
            cls = config_class_for(d.get("model_type"))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        cls.check_values(d, path)  # the file's values, named by the file
        config = cls.from_dict(d, **kwargs)
        config._name_or_path = os.fspath(path_or_id)
        config._config_file = path
        return config

    @staticmethod
    def for_model(model_type, **kwargs):
        return config_class_for(model_type)(**kwargs)
