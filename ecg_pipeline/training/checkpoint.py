"""Checkpoints without pickles: a state_dict file plus a JSON file that says how to rebuild."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ecg_pipeline.io.atomic import atomic_target, atomic_write_text

WEIGHTS_FILE = "model.pt"
SPEC_FILE = "model.json"


def save_checkpoint(folder: str | os.PathLike, model: nn.Module, spec: dict) -> Path:
    """Write ``model.pt`` (tensors only) and ``model.json`` (model name, options, classes).

    ``spec`` must hold what :func:`ecg_pipeline.models.build_model` needs: ``name``,
    ``in_channels``, ``n_samples``, ``heads`` and ``options``; plus ``classes`` per task.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    # The JSON is written with sorted keys; the heads' order (which is the order of a tuple
    # export's outputs) is kept as a list beside them.
    spec = {**spec, "head_order": list(spec["heads"])}
    with atomic_target(folder / WEIGHTS_FILE) as tmp:
        torch.save(state, tmp)
    atomic_write_text(folder / SPEC_FILE, json.dumps(spec, indent=2, sort_keys=True, default=str))
    return folder


def load_checkpoint(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model from ``model.json`` and load ``model.pt`` with ``weights_only=True``."""
    from ecg_pipeline.models import build_model

    folder = Path(folder)
    spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    model = build_model(
        spec["name"],
        in_channels=spec["in_channels"],
        n_samples=spec["n_samples"],
        heads={task: spec["heads"][task] for task in spec.get("head_order", spec["heads"])},
        attention=spec.get("attention"),
        **spec.get("options", {}),
    )
    state = torch.load(folder / WEIGHTS_FILE, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), spec
