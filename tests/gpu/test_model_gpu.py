"""The model on CUDA against the same model on the CPU (the reference implementation): tiny
RoBERTa, BERT, Llama and Mistral checkpoints made with transformers, LoRA with B non-zero, dropout
on in train mode (the device draws the CPU's masks, so they are compared as they are): logits,
loss and every trainable gradient, in f32 (logits 1e-5, gradients 1e-4 relative, norm-wise) and
in bf16 (logits and loss 2e-2, all gradients together 5e-2 and each 1e-1, against the CPU computing
from the same bf16 weights: see TOL), with gradient checkpointing, with gradients accumulated over two
steps; LoRA added after the move; a 3-step Trainer run on CUDA against one on the CPU; and the steps
as CUDA graphs (the default) against the same steps launched one by one.

Runs on a GPU machine against lorafast/_cuda_kernels.so; without one, test_model_emulated.py runs it
against the kernels library built for the CPU emulator (LORAFAST_CUDA_LIBRARY names it); else skipped.
"""

import ctypes
import os
import pathlib
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/: the parity tests' helpers

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

import lorafast as lf  # noqa: E402
from lorafast import _backend, distributed  # noqa: E402
from lorafast.safetensors import load_file, save_file  # noqa: E402
from lorafast.trainer import LOSS_SCALE_INIT  # noqa: E402
from test_decoder import ALL_TARGETS, EOS  # noqa: E402
from test_decoder import hf_config as decoder_config  # noqa: E402
from test_encoder import make_checkpoint, random_batch  # noqa: E402
from test_trainer import CLASS_WEIGHTS, token_rows  # noqa: E402

# grads: each tensor, norm-wise; all_grads: every gradient as one vector. In bf16 a single small gradient
# whose terms cancel can be off by more than the whole: torch's own bf16 run of these four models
# (peft, eager) differs from its f32 run by 0.6-6 % (median over tensors) and up to 16 % per tensor;
# lorafast's device bf16 (f32 accumulation, f32 LoRA) by about 1 % (median). How far a step's gradients
# are depends on which elements dropout drops (the masks themselves are the CPU's: the f32 cases compare
# them at 1e-5): the Llama case over 12 seeds x 3 steps, all gradients together 0.9-3.1 %, the worst tensor
# of a step up to 7.1 % (the same with the earlier attention mask index: 0.9-2.8 %, 8.3 %; over 128 seeds
# x 4 steps the worst tensor reached 21 %).
TOL = {"float32": dict(logits=1e-5, loss=1e-5, grads=1e-4, all_grads=1e-4),
       "bfloat16": dict(logits=2e-2, loss=2e-2, grads=1e-1, all_grads=5e-2)}
ENCODER_TARGETS = ["query", "key", "value", "output.dense", "intermediate.dense"]

# kind: (builder kwargs, num_labels, LoRA targets or None for peft's default). Head size 32: the
# CUDA attention is built for head sizes 32, 64, 80, 96 and 128 (those of the supported models).
KINDS = {
    "roberta": (dict(model_type="roberta", hidden=64, layers=2, heads=2, inter=100, labels=3), 3, ENCODER_TARGETS),
    "bert": (dict(model_type="bert", hidden=96, layers=3, heads=3, inter=52, labels=2), 2, None),
    "llama": (dict(hidden_size=96, num_attention_heads=3, num_key_value_heads=1, intermediate_size=70), 3,
              ALL_TARGETS),
    "mistral": (dict(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, intermediate_size=40), 3, None),
}


@pytest.fixture(scope="module", autouse=True)
def cuda():
    """Skips without a GPU; with one, lorafast must be able to use it."""
    if shutil.which("nvidia-smi") is None and not os.environ.get("LORAFAST_CUDA_LIBRARY"):
        pytest.skip("no GPU: the model runs on CUDA on a machine with one (or emulated: test_model_emulated.py)")
    available, why = _backend.cuda_status()
    assert available, f"a GPU is here but lorafast cannot use it: {why}"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{kind: folder} of tiny random checkpoints saved by transformers, dropout 0.1."""
    folders = {}
    for kind, (kw, _, _) in KINDS.items():
        folder = tmp_path_factory.mktemp(kind)
        if kind in ("roberta", "bert"):
            kw = dict(kw)
            make_checkpoint(folder, kw.pop("model_type"), *kw.values(), seed=0, dropout=0.1)
        else:
            torch.manual_seed(0)
            model = transformers.AutoModelForSequenceClassification.from_config(
                decoder_config(kind, attention_dropout=0.1, **kw), attn_implementation="eager")
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "norm" in name:
                        p.add_(0.2 * torch.randn_like(p))
            model.save_pretrained(folder)
        folders[kind] = folder
    return folders


def batch(kind, seed=0, lengths=(3, 17, 1, 31, 9, 40)):
    """(ids, mask, token_type_ids or None, labels): by default rows of odd lengths, one of a single token."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, KINDS[kind][1], len(lengths))
    if kind in ("roberta", "bert"):
        ids, mask, types = random_batch(rng, kind, [max(n, 2) for n in lengths], with_types=kind == "bert")
        return ids, mask, types, labels
    L = max(lengths)
    ids = np.full((len(lengths), L), EOS, np.int64)
    mask = np.zeros((len(lengths), L), np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(3, 101, n)
        mask[b, :n] = 1
    return ids, mask, None, labels


def lf_model(folder, kind, dtype, device):
    """The lorafast peft model (LoRA r=4, dropout 0.1) on device, B non-zero (every gradient flows).
    On CUDA the base model is moved before LoRA is added (the device copy is made again)."""
    _, num_labels, targets = KINDS[kind]
    base = lf.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=num_labels, dtype=dtype,
                                                                 device=device)
    model = lf.get_peft_model(base, lf.LoraConfig(task_type=lf.TaskType.SEQ_CLS, r=4, lora_alpha=8,
                                                  lora_dropout=0.1, target_modules=targets), seed=1)
    rng = np.random.default_rng(2)
    model.load_trainable_state_dict({k: rng.normal(0.0, 0.2, v.shape).astype(np.float32) if "lora_B" in k else v
                                     for k, v in model.trainable_state_dict().items()})
    return model


