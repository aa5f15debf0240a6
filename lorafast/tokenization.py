"""Tokenizers with Hugging Face names: lorafast.AutoTokenizer, BatchEncoding."""

from .tokenization_utils import AutoTokenizer, BatchEncoding, PreTrainedTokenizer

__all__ = ["AutoTokenizer", "BatchEncoding", "PreTrainedTokenizer"]
