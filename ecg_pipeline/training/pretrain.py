"""Self-supervised pre-training of ECG-SL's encoder, and fine-tuning from it.

``pretrain_run`` reads the beat sequences of every window of the chosen datasets (labels
unused) and trains an :class:`~ecg_pipeline.models.ecg_sl.ECGSLBackbone` with one of the
objectives of :mod:`ecg_pipeline.training.objectives`, through the one training loop. By default
the test side of the evaluated dataset's split never enters, not even unlabelled: one encoder is
pre-trained per fold, without that fold's test recordings. ``transductive`` lets them in (one
encoder, folder ``all``) and every fold fine-tuned from it is marked ``sees_test``.

An encoder is a folder: ``encoder.pt`` (a state_dict, loaded with ``weights_only=True``) and
``encoder.json`` (architecture, segment settings, normalisation, objective, the datasets and
recordings it read, its training history).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.io.atomic import atomic_target, atomic_write_text
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.training.results import fold_dir

ENCODER_WEIGHTS = "encoder.pt"
ENCODER_SPEC = "encoder.json"
ALL_FOLDS = "all"  # the folder of a transductive (or other-datasets-only) encoder


class PretrainError(ValueError):
    """Pre-training cannot start (an empty or label-less store, no beats, bad settings)."""


class EncoderMismatchError(ValueError):
    """A pre-trained encoder that does not fit the model or the store it is asked to serve."""


@dataclass
class PretrainResult:
    """The encoders one ``pretrain_run`` wrote, one per fold (or one, ``all``)."""

    out_dir: Path
    encoders: dict[str, dict] = field(default_factory=dict)  # fold -> encoder.json contents

    def summary(self) -> dict:
        return {
            fold: {
                "best_epoch": spec["best_epoch"],
                "val_loss": spec["best_val_loss"],
                "n_windows": spec["n_windows"],
                "sees_test": spec["sees_test"],
            }
            for fold, spec in self.encoders.items()
        }


def backbone_options(config: StudyConfig) -> dict:
    """The ECG-SL backbone options ``[model]`` gives (the encoder is built with these)."""
    from ecg_pipeline.training.spec import model_options_of

    return model_options_of(config.model)


def _pool(config: StudyConfig, store_root) -> dict[str, object]:
    """Per dataset of the pool, its beat windows (labels unused)."""
    from ecg_pipeline.training.data import load_window_data
    from ecg_pipeline.training.spec import input_shape

    _, k, n = input_shape(config, config.ingest.windows.window_samples)
    names = list(config.pretrain.datasets) or [config.dataset.name]
    if config.dataset.name not in names:
        names = [config.dataset.name, *names]
    out = {}
    for name in names:
        store = WindowStore(store_root or config.store.root, name)
        if not store.recording_files():
            raise PretrainError(
                f"{store.path}: no windows stored for dataset {name!r}; ingest it first "
                f"(ecg-pipeline ingest FOLDER --config ...)"
            )
        try:
            out[name] = load_window_data(store, (), config.store.normalisation, None, (k, n))
        except ValueError as exc:
            raise PretrainError(f"{store.path}: {exc}") from exc
        if not (out[name].x[..., -1] > 0.5).any():
            raise PretrainError(f"{store.path}: the stored windows hold no beats")
    return out


def _recording_split(recordings: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded share of recordings held out for choosing the pre-training epoch."""
    unique = np.unique(recordings)
    rng = np.random.default_rng(seed)
    n_val = max(1, round(fraction * len(unique))) if len(unique) > 1 else 0
    held = set(rng.choice(unique, n_val, replace=False).tolist()) if n_val else set()
    return np.array([r in held for r in recordings])