def rel(ours, ref):
    return float(np.linalg.norm(np.asarray(ours, np.float64) - ref) / max(np.linalg.norm(ref), 1e-30))


def assert_close(what, ours, ref, tol):
    assert np.shape(ours) == np.shape(ref), f"{what}: shape {np.shape(ours)} != {np.shape(ref)}"
    assert np.isfinite(ours).all(), f"{what}: non-finite values on CUDA"
    assert rel(ours, ref) <= tol, f"{what}: relative difference {rel(ours, ref):.3g} > {tol}"


def assert_grads_close(what, ours, ref, tol):
    assert sorted(ours) == sorted(ref)
    for name in ref:
        assert np.linalg.norm(ref[name]) > 0, f"{what} {name}: the CPU gradient is zero (the test cannot fail)"
        assert_close(f"{what} {name}", ours[name], ref[name], tol["grads"])
    assert_close(f"{what}: all gradients", np.concatenate([np.ravel(ours[n]) for n in sorted(ref)]),
                 np.concatenate([np.ravel(ref[n]) for n in sorted(ref)]), tol["all_grads"])


def host_grads(model):
    return {name: grad.copy() for name, _, grad, _ in model.c_model.params()}


@pytest.mark.parametrize("dtype,checkpointing", [("float32", False), ("float32", True), ("bfloat16", False)])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_cuda_matches_cpu(checkpoints, kind, dtype, checkpointing):
    cpu = lf_model(checkpoints[kind], kind, dtype, None)
    gpu = lf_model(checkpoints[kind], kind, dtype, "cuda")
    assert cpu.device == "cpu" and gpu.device == "cuda:0" and gpu.c_model.device_dtype == dtype
    assert gpu.trainable_state_dict().keys() == cpu.trainable_state_dict().keys()
    if checkpointing:
        cpu.gradient_checkpointing_enable()
        gpu.gradient_checkpointing_enable()
    tol = TOL[dtype]
    ids, mask, types, labels = batch(kind)
    weights = np.array([0.8, 1.3, 1.1][: KINDS[kind][1]], np.float32)

    # eval mode: no dropout
    ref = cpu(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert_close("eval logits", gpu(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, ref,
                 tol["logits"])

    # train mode: dropout everywhere, the same masks on both; each call is a new step (new masks)
    for model in (cpu, gpu):
        model.manual_seed(5)
        model.train()
    ref = cpu(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    assert_close("train logits", gpu(input_ids=ids, attention_mask=mask, token_type_ids=types).logits, ref,
                 tol["logits"])
    for step in range(2):
        ref_loss, ref_grads = cpu.forward_backward(ids, mask, labels, class_weights=weights, token_type_ids=types)
        loss, grads = gpu.forward_backward(ids, mask, labels, class_weights=weights, token_type_ids=types)
        assert abs(loss - ref_loss) <= tol["loss"] * abs(ref_loss), f"step {step}: loss {loss} != {ref_loss}"
        assert_grads_close(f"step {step}", grads, ref_grads, tol)

    # the device's gradients are added into the host's (micro-batches accumulate there); no class weights
    for model in (cpu, gpu):
        model.c_model.zero_grad()
        for _ in range(2):
            model.c_model.forward_backward(ids, mask, labels, None, types)
    assert_grads_close("accumulated", host_grads(gpu), host_grads(cpu), tol)


def test_moving_between_devices(checkpoints):
    kind = "roberta"
    ids, mask, types, _ = batch(kind)
    model = lf_model(checkpoints[kind], kind, None, None)
    ref = model(input_ids=ids, attention_mask=mask).logits
    frozen_f32 = 4 * sum(int(np.prod(shape)) for _, shape, _ in model.c_model.frozen_specs())
    assert model.to("cuda") is model and model.device == "cuda:0" and model.c_model.device_dtype == "float32"
    assert model.c_model.device_bytes > frozen_f32
    assert_close("logits on cuda", model(input_ids=ids, attention_mask=mask).logits, ref, 1e-5)
    f32_bytes = model.c_model.device_bytes
    model.to(dtype="bfloat16")  # the device stays, the compute dtype changes
    assert model.device == "cuda:0" and model.c_model.device_dtype == "bfloat16"
    model.to("cuda")  # no dtype: the current one
    assert model.c_model.device_dtype == "bfloat16"
    assert_close("logits in bf16", model(input_ids=ids, attention_mask=mask).logits, ref, 2e-2)
    assert model.c_model.device_bytes < f32_bytes  # 2-D weights and activations in 2 bytes
    model.to(dtype="float16")
    assert model.device == "cuda:0" and model.c_model.device_dtype == "float16"
    assert_close("logits in fp16", model(input_ids=ids, attention_mask=mask).logits, ref, 2e-2)
    assert model.cpu() is model and model.device == "cpu" and model.c_model.device_bytes == 0
    np.testing.assert_array_equal(model(input_ids=ids, attention_mask=mask).logits, ref)
    model.cuda()
    assert model.device == "cuda:0" and model.c_model.device_dtype == "float32"
    assert_close("logits on cuda again", model(input_ids=ids, attention_mask=mask).logits, ref, 1e-5)


class DeviceBytes(lf.TrainerCallback):
    """The device memory the model holds after each update."""

    def __init__(self, model):
        self.model, self.per_step = model, []

    def on_step_end(self, args, state, control, **kwargs):
        self.per_step.append(self.model.c_model.device_bytes)


def train_three_steps(folder, kind, out_dir, use_cpu, resume=None, trainer_class=lf.Trainer, **kw):
    """(params before, params after, logged losses, eval loss, the trainer) of 3 Trainer updates (kw:
    other TrainingArguments; resume: the checkpoint to resume from); trainer.device_bytes.per_step."""
    model = lf_model(folder, kind, None, None)
    rows = token_rows(24, 97 if kind == "roberta" else 101, seed=3, bos=0 if kind == "roberta" else None,
                      num_labels=KINDS[kind][1])
    settings = dict(output_dir=str(out_dir), max_steps=3, per_device_train_batch_size=6,
                    gradient_accumulation_steps=2, learning_rate=1e-3, max_grad_norm=0.3, weight_decay=0.001,
                    warmup_steps=1, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                    seed=42, use_cpu=use_cpu)
    device_bytes = DeviceBytes(model)
    trainer = trainer_class(model=model, args=lf.TrainingArguments(**{**settings, **kw}), train_dataset=rows,
                            class_weights=CLASS_WEIGHTS + [1.0] * (KINDS[kind][1] - 2), callbacks=[device_bytes])
    trainer.device_bytes = device_bytes
    assert model.device == ("cpu" if use_cpu else "cuda:0")
    start = model.trainable_state_dict()
    trainer.train(resume_from_checkpoint=resume)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return start, model.trainable_state_dict(), losses, trainer.evaluate(eval_dataset=rows)["eval_loss"], trainer


@pytest.mark.parametrize("kind", ["roberta", "llama"])
def test_trainer_three_steps_on_cuda_match_the_cpu(checkpoints, tmp_path, kind):
    start, ref, ref_losses, ref_eval, _ = train_three_steps(checkpoints[kind], kind, tmp_path / "cpu", True)
    _, ours, losses, eval_loss, trainer = train_three_steps(checkpoints[kind], kind, tmp_path / "cuda", False)
    assert sorted(ours) == sorted(ref) and len(losses) == len(ref_losses) == 3
    for name in ref:
        assert np.linalg.norm(ref[name] - start[name]) > 0, f"{name} did not move (the test cannot fail)"
        assert_close(name, ours[name], ref[name], 1e-4)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    assert eval_loss == pytest.approx(ref_eval, rel=1e-4)


class FakePeer(distributed.DataParallel):
    """Rank 0 of a data parallel run of 2 in one process: HF's sharding of the epochs, and an all-reduce whose
    other rank sent a fixed vector (seeded per update): buf = (buf + peer) / 2. It keeps what it was handed.
    Alone, it evaluates the whole set (no peer computes the other shard)."""

    shards_evaluation = False

    def __init__(self):
        self.rank, self.world_size, self.local_rank, self.seconds, self.calls = 0, 2, 0, 0.0, 0
        self.seen = []

    def gradient_all_reduce(self, step_of):
        def reduce(buf):
            self.seen.append(buf.copy())
            peer = np.random.default_rng(len(self.seen)).standard_normal(buf.size).astype(np.float32)
            buf += peer
            buf *= 0.5

        return reduce


class FakePeerTrainer(lf.Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._dp = FakePeer()


def test_data_parallel_gradients_go_through_the_host_on_cuda(checkpoints, tmp_path):
    """Data parallel on CUDA: each update's device gradients come down into the flat buffer the all-reduce
    gets, and its result goes up before clipping and AdamW: the CUDA run with a fake peer rank follows the
    CPU run with the same peer (what the all-reduce was handed, the logged losses, every trainable tensor)."""
    start, ref, ref_losses, _, cpu = train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "cpu", True,
                                                       trainer_class=FakePeerTrainer)
    _, ours, losses, _, gpu = train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "cuda", False,
                                                trainer_class=FakePeerTrainer)
    assert gpu.model.device == "cuda:0" and len(cpu._dp.seen) == len(gpu._dp.seen) == 3
    for i, (a, b) in enumerate(zip(cpu._dp.seen, gpu._dp.seen)):
        assert_close(f"update {i + 1}'s gradients and loss handed to the all-reduce", b, a, 1e-4)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for name in ref:
        assert np.linalg.norm(ref[name] - start[name]) > 0, f"{name} did not move (the test cannot fail)"
        assert_close(name, ours[name], ref[name], 1e-4)


def emulated():
    return bool(os.environ.get("LORAFAST_CUDA_LIBRARY"))


def gpu_count():
    """The GPUs nvidia-smi lists (0 without it)."""
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return 0
    done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return sum(line.startswith("GPU ") for line in done.stdout.splitlines())


def test_a_model_on_cuda_1_computes_there_from_any_thread(checkpoints, tmp_path, monkeypatch):
    """model.to("cuda:1"): the device copy lives on device 1 and every call, from whichever thread, runs there
    (the emulator with 2 devices fails a launch on device 1's stream from a thread whose current device is
    0); a device the process does not see is an error naming it; under a launcher TrainingArguments.device is
    cuda:LOCAL_RANK."""
    import threading

    if emulated():
        monkeypatch.setenv("LF_EMU_DEVICE_COUNT", "2")
    elif gpu_count() < 2:
        pytest.skip("one GPU: cuda:1 needs two (the emulated run has two)")
    kind = "roberta"
    ids, mask, _, labels = batch(kind)
    model = lf_model(checkpoints[kind], kind, None, None)
    ref = model(input_ids=ids, attention_mask=mask).logits
    assert model.to("cuda:1") is model and model.device == "cuda:1" and model.c_model.device_index == 1
    results = {}

    def forward():
        results["logits"] = model(input_ids=ids, attention_mask=mask).logits

    worker = threading.Thread(target=forward)  # its current device is 0 until the library selects 1
    worker.start()
    worker.join()
    assert_close("logits on cuda:1 from another thread", results["logits"], ref, 1e-5)
    model.to(dtype="bfloat16")  # a new copy, on the same device
    assert model.device == "cuda:1" and model.c_model.device_dtype == "bfloat16"
    with pytest.raises(RuntimeError, match=r"device cuda:2 does not exist: this process sees 2 CUDA devices"):
        model.to("cuda:2", dtype="float32")
    model.to("cuda:0")
    assert model.device == "cuda:0"
    assert_close("logits on cuda:0", model(input_ids=ids, attention_mask=mask).logits, ref, 1e-5)
    for name, value in (("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    assert lf.TrainingArguments(output_dir=str(tmp_path)).device == "cuda:1"
    assert lf.TrainingArguments(output_dir=str(tmp_path), use_cpu=True).device == "cpu"


FAKE_NCCL = pathlib.Path(__file__).with_name("fake_nccl.c")


class FakeNcclPeer(distributed.DataParallel):
    """Rank 0 of 2 with ddp_backend="nccl" in one process: the unique id goes through a real gloo process group
    (of this one process), the communicator and the all-reduce through the fake libnccl (fake_nccl.c), whose
    other rank adds 0.01 * k to every element at update k. Alone, it evaluates the whole set."""

    shards_evaluation = False
    timeout_s = 30.0  # ddp_timeout

    def __init__(self):
        self.rank, self.world_size, self.local_rank, self.seconds, self.calls = 0, 2, 0, 0.0, 0
        self.backend, self.timeout = "nccl", self.timeout_s
        self.torch, self.dist = torch, torch.distributed


class FakeGlooPeer(FakePeer):
    """The CPU reference of FakeNcclPeer: the host all-reduce with the fake's other rank, buf / 2 + 0.01 * k."""

    def gradient_all_reduce(self, step_of):
        def reduce(buf):
            self.seen.append(buf.copy())
            buf /= np.float32(2)
            buf += np.float32(0.01) * np.float32(len(self.seen))

        return reduce


class FakeNcclTrainer(lf.Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._dp = FakeNcclPeer()


class FakeGlooTrainer(lf.Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._dp = FakeGlooPeer()


@pytest.fixture()
def fake_nccl(tmp_path, monkeypatch):
    """The fake libnccl built here, named by LORAFAST_NCCL_LIBRARY, its calls logged; a gloo group of this process
    for the id's handover. On a GPU the real NCCL runs instead (tests/gpu/test_ddp_gpu.py)."""
    import subprocess

    if not emulated():
        pytest.skip("the fake NCCL runs on the emulated CUDA; a GPU runs the real one (test_ddp_gpu.py)")
    library = tmp_path / "libnccl.so.2"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o", str(library), str(FAKE_NCCL)],
                   check=True)
    log = tmp_path / "nccl.log"
    monkeypatch.setenv("LORAFAST_NCCL_LIBRARY", str(library))
    monkeypatch.setenv("FAKE_NCCL_LOG", str(log))
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield log
    torch.distributed.destroy_process_group()


def test_data_parallel_nccl_reduces_the_device_gradients(checkpoints, tmp_path, fake_nccl, monkeypatch):
    """ddp_backend="nccl" on the emulated CUDA with the fake libnccl: NCCL missing at a path is an error naming
    it; rank 0 makes the unique id, which reaches the communicator (through the process group); each update is
    one in-place f32 sum over the device gradients and the loss, divided by the world size first, before
    clipping and AdamW: the run follows the CPU run whose host all-reduce adds the same peer share. A failing
    ncclAllReduce stops training with the gloo path's error and aborts the communicator."""
    import gc

    with pytest.raises(RuntimeError, match=r"cannot open NCCL \(/nonexistent/libnccl.so.2\)"):
        lf._C.nccl_open("/nonexistent/libnccl.so.2")
    start, ref, ref_losses, _, cpu = train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "cpu", True,
                                                       trainer_class=FakeGlooTrainer)
    _, ours, losses, _, gpu = train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "cuda", False,
                                                trainer_class=FakeNcclTrainer)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
    for name in ref:
        assert np.linalg.norm(ref[name] - start[name]) > 0, f"{name} did not move (the test cannot fail)"
        assert_close(name, ours[name], ref[name], 1e-4)
    numel = cpu._dp.seen[0].size  # the params' floats and the loss, without the device's alignment gaps
    lines = fake_nccl.read_text().splitlines()
    assert lines[:2] == ["unique_id", "init 2 0 fake-nccl-id"], lines
    reduces = [line.split() for line in lines[2:]]
    assert len(reduces) == 3 and all(r[0] == "all_reduce" and r[2:] == ["7", "0", "1"] for r in reduces), lines
    assert len({r[1] for r in reduces}) == 1 and int(reduces[0][1]) >= numel  # one size: the flat device buffer
    del gpu
    gc.collect()
    assert fake_nccl.read_text().splitlines()[-1] == "destroy"
    # the second update's all-reduce fails: the gloo path's error, the communicator aborted
    monkeypatch.setenv("FAKE_NCCL_FAIL_AT", "2")
    with pytest.raises(RuntimeError, match=r"data parallel: rank 0 of 2: the gradient all-reduce of update 2 failed "
                                           r"\(RuntimeError: the NCCL all-reduce of \d+ floats \(rank 0 of 2\): NCCL "
                                           r"error 6 .*connection to rank 1 was closed\)\. Another rank died or did "
                                           r"not reach this update within ddp_timeout=30s"):
        train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "fails", False, trainer_class=FakeNcclTrainer)
    assert fake_nccl.read_text().splitlines()[-1] == "abort"
    # the device never finishes the all-reduce (the emulator's stream stays busy): an asynchronous NCCL error
    # ends the wait, or else ddp_timeout does; both abort the communicator
    monkeypatch.delenv("FAKE_NCCL_FAIL_AT")
    monkeypatch.setenv("LF_EMU_STREAM_QUERY_BUSY", "1")
    monkeypatch.setenv("FAKE_NCCL_ASYNC_ERROR", "1")
    with pytest.raises(RuntimeError, match=r"all-reduce of update 1 failed \(RuntimeError: the NCCL all-reduce of "
                                           r"\d+ floats \(rank 0 of 2\): NCCL error 6 \(remote process exited"):
        train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "async", False, trainer_class=FakeNcclTrainer)
    assert fake_nccl.read_text().splitlines()[-1] == "abort"
    monkeypatch.delenv("FAKE_NCCL_ASYNC_ERROR")
    monkeypatch.setattr(FakeNcclPeer, "timeout_s", 0.5)
    with pytest.raises(RuntimeError, match=r"all-reduce of update 1 failed \(RuntimeError: the NCCL all-reduce of "
                                           r"\d+ floats \(rank 0 of 2\): not done within 0.5 s \(NCCL communicator "
                                           r"aborted\)\)\. Another rank died or did not reach this update within "
                                           r"ddp_timeout=0.5s"):
        train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "hangs", False, trainer_class=FakeNcclTrainer)
    assert fake_nccl.read_text().splitlines()[-1] == "abort"
    monkeypatch.delenv("LF_EMU_STREAM_QUERY_BUSY")
    # the gradients are on the device only with the model there
    with pytest.raises(ValueError, match="ddp_backend='nccl' all-reduces the gradients on the GPU"):
        train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "cpu2", True, trainer_class=FakeNcclTrainer)


