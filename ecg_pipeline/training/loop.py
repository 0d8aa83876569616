"""The training loop: Adam, per-task losses, loss weighting, model selection on validation.

One loop for every model and mode: supervised training (cross-entropy per head, the default
objective) and self-supervised pre-training (``objective=``, see
:mod:`ecg_pipeline.training.objectives`) differ only in the objective.

The whole training set lives on the device as one tensor (a few MB), so a step never waits on a
data loader; batches are index slices of a seeded permutation.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecg_pipeline.config import TrainingSettings
from ecg_pipeline.training.augment import augment_batch
from ecg_pipeline.training.objectives import Supervised, parameters_of
from ecg_pipeline.training.resume import (
    load_training_state,
    restore_random_state,
    save_training_state,
)
from ecg_pipeline.training.weighting import build_weighting


@dataclass
class FitResult:
    """What training produced: the best model's weights and the per-epoch history."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    weighting_state: dict[str, torch.Tensor] | None = None


def choose_device(setting: str = "auto") -> torch.device:
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Same seed, same numbers on the CPU (and as close as cuDNN allows on a GPU)."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: torch.Tensor, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """Per-task logits for every row of ``x`` (evaluation mode, no gradient)."""
    model.eval()
    outs: dict[str, list[torch.Tensor]] = {}
    for idx in _batches(len(x), batch_size, None):
        for task, logits in model(x[idx]).items():
            outs.setdefault(task, []).append(logits)
    return {task: torch.cat(parts) for task, parts in outs.items()}


def fit(
    model: nn.Module,
    x: np.ndarray,
    labels: dict[str, np.ndarray],
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    settings: TrainingSettings,
    *,
    fs_hz: float = 100.0,
    on_epoch: Callable[[dict], None] | None = None,
    objective=None,
    resume_file: Path | None = None,
) -> FitResult:
    """Train ``model`` on ``train_idx`` and keep the epoch that scores best on ``val_idx``.

    With no validation windows (recordings too short for ``val_fraction``), there is nothing to
    choose on: the last epoch is kept, its history rows carry a NaN ``val_score``, and a
    warning says so (the identity threshold has the matching fallback, see
    :mod:`~ecg_pipeline.training.calibration`).

    Parameters
    ----------
    model : nn.Module
        A multi-task network whose ``forward`` returns ``{task: logits}`` and whose
        ``shared_layer()`` is GradNorm's last shared parameter.
    x : np.ndarray
        (N, C, T) float32 windows.
    labels : dict
        Task name to (N,) int64 class indices; the task order is the weighting's order.
    train_idx, val_idx : np.ndarray
        Row indices; validation comes from the training side, never from the test side.
    settings : TrainingSettings
        Epochs, batch size, learning rate, seed, weighting, and the departures from the paper
        (augmentation, weight decay, label smoothing, cosine schedule) when switched on.
    fs_hz : float
        The windows' sampling rate, for augmentations stated in seconds or hertz.
    on_epoch : callable, optional
        Called with each epoch's history row (for a progress bar or a tracker).
    objective : optional
        What to minimise; default :class:`~ecg_pipeline.training.objectives.Supervised` over
        ``labels``. A pre-training objective ignores ``labels`` (pass ``{}``) and brings its own
        modules (a decoder, a projection head), trained alongside and not returned.
    resume_file : Path, optional
        Where the state after each epoch is saved (:mod:`~ecg_pipeline.training.resume`); when
        it already holds one from the same settings and windows, training continues after its
        epoch instead of starting over, and ends as an uninterrupted run would.

    Returns
    -------
    FitResult
        History rows hold, per task, the training loss and accuracy, the validation loss and
        accuracy, and the task's loss weight at the end of the epoch.
    """
    seed_everything(settings.seed)
    device = choose_device(settings.device)
    if settings.cpu_threads and device.type == "cpu":
        torch.set_num_threads(settings.cpu_threads)
    model = model.to(device)
    xt = torch.as_tensor(x, device=device)
    yt = {t: torch.as_tensor(labels[t], device=device) for t in labels}
    if objective is None:
        objective = Supervised(yt, settings.label_smoothing)
    for module in objective.modules():
        module.to(device)
    tasks = list(objective.tasks)
    train = torch.as_tensor(train_idx, device=device)
    val = torch.as_tensor(val_idx, device=device)
    x_val = xt[val]

    params = list(parameters_of(model, objective))
    if settings.weight_decay:
        optimiser = torch.optim.AdamW(
            params, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
    else:
        optimiser = torch.optim.Adam(params, lr=settings.learning_rate)
    scheduler = None
    if settings.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs)
    weighting = build_weighting(
        settings.weighting, len(tasks), alpha=settings.gradnorm_alpha, lr=settings.gradnorm_lr
    )
    generator = torch.Generator().manual_seed(settings.seed)
    # A second stream, so switching augmentation on does not change the batch order.
    augment_generator = torch.Generator().manual_seed(settings.seed + 1)
    result = FitResult()
    best_score = -np.inf
    first_epoch = 1
    extra_modules = list(objective.modules())
    if resume_file is not None:
        fingerprint = training_fingerprint(settings, x, train_idx, val_idx, model)
        saved = load_training_state(resume_file, fingerprint, _described(settings, model))
        if saved is not None:
            model.load_state_dict(saved["model"])
            for module, state in zip(extra_modules, saved["objective_modules"], strict=True):
                module.load_state_dict(state)
            optimiser.load_state_dict(saved["optimiser"])
            if scheduler is not None:
                scheduler.load_state_dict(saved["scheduler"])
            weighting.load_state_dict(saved["weighting"])
            restore_random_state(saved, [generator, augment_generator])
            result.history = saved["history"]
            result.best_epoch, best_score = saved["best_epoch"], saved["best_score"]
            result.best_state = saved["best_state"] or None
            first_epoch = saved["epoch"] + 1
    if len(val) == 0:
        warnings.warn(
            "no validation windows (the recordings are too short for val_fraction): "
            "nothing to choose an epoch on, the last of the "
            f"{settings.epochs} epochs is kept",
            stacklevel=2,
        )
    for epoch in range(first_epoch, settings.epochs + 1):
        model.train()
        for module in objective.modules():
            module.train()
        sums = {t: [0.0, 0, 0] for t in tasks}  # loss*n, correct, n
        for batch in _batches(len(train), settings.batch_size, generator):
            if len(batch) < 2:
                continue  # BatchNorm cannot train on a single window
            idx = train[batch.to(device)]
            xb = xt[idx]
            if settings.augment.enabled:
                xb = augment_batch(xb, settings.augment, fs_hz, augment_generator)
            losses, correct = objective.batch(model, xb, idx, augment_generator)
            total = weighting.step(losses, objective.shared_layer(model))
            optimiser.zero_grad(set_to_none=True)
            total.backward()
            optimiser.step()
            for i, t in enumerate(tasks):
                sums[t][0] += float(losses[i].detach()) * len(idx)
                sums[t][1] += correct.get(t, 0)
                sums[t][2] += len(idx)
        row: dict = {"epoch": epoch, "lr": optimiser.param_groups[0]["lr"]}
        if scheduler is not None:
            scheduler.step()
        weights = weighting.weights.tolist()
        for i, t in enumerate(tasks):
            row[f"{t}_train_loss"] = sums[t][0] / max(sums[t][2], 1)
            if isinstance(objective, Supervised):
                row[f"{t}_train_acc"] = sums[t][1] / max(sums[t][2], 1)
            row[f"{t}_weight"] = weights[i]
        if len(val):
            row.update(objective.validate(model, x_val, val))
        else:
            row["val_score"] = float("nan")
        result.history.append(row)
        # Without a usable score (no validation windows, or a NaN loss) the last epoch is kept.
        last_resort = epoch == settings.epochs and result.best_state is None
        if row["val_score"] > best_score or last_resort:
            best_score = row["val_score"] if row["val_score"] > best_score else best_score
            result.best_epoch = epoch
            result.best_state = copy.deepcopy(
                {k: v.detach().cpu() for k, v in model.state_dict().items()}
            )
        if resume_file is not None:
            save_training_state(
                resume_file,
                epoch=epoch,
                model=model,
                objective_modules=extra_modules,
                optimiser=optimiser,
                scheduler=scheduler,
                weighting=weighting,
                generators=[generator, augment_generator],
                best_epoch=result.best_epoch,
                best_score=best_score,
                best_state=result.best_state,
                history=result.history,
                fingerprint=fingerprint,
                settings=_described(settings, model),
            )
        if on_epoch is not None:
            on_epoch(row)
    result.weighting_state = weighting.state_dict()
    model.load_state_dict(result.best_state)
    return result


def training_fingerprint(
    settings: TrainingSettings, x: np.ndarray, train_idx, val_idx, model
) -> str:
    """What a saved state must match to be resumed: the settings, the windows' shape, the
    training and validation rows and the network's parameter shapes."""
    import hashlib

    kept = settings.model_dump_json(exclude=_NOT_RESUMABLE)
    digest = hashlib.sha256(kept.encode())
    digest.update(repr(tuple(x.shape)).encode())
    for rows in (train_idx, val_idx):
        digest.update(np.asarray(rows, dtype=np.int64).tobytes())
    digest.update(repr([(k, tuple(v.shape)) for k, v in model.state_dict().items()]).encode())
    return digest.hexdigest()[:16]


def _resumable_settings(settings: TrainingSettings) -> dict:
    """The settings a result depends on. Where and how fast it runs is not: a resume may use
    another machine's threads or device."""
    return settings.model_dump(mode="json", exclude=_NOT_RESUMABLE)


_NOT_RESUMABLE = {"cpu_threads", "device", "out_dir"}


def _described(settings: TrainingSettings, model: nn.Module) -> dict:
    """What a refused resume names when it differs: the settings and the network's class."""
    named = {f"training.{k}": v for k, v in _resumable_settings(settings).items()}
    return {**named, "network": type(model).__name__}
