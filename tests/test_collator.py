"""DataCollatorWithPadding against transformers' (same tokenizer, same features)."""

import numpy as np
import pytest

import lorafast
from lorafast.data_collator import DataCollatorWithPadding

transformers = pytest.importorskip("transformers")

TEXTS = ["Forest fire near La Ronge Sask. Canada", "hi", "13,000 people receive #wildfires evacuation orders",
         "Our Deeds are the Reason of this #earthquake"]


@pytest.mark.parametrize("model", ["roberta-large", "sentence-transformers--all-MiniLM-L6-v2"])
@pytest.mark.parametrize("kwargs", [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 40}])
def test_equal_to_transformers(shared, model, kwargs):
    tok = transformers.AutoTokenizer.from_pretrained(str(shared / "models" / model))
    features = [dict(tok(t), label=i % 2) for i, t in enumerate(TEXTS)]
    ref = transformers.DataCollatorWithPadding(tok, return_tensors="np", **kwargs)(features)
    ours = DataCollatorWithPadding(tok, **kwargs)(features)
    assert sorted(ours) == sorted(ref)
    for k in ref:
        np.testing.assert_array_equal(ours[k], ref[k], err_msg=k)
    tok.padding_side = "left"
    ref = transformers.DataCollatorWithPadding(tok, return_tensors="np", **kwargs)(features)
    ours = DataCollatorWithPadding(tok, **kwargs)(features)
    for k in ref:
        np.testing.assert_array_equal(ours[k], ref[k], err_msg=k)


def test_torch_tensors_and_errors(shared):
    torch = pytest.importorskip("torch")
    tok = transformers.AutoTokenizer.from_pretrained(str(shared / "models" / "roberta-large"))
    features = [dict(tok(t), label=1) for t in TEXTS]
    out = lorafast.DataCollatorWithPadding(tok, return_tensors="pt")(features)
    assert isinstance(out["input_ids"], torch.Tensor) and out["labels"].tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="max_length=3"):
        DataCollatorWithPadding(tok, padding="max_length", max_length=3)(features)
    with pytest.raises(ValueError, match="empty"):
        DataCollatorWithPadding(tok)([])

    class NoPad:
        pad_token_id = None

    with pytest.raises(ValueError, match="pad token"):
        DataCollatorWithPadding(NoPad())(features)