class WeightedLossTrainer(lf.Trainer):
    """The notebook's WeightedCELossTrainer, its weights on the logits' device (this torch may have no CUDA)."""

    def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.get("logits")
        num_labels = self.model.config.num_labels  # train_three_steps' weights: the notebook's, then 1
        weight = torch.tensor(CLASS_WEIGHTS + [1.0] * (num_labels - 2), device=logits.device, dtype=logits.dtype)
        loss = torch.nn.CrossEntropyLoss(weight=weight)(logits.view(-1, num_labels), labels.view(-1))
        return (loss, outputs) if return_outputs else loss


@pytest.mark.parametrize("fp16", [False, True])
def test_compute_loss_override_on_cuda_follows_the_device_loss(checkpoints, tmp_path, fp16):
    """A compute_loss override on CUDA: the logits come down, the override's gradient goes up (times the
    fp16 loss scale) for the device's backward: the same steps as the device's class-weighted loss."""
    kw = dict(fp16=True) if fp16 else {}
    start, ref, ref_losses, ref_eval, _ = train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "a", False,
                                                            **kw)
    _, ours, losses, eval_loss, trainer = train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "b", False,
                                                            trainer_class=WeightedLossTrainer, **kw)
    assert trainer.model.device == "cuda:0" and trainer._loop["skipped_steps"] == 0
    tol = 1e-2 if fp16 else 1e-5
    for name in ref:
        assert np.linalg.norm(ref[name] - start[name]) > 0, f"{name} did not move (the test cannot fail)"
        assert_close(name, ours[name], ref[name], tol)
    np.testing.assert_allclose(losses, ref_losses, rtol=tol)
    assert eval_loss == pytest.approx(ref_eval, rel=tol)