def pretrain_run(
    config: StudyConfig,
    *,
    store_root: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    run_name: str | None = None,
    on_epoch: Callable[[str, dict], None] | None = None,
    resume: bool = False,
) -> PretrainResult:
    """Pre-train ECG-SL encoders as ``[pretrain]`` says; returns what was written.

    With ``resume``, a pre-training stopped mid-way continues in the same run folder: encoders
    finished with the same settings and windows are kept, and the interrupted one continues
    after its last epoch (:mod:`~ecg_pipeline.training.resume`).

    Raises
    ------
    PretrainError
        A dataset of the pool has no stored windows or no beats (the message names the store).
    """
    import torch

    from ecg_pipeline.models.ecg_sl import ECGSLBackbone
    from ecg_pipeline.training.loop import fit, training_fingerprint
    from ecg_pipeline.training.objectives import build_objective
    from ecg_pipeline.training.resume import RESUME_FILE
    from ecg_pipeline.training.run import configured_splits
    from ecg_pipeline.training.spec import input_shape

    p = config.pretrain
    if config.model.name != "ecg_sl":
        config = config.with_overrides({"model.name": "ecg_sl"})
    options = backbone_options(config)
    _, k, n = input_shape(config, config.ingest.windows.window_samples)
    pool = _pool(config, store_root)
    home = pool[config.dataset.name]
    if p.transductive:
        folds = {ALL_FOLDS: np.zeros(len(home.meta), dtype=bool)}
    else:
        folds = {}
        for split in configured_splits(home.meta, config.training):
            excluded = np.zeros(len(home.meta), dtype=bool)
            excluded[split.test] = True
            folds[split.name] = excluded
    run_name = run_name or f"{config.dataset.name}-{p.objective}-seed{config.training.seed}"
    run_dir = Path(out_dir or p.out_dir) / run_name
    settings = config.training.model_copy(
        update={
            "epochs": p.epochs,
            "batch_size": p.batch_size,
            "learning_rate": p.learning_rate,
            "weighting": "equal",
        }
    )
    result = PretrainResult(run_dir)
    for fold, test_side in folds.items():
        parts, recordings = [], []
        for name, data in pool.items():
            keep = ~test_side if name == config.dataset.name else np.ones(len(data.x), bool)
            parts.append(data.x[keep])
            recordings.append(name + "/" + data.meta["recording_id"].to_numpy()[keep].astype(str))
        x = np.concatenate(parts)
        rec = np.concatenate(recordings)
        held = _recording_split(rec, p.val_fraction, config.training.seed)
        torch.manual_seed(config.training.seed)
        backbone = ECGSLBackbone(n, k, **options)
        objective_options = (
            {"mask_fraction": p.mask_fraction}
            if p.objective == "masked_beats"
            else {"temperature": p.temperature}
        )
        objective = build_objective(p.objective, backbone, **objective_options)
        folder = fold_dir(run_dir, fold)
        train_rows, val_rows = np.flatnonzero(~held), np.flatnonzero(held)
        fingerprint = training_fingerprint(settings, x, train_rows, val_rows, backbone)
        done = _finished_encoder(folder, fingerprint) if resume else None
        if done is not None:
            result.encoders[fold] = done
            continue
        if not resume:  # a fresh start: an earlier pre-training's state does not count
            (folder / RESUME_FILE).unlink(missing_ok=True)
        fitted = fit(
            backbone,
            x,
            {},
            train_rows,
            val_rows,
            settings,
            objective=objective,
            on_epoch=(lambda row, f=fold: on_epoch(f, row)) if on_epoch else None,
            resume_file=folder / RESUME_FILE,
        )
        seen = home.meta.loc[~test_side, ["recording_id", "window_index"]]
        spec = {
            "model": "ecg_sl",
            "options": options,
            "segment_samples": n,
            "max_beats": k,
            "beats": config.ingest.beats.model_dump(mode="json"),
            "normalisation": config.store.normalisation,
            "objective": p.objective,
            "objective_options": objective_options,
            "datasets": list(pool),
            "dataset": config.dataset.name,
            "split": config.training.split,
            "group_column": config.training.group_column,
            "fold": fold,
            "transductive": p.transductive,
            "sees_test": bool(p.transductive),
            # Which windows of the evaluated dataset it read: fine-tuning checks its test side.
            "windows_seen": {
                str(rid): sorted(int(i) for i in group["window_index"])
                for rid, group in seen.groupby("recording_id")
            },
            "n_windows": int(len(x)),
            "n_val_windows": int(held.sum()),
            "seed": config.training.seed,
            "best_epoch": fitted.best_epoch,
            "best_val_loss": -max(r["val_score"] for r in fitted.history),
            "history": fitted.history,
            "fingerprint": fingerprint,
        }
        save_encoder(folder, backbone, spec)
        (folder / RESUME_FILE).unlink(missing_ok=True)
        result.encoders[fold] = spec
    return result


def _finished_encoder(folder: Path, fingerprint: str) -> dict | None:
    """The spec of the encoder pre-trained before in ``folder`` with the same settings and
    windows, if it is there."""
    if not ((folder / ENCODER_SPEC).is_file() and (folder / ENCODER_WEIGHTS).is_file()):
        return None
    spec = json.loads((folder / ENCODER_SPEC).read_text(encoding="utf-8"))
    return spec if spec.get("fingerprint") == fingerprint else None


def save_encoder(folder: Path, backbone, spec: dict) -> Path:
    """``encoder.pt`` (tensors only) and ``encoder.json``, each written atomically."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    with atomic_target(folder / ENCODER_WEIGHTS) as tmp:
        torch.save(state, tmp)
    atomic_write_text(folder / ENCODER_SPEC, json.dumps(spec, indent=1, default=float))
    return folder


def encoder_digest(folder: str | os.PathLike) -> str:
    """A hash of an encoder's weights file: two pre-trainings of one configuration need not give
    the same weights (CPU kernels are not bit-reproducible), so runs record which weights they
    started from, and ``--resume`` compares it."""
    import hashlib

    digest = hashlib.sha256()
    with open(Path(folder) / ENCODER_WEIGHTS, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def seed_dir(pretrained: str | os.PathLike, seed: int) -> Path:
    """Where ``pretrain --seeds`` puts one seed's encoders: ``<run>/seed<k>``."""
    return Path(pretrained) / f"seed{seed}"


