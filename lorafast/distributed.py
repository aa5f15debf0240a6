"""Data parallel training across processes, as the HF Trainer turns into DDP under a launcher.

- The launcher's environment, read as transformers / accelerate read it: torchrun and `accelerate
  launch` set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; mpiexec sets
  OMPI_COMM_WORLD_* (Open MPI) or PMI_RANK / PMI_SIZE / MPI_LOCALRANKID (MPICH), and then, as
  accelerate does, the rendezvous is MASTER_ADDR (default 127.0.0.1) : MASTER_PORT (default 29500).
- The engine is torch.distributed (gloo; "mpi" where torch was built with it): the process group is
  made once, with TrainingArguments.ddp_timeout as its timeout, unless the script made one already.
  ddp_backend="nccl" (a model on CUDA): the gradients are reduced on the device by NCCL's C API (the
  nvidia-nccl-cu13 wheel's libnccl.so.2, opened by the kernels library); the process group is still gloo,
  and hands rank 0's NCCL unique id to the others.
- Each epoch's examples on each rank are HF's: the seeded permutation of accelerate's
  SeedableRandomSampler (torch.randperm with a generator seeded data_seed (or seed) + epoch), cut into
  per-device batches that go round robin to the ranks (accelerate's BatchSamplerShard: global batch
  i to rank i % world_size), the last round filled up from the start of the permutation unless
  dataloader_drop_last.
- The C loop calls `GradientAllReduce` once per optimizer update, after the micro-batches and before
  clipping (csrc/train/loop.c): the model's flat f32 buffer of the update's gradients and loss,
  handed over without a copy (torch.from_numpy over C's memory), becomes its mean over the ranks.
  On CUDA with gloo that buffer is on the host: the gradients come down, are all-reduced by gloo, and go up;
  with NCCL the buffer holds the loss alone and the device gradients are reduced where they are.
"""

import atexit
import datetime
import os
import time

import numpy as np

__all__ = ["launcher_env", "epoch_size", "shard_order", "DataParallel"]

# (rank, world size, local rank) variables of each launcher, first found wins (accelerate's order)
_RANK = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
_WORLD = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
_LOCAL = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK")
BACKENDS = ("gloo", "mpi", "nccl")
NCCL_WHEEL = "nvidia-nccl-cu13"


def check_backend(backend):
    """A ValueError unless ddp_backend is None (gloo) or one lorafast runs on."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"ddp_backend={backend!r} is not supported: lorafast all-reduces its gradients with one "
                         f"of {BACKENDS} (nccl: on the GPU, the others from host memory)")


def nccl_library(environ=None):
    """The path of libnccl.so.2: LORAFAST_NCCL_LIBRARY, else the nvidia-nccl-cu13 wheel's (lorafast's gpu
    extra). A RuntimeError naming the wheel when it is not installed."""
    environ = os.environ if environ is None else environ
    if environ.get("LORAFAST_NCCL_LIBRARY"):
        return environ["LORAFAST_NCCL_LIBRARY"]
    from importlib import metadata

    try:
        files = metadata.distribution(NCCL_WHEEL).files or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "libnccl.so.2":
            return str(f.locate())
    raise RuntimeError(f"ddp_backend='nccl' needs NCCL's library (libnccl.so.2) from the {NCCL_WHEEL} wheel, which "
                       f"is not installed: pip install 'lorafast[gpu]' (or pip install {NCCL_WHEEL})")


def _int_env(names, default, environ):
    for name in names:
        if name in environ:
            try:
                return int(environ[name]), name
            except ValueError:
                raise ValueError(f"the launcher's environment variable {name}={environ[name]!r} is not an integer") \
                    from None
    return default, None


def launcher_env(environ=None):
    """(rank, world_size, local_rank) of this process from the launcher's environment; (0, 1, -1)
    without a launcher. A ValueError naming the variable when they do not make sense."""
    environ = os.environ if environ is None else environ
    world, world_name = _int_env(_WORLD, 1, environ)
    rank, rank_name = _int_env(_RANK, 0, environ)
    local, _ = _int_env(_LOCAL, -1, environ)
    if world < 1:
        raise ValueError(f"{world_name}={world}: the world size must be >= 1")
    if not 0 <= rank < world:
        raise ValueError(f"{rank_name or 'RANK'}={rank} is outside [0, {world}) ({world_name or 'WORLD_SIZE'}={world})")
    return rank, world, local


def _torch_dist(backend):
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise ImportError("lorafast runs data parallel (a launcher set WORLD_SIZE > 1) on torch.distributed: "
                          "install torch (pip install 'lorafast[ddp]')") from None
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed: lorafast cannot run data parallel with it")
    if backend == "mpi" and not dist.is_mpi_available():
        raise ValueError("ddp_backend='mpi' needs a torch built with MPI; this one is not: use ddp_backend='gloo'")
    return torch, dist


def epoch_size(n, batch_size, world_size, drop_last):
    """The examples each of world_size ranks sees per epoch of n: whole batches, as many on every rank."""
    per_round = batch_size * world_size
    rounds = n // per_round if drop_last else -(-n // per_round)
    if rounds < 1:
        raise ValueError(f"dataloader_drop_last with {n} examples, per_device_train_batch_size={batch_size} and "
                         f"{world_size} processes leaves no batch")
    return rounds * batch_size


def shard_order(n, epoch, seed, batch_size, world_size, rank, drop_last):
    """Rank's examples (int64) of epoch `epoch` of n, as HF's Trainer under torchrun feeds them: accelerate's
    SeedableRandomSampler (torch.randperm(n) from a generator seeded seed + epoch), per-device batches dealt
    round robin (BatchSamplerShard, even_batches), the last round completed from the permutation's start."""
    import torch

    g = torch.Generator()
    g.manual_seed(int(seed) + int(epoch))
    perm = torch.randperm(n, generator=g).numpy()
    size = epoch_size(n, batch_size, world_size, drop_last)
    rounds = perm[np.arange(size * world_size) % n].reshape(-1, world_size, batch_size)
    return np.ascontiguousarray(rounds[:, rank, :].reshape(-1), dtype=np.int64)