def logged(trainer, key):
    return [e[key] for e in trainer.state.log_history if "loss" in e]


@pytest.mark.parametrize("kind", ["roberta", "mistral"])
def test_trainer_fp16_scales_the_loss_and_follows_the_cpu(checkpoints, tmp_path, kind):
    """fp16=True on CUDA: float16 compute with torch.amp.GradScaler's dynamic loss scaling, as HF's
    Trainer: the loss is scaled by 65536 in backward and the gradients unscaled before clipping, so the
    logged losses and gradient norms follow the float32 CPU run (fp16's precision) and no update is
    skipped."""
    start, _, ref_losses, _, ref = train_three_steps(checkpoints[kind], kind, tmp_path / "cpu", True)
    _, ours, losses, _, trainer = train_three_steps(checkpoints[kind], kind, tmp_path / "cuda", False, fp16=True)
    assert trainer.model.c_model.device_dtype == "float16"
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-2)
    np.testing.assert_allclose(logged(trainer, "grad_norm"), logged(ref, "grad_norm"), rtol=5e-2)
    np.testing.assert_allclose(logged(trainer, "learning_rate"), logged(ref, "learning_rate"), rtol=1e-12)
    for name in start:
        assert np.isfinite(ours[name]).all() and np.linalg.norm(ours[name] - start[name]) > 0, name
    skipped, scale = trainer._loop["skipped_steps"], trainer._loop["loss_scale"]
    assert (skipped, scale) == (0, LOSS_SCALE_INIT)


