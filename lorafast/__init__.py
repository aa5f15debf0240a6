"""lorafast: LoRA fine-tuning of transformer sequence classifiers, in C and CUDA, with the
names of Hugging Face transformers + peft."""

__version__ = "0.1.0"

from . import _backend
from ._backend import _C
from .configuration import AutoConfig, BertConfig, LlamaConfig, MistralConfig, PretrainedConfig, RobertaConfig
from .modeling import AutoModelForSequenceClassification, SequenceClassifierOutput
from .peft import LoraConfig, PeftModel, PeftModelForSequenceClassification, TaskType, get_peft_model
from .peft import AutoPeftModelForSequenceClassification
from .datasets import Dataset, DatasetDict, load_dataset
from . import metrics
from .data_collator import DataCollatorWithPadding
from .training_args import TrainingArguments
from .trainer import (EvalPrediction, PredictionOutput, Trainer, TrainerCallback, TrainerControl, TrainerState,
                      TrainOutput)
from .tokenization import AutoTokenizer, BatchEncoding, PreTrainedTokenizer


def build_info():
    """Facts about this build: version, compiler, BLAS, OpenMP threads, oneDNN and whether this CPU
    computes bf16 fast (cpu_bf16, cpu_bf16_reason), and CUDA."""
    info = dict(_C.build_info())
    cuda_available, detail = _backend.cuda_status()
    info.update(
        version=__version__,
        blas=_backend.blas_name(),
        cuda_compiled=_backend.cuda_compiled(),
        cuda_available=bool(cuda_available),
        device_name=detail if cuda_available else "cpu",
    )
    if not cuda_available:
        info["cuda_unavailable_reason"] = detail
    return info
