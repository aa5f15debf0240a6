"""notebooks/disaster_tweets_lora.ipynb executed with nbclient on a short run (a subset of each
split, 2 epochs) on the real MiniLM weights: its metrics, its best-model bookkeeping and its
adapter, which peft loads and which predicts on the test rows what the notebook predicted."""

import json
import os

import numpy as np
import pytest

from conftest import REPO, minilm_folder

NOTEBOOK = REPO / "notebooks" / "disaster_tweets_lora.ipynb"
ROWS, EPOCHS = 24, 2


def test_notebook_short_run(shared, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch = pytest.importorskip("torch")
    sk = pytest.importorskip("sklearn.metrics")
    import lorafast
    folder = minilm_folder()
    out = tmp_path / "out"
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports this checkout's lorafast
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # as in test_cli's short run
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("LORAFAST_SHARED", str(shared))
    monkeypatch.setenv("LORAFAST_NOTEBOOK_OUTPUT", str(out))
    monkeypatch.setenv("LORAFAST_NOTEBOOK_MAX_SAMPLES", str(ROWS))
    monkeypatch.setenv("LORAFAST_NOTEBOOK_EPOCHS", str(EPOCHS))
    monkeypatch.delenv("LORAFAST_NOTEBOOK_MODEL", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()

    outputs = "".join(o.get("text", "") + json.dumps(o.get("data", {})) for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "trainable params: 19,202 || all params: 22,733,188 || trainable%: 0.0845" in outputs
    results = json.loads((out / "results.json").read_text())
    assert os.path.realpath(results["model"]) == os.path.realpath(folder)

    # one evaluation per epoch with the notebook's metrics, then trainer.evaluate() of the best
    # epoch (lowest loss), restored at the end (as in HF, evaluate() is logged too)
    evals = [e for e in results["log_history"] if "eval_loss" in e]
    assert [e["epoch"] for e in evals] == [1.0, 2.0, 2.0]
    for metrics in evals:
        for name in ("precision", "recall", "f1-score", "accuracy"):
            assert 0.0 <= metrics["eval_" + name] <= 1.0
    best = min(evals[:EPOCHS], key=lambda e: e["eval_loss"])
    assert results["eval"] == {k: v for k, v in evals[-1].items() if k != "step"}
    assert results["eval"]["eval_loss"] == pytest.approx(best["eval_loss"], rel=1e-5)
    assert results["train"]["train_runtime"] > 0

    # the split and class weights the notebook used are datasets' 80/20 split, seed 42
    split = lorafast.load_dataset("csv", data_files=str(shared / "data" / "disaster_tweets" / "train.csv"),
                                  split="train").train_test_split(train_size=0.8, seed=42)
    labels = np.asarray(split["train"]["target"][:ROWS])
    assert results["class_weights"] == [len(labels) / (2 * (labels == 0).sum()), len(labels) / (2 * (labels == 1).sum())]

    # peft loads the saved adapter and predicts on the test rows what the notebook predicted
    adapter = out / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(os.listdir(adapter))
    base = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    model = peft.PeftModel.from_pretrained(base, str(adapter)).eval()
    test = lorafast.load_dataset("csv", data_files=str(shared / "data" / "disaster_tweets" / "test.csv"),
                                 split="train").select(range(ROWS))
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    enc = tok(test["text"], padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**enc).logits.argmax(-1).numpy()
    np.testing.assert_array_equal(results["test_predictions"], predicted)
    assert results["test"]["test_f1-score"] == pytest.approx(sk.f1_score(test["target"], predicted), abs=1e-12)
    assert results["test"]["test_accuracy"] == pytest.approx(sk.accuracy_score(test["target"], predicted), abs=1e-12)