def test_trainer_fp16_overflow_skips_the_update(checkpoints, tmp_path):
    """A float16 overflow (here in the forward: intermediate weights that push the activations past
    65504) makes every gradient non-finite: each update is skipped as torch.amp.GradScaler skips
    optimizer.step(), the params, moments and learning-rate schedule stay, the scale halves each time."""
    folder = tmp_path / "overflowing"
    shutil.copytree(checkpoints["roberta"], folder)
    weights = load_file(str(folder / "model.safetensors"))
    for name in weights:
        if "intermediate.dense.weight" in name:
            weights[name] = weights[name] * np.float32(2e5)
    save_file(weights, str(folder / "model.safetensors"))
    start, ours, losses, _, trainer = train_three_steps(folder, "roberta", tmp_path / "cuda", False, fp16=True)
    for name in start:
        np.testing.assert_array_equal(ours[name], start[name], err_msg=name)
    assert not np.isfinite(logged(trainer, "grad_norm")).any()
    assert len(set(logged(trainer, "learning_rate"))) == 1  # the schedule did not advance
    assert not np.any(trainer._loop["exp_avg"]) and not np.any(trainer._loop["exp_avg_sq"])
    skipped, scale = trainer._loop["skipped_steps"], trainer._loop["loss_scale"]
    assert (skipped, scale) == (3, LOSS_SCALE_INIT / 8)


