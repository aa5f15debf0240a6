"""One rank of a data parallel run for tests/test_ddp.py, started by torchrun (or by the test with the
launcher's variables set): `python ddp_worker.py MODE FOLDER`.

MODE hf: transformers.Trainer + peft (the notebook's WeightedCELossTrainer) on FOLDER/base + FOLDER/adapter;
lf: lorafast's Trainer on the same, on the CPU; lf-cuda: the same on CUDA (rank r on cuda:LOCAL_RANK, or all
on cuda:0 with LORAFAST_TEST_SHARE_GPU=1), the gradients through the host and gloo; lf-nccl: the same with
ddp_backend="nccl" (the gradients all-reduced on the device); mpi: lf's run started by mpiexec (MPICH's PMI_* variables; the engine is still gloo); resume: lorafast's on the CPU from lf's FOLDER/lf_out/checkpoint-6 (epoch 1's end); die: lorafast's,
where rank 1 exits at update 2 (the others must fail with a clear error); hang: rank 1 stops answering at
update 2 (sleeps), the others must fail after ddp_timeout; dropout: the first update's local gradients of
each rank on the same rows with and without dropout (FOLDER/dropout-rankR.npz); hf-dropout: HF's dropout masks
of each rank's first forward on the same rows (FOLDER/hf-dropout-rankR.npz). Each rank writes its final trainable tensors to FOLDER/MODE-rankR.npz and, lf, the
log and the paths under output_dir it created, changed or removed (seen by an audit hook) to
FOLDER/MODE-rankR.json."""

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_trainer import CLASS_WEIGHTS, NOTEBOOK_ARGS, hf_train, token_rows  # noqa: E402

# the notebook's arguments for 3 epochs in per-device batches of 4, a checkpoint per epoch
DDP_ARGS = dict(max_steps=-1, num_train_epochs=3, per_device_train_batch_size=4, save_strategy="epoch",
                ddp_backend="gloo")
N_ROWS = 46  # 2 ranks x 4: 6 updates per epoch, the last round filled up with 2 repeated examples
VOCAB, PAD = 97, 1


def rows():
    return token_rows(N_ROWS, VOCAB, seed=3, bos=0)


def writes_under(folder):
    """Paths under folder that this process opens for writing, creates, renames or removes (audit hook)."""
    folder = os.path.realpath(folder)
    seen = []

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            paths = [path] if writing else []
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            paths = [args[0]]
        elif event == "os.rename":
            paths = list(args[:2])
        else:
            return
        for p in paths:
            if isinstance(p, (str, bytes, os.PathLike)) and not isinstance(p, int):
                p = os.fsdecode(p)
                if os.path.realpath(p).startswith(folder):
                    seen.append(p)

    sys.addaudithook(hook)
    return seen


