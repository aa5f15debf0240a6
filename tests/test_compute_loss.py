"""A Trainer subclass's compute_loss override, run as written: the C loop computes the logits, the
override computes its loss in torch on them (model(**inputs) returns them), and the gradient of
loss.backward() with respect to the logits goes back into C. Checked against the class_weights=
fast path and against transformers.Trainer + peft running the same class."""

import functools
import sys

import numpy as np
import pytest

import lorafast as lf
from test_trainer import CLASS_WEIGHTS, NOTEBOOK_ARGS, accuracy, hf_tiny, token_rows, torch_collate, tiny_roberta

torch = pytest.importorskip("torch")

STEPS_ARGS = dict(NOTEBOOK_ARGS, max_steps=12, learning_rate=1e-3)  # lr: every tensor moves well past the tolerance
neg_weights, pos_weights = CLASS_WEIGHTS  # the notebook's names


# The reference notebook's class, verbatim, with **kwargs added as current transformers requires.
def weighted_ce_trainer(Trainer):
    class WeightedCELossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            labels = inputs.pop("labels")
            # Get model's predictions
            outputs = model(**inputs)
            logits = outputs.get("logits")
            # Compute custom loss
            loss_fct = torch.nn.CrossEntropyLoss(weight=torch.tensor([neg_weights, pos_weights], device=model.device, dtype=logits.dtype))
            loss = loss_fct(logits.view(-1, self.model.config.num_labels), labels.view(-1))
            return (loss, outputs) if return_outputs else loss

    return WeightedCELossTrainer


# A loss class_weights cannot express; it reads the outputs as a mapping and calls self.model.
def label_smoothing_trainer(Trainer):
    class LabelSmoothingTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = self.model(**inputs)
            loss = torch.nn.functional.cross_entropy(outputs["logits"], labels, label_smoothing=0.2)
            return (loss, outputs) if return_outputs else loss

    return LabelSmoothingTrainer


def hf_run(folder, rows, pad_id, trainer_class):
    import peft
    import transformers

    base = transformers.AutoModelForSequenceClassification.from_pretrained(folder / "base", attn_implementation="eager")
    model = peft.PeftModel.from_pretrained(base, folder / "adapter", is_trainable=True)
    kw = dict(STEPS_ARGS)
    kw["warmup_steps"] = kw.pop("warmup_ratio")  # transformers 5: warmup_steps < 1 is the ratio
    args = transformers.TrainingArguments(output_dir=str(folder / "hf_out"), per_device_train_batch_size=len(rows),
                                          use_cpu=True, **kw)
    trainer = trainer_class(transformers.Trainer)(model=model, args=args, train_dataset=rows,
                                                  data_collator=functools.partial(torch_collate, pad_id=pad_id),
                                                  compute_metrics=accuracy)
    trainer.train()
    tensors = {n.replace(".modules_to_save.default", "").replace(".default.weight", ".weight"): p.detach().numpy()
               for n, p in model.named_parameters() if p.requires_grad}
    return tensors, trainer.state.log_history, trainer.evaluate(eval_dataset=rows)


def lf_run(folder, rows, trainer_class=None, **trainer_kwargs):
    base = lf.AutoModelForSequenceClassification.from_pretrained(folder / "base", num_labels=2)
    model = lf.PeftModel.from_pretrained(base, folder / "adapter", is_trainable=True)
    start = model.trainable_state_dict()
    args = lf.TrainingArguments(output_dir=str(folder / "lf_out"), per_device_train_batch_size=len(rows),
                                **STEPS_ARGS)
    cls = lf.Trainer if trainer_class is None else trainer_class(lf.Trainer)
    trainer = cls(model=model, args=args, train_dataset=rows, compute_metrics=accuracy, **trainer_kwargs)
    out = trainer.train()
    assert out.global_step == 12
    return start, model.trainable_state_dict(), trainer.state.log_history, trainer.evaluate(eval_dataset=rows)


def assert_close(ours, ref, start, tol):
    assert sorted(ours) == sorted(ref)
    for name in ref:
        scale = np.linalg.norm(ref[name])
        rel = np.linalg.norm(ours[name] - ref[name]) / scale
        moved = np.linalg.norm(ref[name] - start[name]) / scale
        assert rel <= tol, f"{name}: relative difference {rel:.3g} after 12 steps"
        assert moved > 50 * tol, f"{name} moved only {moved:.3g}: the test could not tell the runs apart"


def losses(log):
    return [e["loss"] for e in log if "loss" in e]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    cfg = hf_tiny("roberta", folder)
    return folder, token_rows(24, cfg.vocab_size, seed=3, bos=0), cfg.pad_token_id