def test_trainer_on_cuda_resumes_from_a_checkpoint(checkpoints, tmp_path):
    """A checkpoint written during a CUDA run holds the device's params and AdamW moments (they are
    copied back for it): resuming from it at step 2 ends where the uninterrupted 4-step run ends."""
    kw = dict(max_steps=4, save_strategy="steps", save_steps=2)
    _, whole, losses, _, _ = train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "a", False, **kw)
    checkpoint = tmp_path / "a" / "checkpoint-2"
    assert checkpoint.is_dir()
    _, resumed, resumed_losses, _, _ = train_three_steps(checkpoints["roberta"], "roberta", tmp_path / "a", False,
                                                        resume=str(checkpoint), **kw)
    for name in whole:
        assert_close(name, resumed[name], whole[name], 1e-5)
    np.testing.assert_allclose(resumed_losses, losses, rtol=1e-5)


def test_trainer_on_cuda_plans_its_memory_up_front(checkpoints, tmp_path):
    """The run's device memory is reserved at its start for batches of its longest example: with one
    long example among short ones, the step that meets it allocates nothing more."""
    rows = token_rows(23, 97, seed=5, bos=0, min_len=4, max_len=6, num_labels=3)
    rows.insert(18, token_rows(1, 97, seed=6, bos=0, min_len=60, max_len=60, num_labels=3)[0])
    model = lf_model(checkpoints["roberta"], "roberta", None, "cuda")
    device_bytes = DeviceBytes(model)
    args = lf.TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=6,
                                save_strategy="no", report_to="none", disable_tqdm=True, seed=42)
    lf.Trainer(model=model, args=args, train_dataset=rows, callbacks=[device_bytes]).train()
    per_step = device_bytes.per_step
    assert len(per_step) == 4 and per_step[0] > 0 and len(set(per_step)) == 1, per_step