def seeds_pretrained(pretrained: str | os.PathLike) -> list[int]:
    """The seeds of a ``pretrain --seeds`` run folder (``seed<k>/`` holding encoders), else []."""
    root = Path(pretrained)
    if not root.is_dir():
        return []
    return sorted(
        int(d.name[4:])
        for d in root.iterdir()
        if re.fullmatch(r"seed\d+", d.name) and _holds_encoders(d)
    )


def _holds_encoders(folder: Path) -> bool:
    """``folder`` is an encoder, or holds one per fold."""
    return folder.is_dir() and any(
        (c / ENCODER_SPEC).is_file() for c in (folder, *folder.iterdir()) if c.is_dir()
    )


def encoder_folder(pretrained: str | os.PathLike, fold: str, seed: int | None = None) -> Path:
    """The encoder a fold of a seed starts from.

    A pre-training run of several seeds (``pretrain --seeds``) holds ``<run>/seed<k>/<fold>``:
    needed where the test side depends on the seed (the ``window`` split draws its test windows
    by seed, so one encoder would have read another seed's test windows). Such a run is looked
    up by seed only; otherwise ``<run>/<fold>``, else ``<run>/all``, else ``<run>``.
    """
    root = Path(pretrained)
    per_seed = seed is not None and bool(seeds_pretrained(root))
    if per_seed:
        if (root / ENCODER_SPEC).is_file() or any(
            _holds_encoders(c) for c in root.iterdir() if not c.name.startswith("seed")
        ):
            raise FileNotFoundError(
                f"{root}: holds both per-seed encoders (seed<k>/) and encoders of no seed; "
                "point model.pretrained at one of them"
            )
        root = seed_dir(root, seed)
    for candidate in (fold_dir(root, fold), fold_dir(root, ALL_FOLDS), root):
        if (candidate / ENCODER_SPEC).is_file() and (candidate / ENCODER_WEIGHTS).is_file():
            return candidate
    raise FileNotFoundError(
        f"{root}: no pre-trained encoder for fold {fold!r}"
        + (f" of seed {seed}" if per_seed else "")
        + f" (expected {ENCODER_SPEC} and {ENCODER_WEIGHTS} in {fold_dir(root, fold)} or "
        f"{fold_dir(root, ALL_FOLDS)}); run `ecg-pipeline pretrain` with the same split"
        + (" and this seed" if per_seed else "")
    )


def load_encoder_into(
    model,
    config: StudyConfig,
    pretrained: str | os.PathLike,
    fold: str,
    test_windows: Sequence[tuple[str, int]],
) -> dict:
    """Load a fold's pre-trained encoder into an ECG-SL model's backbone, after checking it.

    ``test_windows`` are the fold's test windows as (recording_id, window_index). Returns the
    fold's ``pretrained`` record (folder, objective, datasets, ``sees_test``).

    Raises
    ------
    EncoderMismatchError
        The encoder's segment settings, normalisation or architecture differ from this
        configuration's (the message names each differing setting), or it read this fold's test
        recordings without being a transductive encoder.
    """
    import torch

    folder = encoder_folder(pretrained, fold, config.training.seed)
    spec = json.loads((folder / ENCODER_SPEC).read_text(encoding="utf-8"))
    wanted = {
        **{f"ingest.beats.{k}": v for k, v in config.ingest.beats.model_dump(mode="json").items()},
        "store.normalisation": config.store.normalisation,
        "model.max_beats": config.model.max_beats,
        **{f"model option {k}": v for k, v in backbone_options(config).items()},
    }
    theirs = {
        **{f"ingest.beats.{k}": v for k, v in spec["beats"].items()},
        "store.normalisation": spec["normalisation"],
        "model.max_beats": spec["max_beats"],
        **{f"model option {k}": v for k, v in spec["options"].items()},
    }
    differing = [
        f"{key}: encoder {theirs.get(key)!r}, here {value!r}"
        for key, value in wanted.items()
        if theirs.get(key) != value
    ]
    if differing:
        raise EncoderMismatchError(
            f"{folder}: the pre-trained encoder does not fit this configuration: "
            + "; ".join(differing)
        )
    seen = spec.get("windows_seen", {}) if spec.get("dataset") == config.dataset.name else {}
    seen_keys = {(rid, i) for rid, indexes in seen.items() for i in indexes}
    sees_test = any((str(rid), int(i)) in seen_keys for rid, i in test_windows)
    if sees_test and not spec.get("transductive"):
        raise EncoderMismatchError(
            f"{folder}: this encoder's pre-training read fold {fold!r}'s test windows but is "
            "not marked transductive; pre-train with the same split"
        )
    state = torch.load(folder / ENCODER_WEIGHTS, map_location="cpu", weights_only=True)
    model.backbone.load_state_dict(state)
    return {
        "folder": str(folder),
        "objective": spec["objective"],
        "datasets": spec["datasets"],
        "transductive": bool(spec.get("transductive")),
        "sees_test": sees_test,
        "best_epoch": spec.get("best_epoch"),
        "weights_sha256": encoder_digest(folder),
    }