def lorafast_run(folder, mode):
    import lorafast as lf

    lf._C.set_num_threads(1)
    out = os.path.join(folder, f"{mode}_out")
    seen = writes_under(out)
    base = lf.AutoModelForSequenceClassification.from_pretrained(os.path.join(folder, "base"), num_labels=2)
    model = lf.PeftModel.from_pretrained(base, os.path.join(folder, "adapter"), is_trainable=True)
    kw = {**NOTEBOOK_ARGS, **DDP_ARGS}
    if mode == "lf-nccl":
        kw["ddp_backend"] = "nccl"
    if os.environ.get("LORAFAST_TEST_SHARE_GPU") == "1":
        os.environ["LOCAL_RANK"] = "0"  # every rank on cuda:0: the one GPU shared on purpose
    if mode in ("die", "hang"):
        kw.update(ddp_timeout=20 if mode == "die" else 5, save_strategy="no")

    class Die(lf.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if mode == "die" and rank == 1 and state.global_step == 2:
                os._exit(3)
            if mode == "hang" and rank == 1 and state.global_step == 2:
                time.sleep(600)

    args = lf.TrainingArguments(output_dir=out, gradient_checkpointing=True,
                                use_cpu=mode not in ("lf-cuda", "lf-nccl"), **kw)
    rank = args.process_index
    trainer = lf.Trainer(model=model, args=args, train_dataset=rows(), class_weights=CLASS_WEIGHTS, callbacks=[Die])
    trainer.train(resume_from_checkpoint=os.path.join(folder, "lf_out", "checkpoint-6") if mode == "resume" else None)
    trainer.save_model()
    np.savez(os.path.join(folder, f"{mode}-rank{rank}.npz"), **model.trainable_state_dict())
    with open(os.path.join(folder, f"{mode}-rank{rank}.json"), "w") as f:
        json.dump({"log_history": trainer.state.log_history, "writes": seen,
                   "world_size": args.world_size, "process_index": args.process_index,
                   "is_world_process_zero": trainer.is_world_process_zero()}, f)


def eval_run(folder):
    """lorafast: evaluate and predict on 2 ranks (sharded), with eval batches of 5 over 23 rows: each rank's
    metrics and predictions to FOLDER/eval-rankR.npz / .json."""
    import lorafast as lf
    from test_trainer import accuracy

    lf._C.set_num_threads(1)
    computed = []  # the examples of each batch this rank computed
    predict = lf._C.predict

    def counting(model, ids, offsets, *rest):
        computed.append(len(offsets) - 1)
        return predict(model, ids, offsets, *rest)

    lf._C.predict = counting
    base = lf.AutoModelForSequenceClassification.from_pretrained(os.path.join(folder, "base"), num_labels=2)
    model = lf.PeftModel.from_pretrained(base, os.path.join(folder, "adapter"), is_trainable=True)
    args = lf.TrainingArguments(output_dir=os.path.join(folder, "eval_out"), use_cpu=True,
                                **{**NOTEBOOK_ARGS, **DDP_ARGS, "per_device_eval_batch_size": 5})
    trainer = lf.Trainer(model=model, args=args, eval_dataset=rows()[:23], compute_metrics=accuracy,
                         class_weights=CLASS_WEIGHTS)
    metrics = trainer.evaluate()
    predicted = trainer.predict(rows()[23:])
    np.savez(os.path.join(folder, f"eval-rank{args.process_index}.npz"), predictions=predicted.predictions,
             label_ids=predicted.label_ids)
    with open(os.path.join(folder, f"eval-rank{args.process_index}.json"), "w") as f:
        json.dump({"eval": metrics, "test": predicted.metrics, "computed": computed}, f)


def same_rows():
    """N_ROWS copies of one row: every rank's batches are the same, so only dropout can tell them apart."""
    return [rows()[0]] * N_ROWS


def dropout_run(folder):
    """lorafast: the first update's local gradient on each rank (before the all-reduce), training the same rows
    on every rank with hidden and LoRA dropout 0.1 and, as a control, with dropout 0."""
    import lorafast as lf
    from lorafast import distributed
    from test_trainer import tiny_roberta

    lf._C.set_num_threads(1)
    local = {}
    wrap = distributed.DataParallel.gradient_all_reduce

    def recording(self, step_of):
        reduce = wrap(self, step_of)

        def first_local(buf):
            local.setdefault(key, buf.copy())
            reduce(buf)

        return first_local

    distributed.DataParallel.gradient_all_reduce = recording
    for key, p in (("dropout", 0.1), ("no_dropout", 0.0)):
        args = lf.TrainingArguments(output_dir=os.path.join(folder, "dropout_out"), use_cpu=True,
                                    **{**NOTEBOOK_ARGS, **DDP_ARGS, "max_steps": 1, "save_strategy": "no"})
        trainer = lf.Trainer(model=tiny_roberta(dropout=p, lora_dropout=p), args=args, train_dataset=same_rows())
        trainer.train()
    np.savez(os.path.join(folder, f"dropout-rank{args.process_index}.npz"), **local)


def hf_dropout_run(folder):
    """transformers.Trainer + peft under torchrun with dropout 0.1 on the same rows on every rank: the masks of
    every nn.Dropout of the first training forward (torch's RNG, seeded by the Trainer on each rank)."""
    import torch
    import transformers
    import peft
    from test_trainer import torch_collate

    torch.set_num_threads(1)
    cfg = transformers.RobertaConfig(vocab_size=VOCAB, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                     intermediate_size=40, max_position_embeddings=40, num_labels=2,
                                     pad_token_id=PAD, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    torch.manual_seed(0)
    model = peft.get_peft_model(transformers.AutoModelForSequenceClassification.from_config(cfg),
                                peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.1))
    masks = {}

    def hook(name):
        def record(module, inputs, output):
            if module.training and name not in masks:
                masks[name] = (output == 0).numpy()
        return record

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout):
            module.register_forward_hook(hook(name))
    kw = {**NOTEBOOK_ARGS, **DDP_ARGS, "max_steps": 1, "save_strategy": "no"}
    kw["warmup_steps"] = kw.pop("warmup_ratio")
    args = transformers.TrainingArguments(output_dir=os.path.join(folder, "hf_dropout_out"), use_cpu=True, **kw)
    transformers.Trainer(model=model, args=args, train_dataset=same_rows(),
                         data_collator=lambda f: torch_collate(f, PAD)).train()
    np.savez(os.path.join(folder, f"hf-dropout-rank{os.environ['RANK']}.npz"), **masks)


def hf_run(folder):
    import torch

    torch.set_num_threads(1)
    tensors, log, _ = hf_train(__import__("pathlib").Path(folder), rows(), PAD, CLASS_WEIGHTS, evaluate=False,
                               **DDP_ARGS)
    rank = int(os.environ["RANK"])
    np.savez(os.path.join(folder, f"hf-rank{rank}.npz"), **tensors)
    with open(os.path.join(folder, f"hf-rank{rank}.json"), "w") as f:
        json.dump({"log_history": log}, f)


if __name__ == "__main__":
    mode, folder = sys.argv[1], sys.argv[2]
    if mode == "hf":
        hf_run(folder)
    elif mode == "hf-dropout":
        hf_dropout_run(folder)
    elif mode == "dropout":
        dropout_run(folder)
    elif mode == "eval":
        eval_run(folder)
    else:
        lorafast_run(folder, mode)