def emulator_count(name):
    """The emulator's count `name` so far (a C function of the emulated library); None on a GPU."""
    path = os.environ.get("LORAFAST_CUDA_LIBRARY")
    lib = ctypes.CDLL(path) if path else None  # the library _C opened (the same handle)
    if lib is None or not hasattr(lib, name):
        return None
    getattr(lib, name).restype = ctypes.c_longlong
    return getattr(lib, name)()


def emulator_launches():
    """(kernels launched directly, graphs launched) so far, on the emulator; None on a GPU."""
    if emulator_count("emu_graph_launch_count") is None:
        return None
    return emulator_count("emu_direct_launch_count"), emulator_count("emu_graph_launch_count")


@pytest.mark.parametrize("kind", ["roberta", "mistral"])
def test_graphs_match_launches_one_by_one(checkpoints, kind, monkeypatch, capfd):
    """Graphed steps (each batch padded to its bucket with a ghost sequence, or none for a batch of 64 tokens,
    a bucket; dropout seeds read on the device) against the same model launching kernel by kernel
    (LORAFAST_CUDA_GRAPHS=0): eval logits, train logits, losses and gradients at 1e-5 over batches of
    changing sizes (a small batch first, so the buffers grow under the graphs), each call a new step with
    new dropout masks."""
    monkeypatch.setenv("LORAFAST_CUDA_GRAPHS", "0")
    direct = lf_model(checkpoints[kind], kind, None, "cuda")
    monkeypatch.delenv("LORAFAST_CUDA_GRAPHS")
    graphed = lf_model(checkpoints[kind], kind, None, "cuda")
    weights = np.array([0.8, 1.3, 1.1], np.float32)
    for model in (direct, graphed):
        model.manual_seed(5)
    mixed, on_bucket = batch(kind), batch(kind, seed=1, lengths=(32, 32))
    for (ids, mask, types, labels), rows in ((mixed, [0, 2]), (mixed, [0, 1, 2, 3, 4, 5]), (on_bucket, [0, 1]),
                                             (mixed, [1, 4])):
        cut = [a if a is None else a[rows] for a in (ids, mask, types)]
        for model in (direct, graphed):
            model.eval()
        assert_close(f"rows {rows}: eval logits", graphed(input_ids=cut[0], attention_mask=cut[1]).logits,
                     direct(input_ids=cut[0], attention_mask=cut[1]).logits, 1e-5)
        for model in (direct, graphed):
            model.train()
        assert_close(f"rows {rows}: train logits", graphed(input_ids=cut[0], attention_mask=cut[1]).logits,
                     direct(input_ids=cut[0], attention_mask=cut[1]).logits, 1e-5)
        for step in range(2):
            ref_loss, ref_grads = direct.forward_backward(cut[0], cut[1], labels[rows], class_weights=weights)
            loss, grads = graphed.forward_backward(cut[0], cut[1], labels[rows], class_weights=weights)
            assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss), f"rows {rows} step {step}: {loss} != {ref_loss}"
            assert_grads_close(f"rows {rows} step {step}", grads, ref_grads, TOL["float32"])
    err = capfd.readouterr().err  # on a GPU too: the graphs were captured, not given up
    assert "running the CUDA steps without graphs" not in err, err
    counts = emulator_launches()
    if counts is not None:  # a replay is one graph launch and no kernel launched by itself
        before = counts
        graphed.forward_backward(cut[0], cut[1], labels[rows], class_weights=weights)
        after = emulator_launches()
        assert (after[0] - before[0], after[1] - before[1]) == (0, 1), (before, after)
        direct.forward_backward(cut[0], cut[1], labels[rows], class_weights=weights)
        again = emulator_launches()
        assert again[0] - after[0] > 30 and again[1] == after[1], (after, again)


class PaddedSizes(ctypes.Structure):
    """lf_batch (csrc/models/model.h): the sizes, then the arrays (unused here)"""
    _fields_ = [("T", ctypes.c_int), ("B", ctypes.c_int), ("max_len", ctypes.c_int)] + [
        (name, ctypes.c_void_p) for name in ("tokens", "positions", "token_types", "offsets", "pool_index", "labels")]


