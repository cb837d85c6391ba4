"""Training, evaluation, inference measurement and the mechanisms (augmentation, pruning).

The training step is a plain PyTorch loop over tensors already in memory: no DataLoader workers
(they would add processes the energy model must follow, and cost more than they save here). The
worker moves the data to the run's device once (Device.tensor); these functions accept those
tensors (or host arrays, for tests and tools) and never copy a batch between host and device.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn.utils import prune as torch_prune

from engine.worker.models import Network
from engine.worker.ranks import Ranks

SINGLE = Ranks()  # one process: the run as it always was

# Data as these functions take it: a tensor already on the run's device, or a host array.
Array = torch.Tensor | NDArray[Any]


class Progress(TypedDict):
    """One progress report of `fit` (the worker turns it into a progress event)."""

    phase: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    accuracy: float | None  # a fraction, over the reported batches of this epoch
    samples_per_s: float


class Scores(TypedDict):
    accuracy: float  # a fraction
    f1_macro: float


class SparsityReport(TypedDict):
    weights: int
    zero_weights: int
    sparsity: float  # a fraction


ProgressFn = Callable[[Progress], None]
EpochFn = Callable[[int, float], None]

PROGRESS_EVERY_S = 0.25  # progress events are for people; four a second is plenty
WARMUP_STEPS = 5  # full-batch training steps before the first metered phase (see warm_up)


@dataclass(frozen=True)
class Precision:
    """Mixed precision for the `amp` mechanism: autocast to `dtype` on CUDA; fp16 also scales the
    loss (GradScaler) so small gradients do not underflow. bf16 has fp32's range: no scaler."""

    dtype: torch.dtype

    @staticmethod
    def for_cuda() -> Precision:
        return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def autocast(self) -> torch.autocast:
        return torch.autocast(device_type="cuda", dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None


def _autocast(precision: Precision | None) -> contextlib.AbstractContextManager[object]:
    return precision.autocast() if precision is not None else contextlib.nullcontext()


def as_tensor(a: Array) -> torch.Tensor:
    """A tensor as it is (already on its device), or a host array without a copy."""
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(a)


def as_numpy(a: Array) -> NDArray[Any]:
    return a.cpu().numpy() if isinstance(a, torch.Tensor) else a


# torch leaves Tensor.backward unannotated; this is its type as called here
_backward: Callable[[torch.Tensor], None] = torch.Tensor.backward


def _step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    xb: torch.Tensor,
    yb: torch.Tensor,
    precision: Precision | None,
    scaler: torch.amp.GradScaler | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    optimizer.zero_grad(set_to_none=True)
    with _autocast(precision):
        logits: torch.Tensor = net(xb)
        loss: torch.Tensor = loss_fn(logits, yb)
    if scaler is not None:
        _backward(scaler.scale(loss))
        scaler.step(optimizer)
        scaler.update()
    else:
        _backward(loss)
        optimizer.step()
    return logits, loss


@dataclass
class FitResult:
    samples_seen: int
    steps: int
    final_loss: float


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Jitter, per-channel scaling and, for 3-axis windows, a small random rotation (<= 15 deg).

    Rotation models the phone sitting at a slightly different angle in the pocket; it is applied
    to each consecutive triple of channels (x, y, z of one sensor) with one rotation per window.
    """
    n = x.shape[0]
    scale_shape = (n, x.shape[1], 1) if x.ndim == 3 else (n, x.shape[1])
    # `generator` lives on x's device, so the noise is made there (no host copy)
    x = x * (1 + 0.1 * torch.randn(scale_shape, generator=generator, device=x.device))
    x = x + 0.05 * torch.randn(x.shape, generator=generator, device=x.device)
    if x.ndim == 3 and x.shape[1] % 3 == 0:
        rot = _random_rotations(n, math.radians(15), generator)  # (n, 3, 3)
        triples = x.view(n, x.shape[1] // 3, 3, x.shape[2])
        x = torch.einsum("nij,ncjt->ncit", rot, triples).reshape(x.shape)
    return x


def _random_rotations(n: int, max_angle: float, generator: torch.Generator) -> torch.Tensor:
    device = generator.device
    axis = torch.randn((n, 3), generator=generator, device=device)
    axis = axis / axis.norm(dim=1, keepdim=True)
    angle = (torch.rand((n,), generator=generator, device=device) * 2 - 1) * max_angle
    k = torch.zeros((n, 3, 3), device=device)
    k[:, 0, 1], k[:, 0, 2] = -axis[:, 2], axis[:, 1]
    k[:, 1, 0], k[:, 1, 2] = axis[:, 2], -axis[:, 0]
    k[:, 2, 0], k[:, 2, 1] = -axis[:, 1], axis[:, 0]
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return torch.eye(3, device=device) + s * k + (1 - c) * (k @ k)  # Rodrigues


def _augment_generator(device: torch.device, seed: int, cpu_generator: torch.Generator) -> torch.Generator:
    # On the CPU the shuffle's generator also draws the augmentation, as it always has (same
    # seeds, same runs); on a GPU the noise is drawn there by a generator of its own.
    return cpu_generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed)


def fit(
    net: Network,
    x: Array,
    y: Array,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    augment: bool = False,
    phase: str = "train",
    x_val: Array | None = None,
    y_val: Array | None = None,
    on_progress: ProgressFn | None = None,
    on_epoch: EpochFn | None = None,
    precision: Precision | None = None,
    ranks: Ranks = SINGLE,
) -> FitResult:
    """Train `net` for `epochs`. Over data-parallel `ranks`, each rank trains its share of every
    epoch (DistributedSampler, seeded alike) through DistributedDataParallel; the samples seen are
    summed over every rank, and `on_epoch` (the leader's) validates the shared weights."""
    xt = as_tensor(x)
    yt = as_tensor(y)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    model = _data_parallel(net, xt.device) if ranks.parallel else net
    loss_fn = nn.CrossEntropyLoss()
    scaler = precision.scaler() if precision is not None else None
    generator = torch.Generator().manual_seed(seed)
    aug_generator = _augment_generator(xt.device, seed, generator)
    n = len(xt) if not ranks.parallel else len(_shard(len(xt), ranks, seed, 1))
    # A last batch of one sample is dropped: batch-norm cannot train on it (and one sample of an
    # epoch changes nothing measurable).
    steps_per_epoch = math.ceil(n / batch_size) if n % batch_size != 1 or n == 1 else n // batch_size
    samples_seen = steps = 0
    loss_value = float("nan")
    last_report = 0.0
    window_t, window_samples = time.monotonic(), 0
    for epoch in range(1, epochs + 1):
        net.train()
        # one small index copy per epoch; the batches are gathered on the device
        if ranks.parallel:
            order = torch.tensor(list(_shard(len(xt), ranks, seed, epoch)), device=xt.device)
        else:
            order = torch.randperm(n, generator=generator).to(xt.device)
        correct = seen = 0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            xb, yb = xt[idx], yt[idx]
            if augment:
                xb = augment_batch(xb, aug_generator)
            logits, loss = _step(model, optimizer, loss_fn, xb, yb, precision, scaler)
            steps += 1
            samples_seen += len(idx)
            window_samples += len(idx)
            if on_progress is not None:
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY_S or step == steps_per_epoch - 1:
                    # .item() syncs; only pay for it when reporting.
                    loss_value = loss.item()
                    correct += int((logits.argmax(1) == yb).sum())
                    seen += len(idx)
                    on_progress(
                        {
                            "phase": phase,
                            "epoch": epoch,
                            "epochs": epochs,
                            "step": step + 1,
                            "steps": steps_per_epoch,
                            "loss": loss_value,
                            "accuracy": correct / seen if seen else None,
                            # the ranks step together (each step's gradients are averaged
                            # across them), so the run's rate is this rank's times their number
                            "samples_per_s": window_samples * ranks.world_size / max(now - window_t, 1e-9),
                        }
                    )
                    last_report, window_t, window_samples = now, now, 0
        if on_epoch is not None and x_val is not None and y_val is not None and len(x_val):
            on_epoch(epoch, evaluate(net, x_val, y_val, precision=precision)["accuracy"])
    if on_progress is None:
        loss_value = float(loss.item()) if steps else float("nan")
    return FitResult(samples_seen=ranks.sum(samples_seen), steps=steps, final_loss=loss_value)


def _data_parallel(net: Network, device: torch.device) -> nn.Module:
    """`net` wrapped for data-parallel training (its parameters are shared, not copied)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def _shard(n: int, ranks: Ranks, seed: int, epoch: int) -> torch.utils.data.DistributedSampler[int]:
    """This rank's samples of an epoch: every rank shuffles alike (the seed) and takes its share;
    the sampler repeats a few samples so every rank steps equally often."""
    from torch.utils.data import Dataset, DistributedSampler

    indices = cast("Dataset[int]", range(n))  # the sampler needs only the length
    sampler: DistributedSampler[int] = DistributedSampler(
        indices, num_replicas=ranks.world_size, rank=ranks.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    return sampler


def warm_up(
    net: Network,
    x: Array,
    y: Array,
    *,
    batch_size: int,
    lr: float,
    augment: bool,
    steps: int = WARMUP_STEPS,
    precision: Precision | None = None,
) -> int:
    """Run the exact training step and inference batches of `net` on a throwaway copy, unmetered.

    The first steps in a process pay one-off costs (thread pools, kernel selection and primitive
    caches, the allocator growing its pools). Paid inside a metered phase, they land in whichever
    phase trains first and bias the comparison; paid here, every metered epoch costs what later
    epochs cost. The copy keeps `net`'s weights, frozen layers and batch-norm statistics
    untouched, and the RNG is forked so the seeded run that follows is unchanged. Returns the
    number of training steps taken.
    """
    clone = copy.deepcopy(net)
    params = [p for p in clone.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    scaler = precision.scaler() if precision is not None else None
    xt, yt = as_tensor(x), as_tensor(y)
    # Every batch shape the run will see: full batches, the epoch's last partial batch, and the
    # inference batch sizes of validation, scoring and the timed test.
    tail = len(xt) % batch_size
    shapes = [min(batch_size, len(xt))] * steps + ([tail] if tail > 1 else [])
    with torch.random.fork_rng(devices=[]):
        generator = _augment_generator(xt.device, 0, torch.Generator().manual_seed(0))
        clone.train()
        for n in shapes:
            xb, yb = xt[:n], yt[:n]
            if augment:
                xb = augment_batch(xb, generator)
            _step(clone, optimizer, loss_fn, xb, yb, precision, scaler)
        predict(clone, xt[:1024], precision=precision)  # inference batches of 512 (validation, scoring, timed test)
    return len(shapes)


def predict(net: nn.Module, x: Array, batch_size: int = 512, precision: Precision | None = None) -> NDArray[Any]:
    net.eval()
    out: list[torch.Tensor] = []
    with torch.inference_mode(), _autocast(precision):
        xt = as_tensor(x)
        for i in range(0, len(xt), batch_size):
            out.append(net(xt[i : i + batch_size]).argmax(1))
    # one copy of the predicted labels to the host, not one per batch
    return torch.cat(out).cpu().numpy() if out else np.empty(0, dtype=np.int64)


def macro_f1(y_true: NDArray[Any], y_pred: NDArray[Any], n_classes: int) -> float:
    f1s: list[float] = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn == 0:
            continue  # class absent from both: it neither helps nor hurts
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def evaluate(
    net: nn.Module, x: Array, y: Array, n_classes: int | None = None, precision: Precision | None = None
) -> Scores:
    pred = predict(net, x, precision=precision)
    labels = as_numpy(y)
    n_classes = n_classes or int(max(labels.max(initial=0), pred.max(initial=0)) + 1)
    return {
        "accuracy": float(np.mean(pred == labels)) if len(labels) else 0.0,
        "f1_macro": macro_f1(labels, pred, n_classes),
    }


def timed_inference(
    net: nn.Module,
    x: Array,
    min_seconds: float,
    batch_size: int = 512,
    sync: Callable[[], None] = lambda: None,
    precision: Precision | None = None,
) -> tuple[int, int]:
    """Run inference over `x` repeatedly until at least `min_seconds` have passed (and at least
    once), so that a short test set still spans enough time to be metered. Returns (passes, inferences).

    `sync` waits for the device (Device.sync): the timer reads the clock only after the queued
    passes have run, or a GPU would be timed on kernel launches, not on inference."""
    net.eval()
    xt = as_tensor(x)
    passes = 0
    sync()
    start = time.monotonic()
    with torch.inference_mode(), _autocast(precision):
        while True:
            for i in range(0, len(xt), batch_size):
                net(xt[i : i + batch_size])
            passes += 1
            sync()
            if time.monotonic() - start >= min_seconds:
                break
    return passes, passes * len(xt)


def prunable(net: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Linear)) and m.weight.requires_grad]


def prune_global(net: nn.Module, sparsity: float) -> SparsityReport:
    """Global magnitude (L1) pruning of the trainable conv/linear weights to `sparsity`.

    The mask stays attached so fine-tuning keeps pruned weights at zero; call `finish_pruning`
    afterwards. Unstructured sparsity does not shrink dense compute: FLOPs are unchanged.
    """
    params = prunable(net)
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=sparsity)
    return sparsity_report(net)


def finish_pruning(net: nn.Module) -> None:
    # torch leaves prune.remove unannotated: it makes the pruned weight permanent, in place
    remove: Callable[[nn.Module, str], nn.Module] = torch_prune.remove
    for module, name in prunable(net):
        if torch_prune.is_pruned(module):
            remove(module, name)


def sparsity_report(net: nn.Module) -> SparsityReport:
    total = zeros = 0
    for module in net.modules():
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            w = module.weight
            total += w.numel()
            zeros += int((w == 0).sum())
    return {"weights": total, "zero_weights": zeros, "sparsity": zeros / total if total else 0.0}