class DataParallel:
    """This process's place in a data parallel run and its process group (made here unless the
    script made one). world_size 1: not distributed, nothing is made."""

    backend = "gloo"
    _nccl = None  # (device, communicator) with ddp_backend="nccl", made by nccl_setup
    shards_evaluation = True  # evaluate / predict: each rank its eval batches, gathered (Trainer)

    def __init__(self, args):
        self.rank, self.world_size, self.local_rank = launcher_env()
        self.seconds = 0.0  # time spent in the gradient all-reduce (the bench reads it)
        self.calls = 0
        if self.world_size == 1:
            return
        check_backend(args.ddp_backend)
        self.backend = args.ddp_backend or "gloo"
        backend = "gloo" if self.backend == "nccl" else self.backend  # nccl: gloo hands out NCCL's id
        self.torch, self.dist = _torch_dist(backend)
        self.timeout = float(args.ddp_timeout)
        if not self.dist.is_initialized():
            env = os.environ
            env.setdefault("MASTER_ADDR", "127.0.0.1")  # mpiexec sets neither: accelerate's defaults
            env.setdefault("MASTER_PORT", "29500")
            self.dist.init_process_group(backend, rank=self.rank, world_size=self.world_size,
                                         timeout=datetime.timedelta(seconds=self.timeout))
            atexit.register(self._destroy)  # the group we made goes before the interpreter, its threads joined
        elif (self.dist.get_rank(), self.dist.get_world_size()) != (self.rank, self.world_size):
            raise RuntimeError(f"the process group has rank {self.dist.get_rank()} of {self.dist.get_world_size()}, "
                               f"the launcher's environment says {self.rank} of {self.world_size}")

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def on_device(self):
        """True when the gradients are all-reduced on the GPU (ddp_backend="nccl")."""
        return self.enabled and self.backend == "nccl"

    def nccl_setup(self, c_model, device):
        """The NCCL communicator of this rank on cuda:device (made once per device): every rank opens NCCL (a
        failure anywhere fails every rank with its message), rank 0 makes the unique id, the process group hands
        it out, and each rank joins."""
        from ._backend import _C

        if self._nccl is not None and self._nccl[0] == device:
            self._model = c_model
            return
        try:
            _C.nccl_open(nccl_library())
            problem = None
        except RuntimeError as e:
            problem = f"rank {self.rank}: {e}"
        problems = [None] * self.dist.get_world_size()
        self.dist.all_gather_object(problems, problem)
        problems = [p for p in problems if p]
        if problems:
            raise RuntimeError("data parallel with ddp_backend='nccl': " + "; ".join(problems))
        unique_id = [_C.nccl_unique_id() if self.rank == 0 else None]
        self.dist.broadcast_object_list(unique_id, src=0)
        self._nccl = (device, _C.nccl_comm(unique_id[0], self.world_size, self.rank, device))
        self._model = c_model

    def epoch_size(self, n, batch_size, drop_last):
        """The examples each rank sees per epoch."""
        return epoch_size(n, batch_size, self.world_size, drop_last)

    def epoch_order(self, n, seed, batch_size, drop_last):
        """(order(epoch) -> this rank's examples of the epoch, their number)."""
        size = self.epoch_size(n, batch_size, drop_last)
        return (lambda epoch: shard_order(n, epoch, seed, batch_size, self.world_size, self.rank, drop_last)), size

    def gradient_all_reduce(self, step_of):
        """The C loop's grad_reduce: buf (the update's gradients, then its loss) replaced by its mean over the
        ranks, in place; a peer that died or did not answer within ddp_timeout is a RuntimeError saying so.
        step_of() names the update."""
        torch, dist, W = self.torch, self.dist, self.world_size

        def all_reduce(buf):
            if self.on_device:  # buf: the loss alone; the gradients are on the device
                from ._backend import _C

                _C.nccl_all_reduce(self._model, self._nccl[1], buf, self.timeout)
                return
            t = torch.from_numpy(buf)  # C's buffer itself
            t.div_(W)  # DDP divides before it sums
            dist.all_reduce(t)

        def reduce(buf):
            start = time.perf_counter()
            try:
                all_reduce(buf)
            except Exception as e:
                raise RuntimeError(
                    f"data parallel: rank {self.rank} of {W}: the gradient all-reduce of update {step_of() + 1} failed "
                    f"({type(e).__name__}: {e}). Another rank died or did not reach this update within "
                    f"ddp_timeout={self.timeout:g}s; this rank stops.") from e
            self.seconds += time.perf_counter() - start
            self.calls += 1

        return reduce

    def _destroy(self):
        if self.dist.is_initialized():
            self.dist.destroy_process_group()

    def gather(self, obj):
        """[obj of rank 0, obj of rank 1, ...] on every rank (all_gather_object over the process group)."""
        out = [None] * self.world_size
        self.dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        if self.enabled:
            self.dist.barrier()