@pytest.mark.parametrize("given,padded", [
    ((256, 8, 32), (256, 8, 32)),  # 8 tweets of 32 tokens: on a bucket, no ghost
    ((64, 2, 31), (64, 2, 32)),
    ((250, 8, 40), (256, 9, 64)),  # a ghost of 6 tokens; the longest, 40, to 64
    ((230, 8, 30), (256, 9, 32)),  # the ghost of 26 tokens is shorter than 30 -> 32
    ((65, 2, 33), (128, 3, 64)),  # the ghost of 63 tokens is the longest
    ((1, 1, 1), (64, 2, 64)),
])
def test_a_graph_pads_a_batch_only_where_tokens_are_missing(given, padded):
    """The sizes a graph runs a batch as (kernels/device_graph.cu): T up to a multiple of 64 (below 1024) by a
    ghost sequence only when T is not one already; the longest sequence, the ghost's included, up to 32."""
    lib = ctypes.CDLL(os.environ.get("LORAFAST_CUDA_LIBRARY") or _backend.CUDA_LIBRARY)
    graph_batch = lib._Z19lf_cuda_graph_batchPK8lf_batch  # lf_cuda_graph_batch(const lf_batch *), C++
    graph_batch.restype, graph_batch.argtypes = PaddedSizes, [ctypes.POINTER(PaddedSizes)]
    out = graph_batch(ctypes.byref(PaddedSizes(*given)))
    assert (out.T, out.B, out.max_len) == padded


@pytest.mark.parametrize("graphs", ["0", "1"])
def test_a_known_shape_queries_no_cublaslt_heuristic(checkpoints, graphs, monkeypatch):
    """cuBLASLt's descriptors and algorithm are planned once per product: the steps after a shape's first
    ask the heuristic nothing, launched one by one or captured (the second step) and replayed."""
    if emulator_count("emu_heuristic_query_count") is None:
        pytest.skip("the emulator counts cuBLASLt's heuristic queries")
    monkeypatch.setenv("LORAFAST_CUDA_GRAPHS", graphs)
    model = lf_model(checkpoints["roberta"], "roberta", None, "cuda")
    model.train()
    # one sequence of 37 tokens: a batch size no other test runs directly, so its first step plans
    ids, mask, _ = random_batch(np.random.default_rng(7), "roberta", [37])
    queries = []
    for step in range(4):
        before = emulator_count("emu_heuristic_query_count")
        model.forward_backward(ids, mask, np.array([1]))
        queries.append(emulator_count("emu_heuristic_query_count") - before)
    assert queries[1:] == [0, 0, 0], queries
    if graphs == "0":
        assert queries[0] > 0, queries


def test_tf32_computes_the_f32_products_in_tf32_and_is_off_by_default(checkpoints, tmp_path):
    """TrainingArguments(tf32=True) turns the f32 products to TF32 (inputs rounded to 10 mantissa bits, f32
    accumulation; the emulator rounds as the tensor cores do): the logits leave the CPU's full f32 by
    TF32's rounding, far more than f32's 1e-5 and far less than bf16's; tf32=False, as without the flag,
    computes in full f32 again. Four calls each: run directly, captured, replayed (the mode is the graph's)."""
    kind = "roberta"
    cpu, gpu = (lf_model(checkpoints[kind], kind, None, device) for device in (None, "cuda"))
    ids, mask, _, _ = batch(kind)
    for model in (cpu, gpu):
        model.eval()
    ref = cpu(input_ids=ids, attention_mask=mask).logits
    for _ in range(4):
        assert_close("tf32 unset", gpu(input_ids=ids, attention_mask=mask).logits, ref, 1e-5)
    try:
        lf.TrainingArguments(output_dir=str(tmp_path), tf32=True)
        for _ in range(4):
            d = rel(gpu(input_ids=ids, attention_mask=mask).logits, ref)
            assert 1e-5 < d < 5e-3, f"TF32 logits {d:.3g} from the CPU's"
    finally:
        lf.TrainingArguments(output_dir=str(tmp_path), tf32=False)
    for _ in range(4):
        assert_close("tf32=False", gpu(input_ids=ids, attention_mask=mask).logits, ref, 1e-5)


def test_a_graph_cuda_refuses_falls_back_to_launches(checkpoints, monkeypatch, capfd):
    """When CUDA cannot instantiate a step's graph (the emulator's LF_EMU_REFUSE_GRAPHS=1), the model says
    so once on stderr and runs its steps kernel by kernel, with the CPU's results."""
    if emulator_launches() is None:
        pytest.skip("refusing graphs is the emulator's fault injection")
    kind = "roberta"
    cpu = lf_model(checkpoints[kind], kind, None, None)
    gpu = lf_model(checkpoints[kind], kind, None, "cuda")
    ids, mask, types, labels = batch(kind)
    for model in (cpu, gpu):
        model.manual_seed(5)
        model.train()
    monkeypatch.setenv("LF_EMU_REFUSE_GRAPHS", "1")
    before = emulator_launches()
    for step in range(3):  # the first call runs directly, the second tries to capture, the third follows
        ref_loss, ref_grads = cpu.forward_backward(ids, mask, labels)
        loss, grads = gpu.forward_backward(ids, mask, labels)
        assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss), f"step {step}: loss {loss} != {ref_loss}"
        assert_grads_close(f"step {step}", grads, ref_grads, TOL["float32"])
    after = emulator_launches()
    assert after[1] == before[1] and after[0] - before[0] > 3 * 30, (before, after)
    err = capfd.readouterr().err
    assert err.count("lorafast: running the CUDA steps without graphs") == 1, err