def test_notebook_weighted_trainer_runs_as_written(tiny):
    folder, rows, pad_id = tiny
    start, fast, fast_log, fast_eval = lf_run(folder, rows, class_weights=CLASS_WEIGHTS)
    start2, ours, log, ours_eval = lf_run(folder, rows, weighted_ce_trainer)
    assert all(np.array_equal(start[k], start2[k]) for k in start)
    assert_close(ours, fast, start, 1e-6)  # the override and the C loss: the same steps
    assert losses(log) == pytest.approx(losses(fast_log), rel=1e-6)
    assert ours_eval["eval_loss"] == pytest.approx(fast_eval["eval_loss"], rel=1e-6)

    ref, ref_log, ref_eval = hf_run(folder, rows, pad_id, weighted_ce_trainer)
    assert_close(ours, ref, start, 1e-4)
    assert losses(log) == pytest.approx(losses(ref_log), rel=1e-4)
    assert ours_eval["eval_loss"] == pytest.approx(ref_eval["eval_loss"], rel=1e-4)
    assert ours_eval["eval_accuracy"] == ref_eval["eval_accuracy"]


def test_label_smoothing_matches_hf(tiny):
    folder, rows, pad_id = tiny
    start, ours, log, ours_eval = lf_run(folder, rows, label_smoothing_trainer)
    ref, ref_log, ref_eval = hf_run(folder, rows, pad_id, label_smoothing_trainer)
    assert_close(ours, ref, start, 1e-4)
    assert losses(log) == pytest.approx(losses(ref_log), rel=1e-4)
    assert ours_eval["eval_loss"] == pytest.approx(ref_eval["eval_loss"], rel=1e-4)
    # and it is not the plain cross-entropy: the default loss trains elsewhere
    _, plain, _, _ = lf_run(folder, rows)
    assert max(np.linalg.norm(plain[k] - ours[k]) / np.linalg.norm(ours[k]) for k in ours) > 1e-3


def test_model_outputs_inside_the_override_behave_as_hf(tiny):
    """labels left in inputs: the model's own loss (transformers' cross-entropy); outputs[0], .loss."""
    folder, rows, _ = tiny
    seen = []

    def default_loss_trainer(Trainer):
        class DefaultLossTrainer(Trainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                outputs = model(**inputs)
                seen.append((outputs.logits.requires_grad, torch.equal(outputs[0], outputs.loss),
                             sorted(outputs.keys()), model.device, inputs["input_ids"].dtype))
                return (outputs.loss, outputs) if return_outputs else outputs.loss

        return DefaultLossTrainer

    _, ours, log, ours_eval = lf_run(folder, rows, default_loss_trainer)
    _, plain, plain_log, plain_eval = lf_run(folder, rows)
    assert seen[0] == (True, True, ["logits", "loss"], "cpu", torch.int64)
    assert seen[-1][0] is False  # evaluation: no grad, as HF's prediction_step
    for k in plain:  # torch's and C's cross-entropy round differently; Adam at lr 1e-3 amplifies it a little
        assert np.linalg.norm(ours[k] - plain[k]) <= 1e-4 * np.linalg.norm(plain[k]), k
    assert ours_eval["eval_loss"] == pytest.approx(plain_eval["eval_loss"], rel=1e-6)


def test_errors_of_the_override_reach_the_caller(tiny, tmp_path):
    folder, rows, _ = tiny
    model = tiny_roberta()
    args = lf.TrainingArguments(output_dir=str(tmp_path), max_steps=2, disable_tqdm=True, save_strategy="no")

    class Raising(lf.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            raise KeyError("my bug")

    with pytest.raises(KeyError, match="my bug"):
        Raising(model=model, args=args, train_dataset=token_rows(8, 97, seed=1, bos=0)).train()

    class NotATensor(lf.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            return 0.5

    with pytest.raises(TypeError, match="NotATensor.compute_loss must return a scalar torch tensor"):
        NotATensor(model=model, args=args, train_dataset=token_rows(8, 97, seed=1, bos=0)).train()

    class Detached(lf.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            return model(**inputs).logits.detach().sum()

    with pytest.raises(RuntimeError, match="does not depend on the logits"):
        Detached(model=model, args=args, train_dataset=token_rows(8, 97, seed=1, bos=0)).train()

    class OtherBatch(lf.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            return model(input_ids=inputs["input_ids"][:1]).logits.sum()

    with pytest.raises(ValueError, match="logits of the batch being trained"):
        OtherBatch(model=model, args=args, train_dataset=token_rows(8, 97, seed=1, bos=0)).train()
    # after all that, the model still runs outside a Trainer
    out = model(input_ids=np.array([[0, 5, 6, 7]]))
    assert out.logits.shape == (1, 2) and isinstance(out.logits, np.ndarray)


def test_without_torch_the_override_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError

    class WeightedCELossTrainer(lf.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            raise AssertionError("never called")

    with pytest.raises(TypeError, match="overrides compute_loss, which needs torch.*class_weights="):
        WeightedCELossTrainer(model=tiny_roberta(), args=lf.TrainingArguments(output_dir=str(tmp_path)))
