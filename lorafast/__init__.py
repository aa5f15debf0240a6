"""lorafast: LoRA fine-tuning of transformer sequence classifiers, in C and CUDA, with the
names of Hugging Face transformers + peft."""

__version__ = "0.1.0"

from . import _backend
from ._backend import _C


def build_info():
    """Facts about this build: version, compiler, BLAS, OpenMP threads and CUDA."""
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


__all__ = ["build_info", "__version__"]

from .datasets import Dataset, DatasetDict, load_dataset  # noqa: E402

__all__ += ["Dataset", "DatasetDict", "load_dataset"]

from . import metrics  # noqa: E402
from .data_collator import DataCollatorWithPadding  # noqa: E402
from .training_args import TrainingArguments  # noqa: E402

__all__ += ["metrics", "DataCollatorWithPadding", "TrainingArguments"]
