"""One model shared between threads: calls are serialised (same logits as from one thread), a call
from another thread while the model trains is a clear RuntimeError, and the training thread itself
(its callbacks) may still use the model."""

import threading

import numpy as np
import pytest

import lorafast as lf
from test_trainer import token_rows, tiny_roberta


def batches(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        B, L = int(rng.integers(1, 6)), int(rng.integers(4, 30))
        ids = rng.integers(3, 97, (B, L))
        ids[:, 0] = 0
        mask = (np.arange(L)[None, :] < rng.integers(2, L + 1, B)[:, None]).astype(np.int64)
        out.append((ids, mask))
    return out


@pytest.mark.parametrize("threads", [2, 4])
def test_threads_on_one_model_get_the_single_threaded_logits(threads):
    model = tiny_roberta()
    work = batches(24, seed=threads)
    expected = [model(input_ids=ids, attention_mask=mask).logits for ids, mask in work]
    results, errors = {}, []

    def run(t):
        try:
            for rep in range(4):
                for i, (ids, mask) in enumerate(work):
                    if (i + t) % threads == rep % threads:
                        results[(t, rep, i)] = model(input_ids=ids, attention_mask=mask).logits
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for p in pool:
        p.start()
    for p in pool:
        p.join()
    assert not errors
    assert len(results) == 24 * 4
    for (t, rep, i), logits in results.items():
        np.testing.assert_array_equal(logits, expected[i], err_msg=f"thread {t}, batch {i}")


def test_a_call_from_another_thread_during_training_is_refused(tmp_path):
    model = tiny_roberta()
    ids, mask = batches(1, seed=5)[0]
    before = model(input_ids=ids, attention_mask=mask).logits
    in_step, resume = threading.Event(), threading.Event()
    inside = []

    class Pause(lf.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                # the training thread itself may use its model (a callback of its run)
                inside.append(model(input_ids=ids, attention_mask=mask).logits)
                in_step.set()
                assert resume.wait(60)

    args = lf.TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4,
                                save_strategy="no", disable_tqdm=True, learning_rate=1e-2)
    trainer = lf.Trainer(model=model, args=args, train_dataset=token_rows(16, 97, seed=2, bos=0),
                         callbacks=[Pause()])
    errors = []

    def train():
        try:
            trainer.train()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=train)
    t.start()
    try:
        assert in_step.wait(60)
        with pytest.raises(RuntimeError, match="being trained in another thread"):
            model(input_ids=ids, attention_mask=mask)
        with pytest.raises(RuntimeError, match="being trained in another thread"):
            model.train()
        with pytest.raises(RuntimeError, match="being trained in another thread"):
            trainer.predict(token_rows(3, 97, seed=4, bos=0))
    finally:
        resume.set()
        t.join()
    assert not errors and trainer.state.global_step == 4
    assert inside[0].shape == before.shape and np.isfinite(inside[0]).all()
    # after the run the model serves every thread again, with the trained weights
    out = []
    other = threading.Thread(target=lambda: out.append(model(input_ids=ids, attention_mask=mask).logits))
    other.start()
    other.join()
    np.testing.assert_array_equal(out[0], model(input_ids=ids, attention_mask=mask).logits)
    assert not np.allclose(out[0], before)
