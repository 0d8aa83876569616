"""Where a training stands after an epoch, saved so that a killed run continues from there.

After every epoch :func:`save_training_state` writes everything the next epoch depends on: the
model's and the objective's extra modules' weights, the optimiser (Adam's moments), the
learning-rate schedule, the loss weighting (GradNorm's weights and its own Adam), the batch
order's and the augmentations' random generators, torch's and numpy's global random states,
the epoch, the best epoch so far with its weights and score, and the history. A run resumed
from it draws the same batches and takes the same steps as one that was never stopped, so on
the CPU it ends bit-identical (tested). The file holds tensors, numbers and strings only and is
read with ``torch.load(..., weights_only=True)``, like every checkpoint of the project.

The write is atomic (temp file and rename): a kill during the write leaves the previous epoch's
state, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ecg_pipeline.io.atomic import atomic_target

__all__ = ["RESUME_FILE", "load_training_state", "restore_random_state", "save_training_state"]

RESUME_FILE = "resume.pt"


def save_training_state(
    path: Path,
    *,
    epoch: int,
    model,
    objective_modules: list,
    optimiser,
    scheduler,
    weighting,
    generators: list[torch.Generator],
    best_epoch: int,
    best_score: float,
    best_state: dict[str, torch.Tensor] | None,
    history: list[dict],
    fingerprint: str,
    settings: dict | None = None,
) -> None:
    """Write the state after ``epoch`` to ``path`` (atomically). ``settings`` (the training
    settings the fingerprint covers) lets a refused resume name what differs."""
    np_kind, np_keys, np_pos, np_gauss, np_cached = np.random.get_state()
    state = {
        "fingerprint": fingerprint,
        "settings": json.dumps(settings or {}, sort_keys=True, default=str),
        "epoch": epoch,
        "model": model.state_dict(),
        "objective_modules": [m.state_dict() for m in objective_modules],
        "optimiser": optimiser.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "weighting": weighting.state_dict(),
        "generators": [g.get_state() for g in generators],
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": {
            "kind": np_kind,
            "keys": torch.as_tensor(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_gauss),
            "cached_gaussian": float(np_cached),
        },
        "best_epoch": best_epoch,
        "best_score": float(best_score),
        "best_state": best_state if best_state is not None else {},
        # JSON text: history rows hold floats, ints and NaN, kept exactly as computed.
        "history": json.dumps(history),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path, fingerprint: str, settings: dict | None = None) -> dict | None:
    """The saved state at ``path``, or None when there is none.

    Raises
    ------
    ValueError
        The state was saved by a training with other settings or data (its fingerprint
        differs): resuming it would mix two trainings. The message names each differing
        setting, or says that the windows or the split differ.
    """
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        saved = json.loads(state.get("settings") or "{}")
        now = json.loads(json.dumps(settings or {}, sort_keys=True, default=str))
        differing = [
            f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}"
            for k in sorted(set(saved) | set(now))
            if saved.get(k) != now.get(k)
        ]
        what = "; ".join(differing) or "the same settings, but other windows, split or network"
        raise ValueError(
            f"{path}: saved by another training ({what}); resume with the settings it was "
            "started with, or remove the file to start over"
        )
    state["history"] = json.loads(state["history"])
    return state


def restore_random_state(state: dict, generators: list[torch.Generator]) -> None:
    """Put the random generators back where the saved epoch left them."""
    for g, saved in zip(generators, state["generators"], strict=True):
        g.set_state(saved)
    torch.set_rng_state(state["torch_rng"])
    rng = state["numpy_rng"]
    keys = rng["keys"].numpy().astype(np.uint32)
    np.random.set_state((rng["kind"], keys, rng["pos"], rng["has_gauss"], rng["cached_gaussian"]))
