"""One training run: store -> splits -> fit (train_run) -> test metrics (evaluate_run).

Each fold writes ``<out>/<run>/<fold>/`` with ``model.pt`` + ``model.json`` (a pickle-free
checkpoint) and the run writes ``results.json`` (configuration, seed, per-fold metrics and
per-epoch history), so every figure can be traced to its command and settings. Each fold's
``model.json`` and ``results.json`` entry also hold the identity threshold calibrated on that
fold's validation part (``identity_threshold``, see ``ecg_pipeline.training.calibration``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.training.results import RESULTS_FILE, FoldResult, RunResult, fold_dir
from ecg_pipeline.training.spec import build_from_spec, check_trainable, input_shape, model_spec


def configured_splits(meta, settings) -> list:
    """The splits ``[training]`` asks for, over a windows metadata frame.

    The group settings are passed on for ``group`` splits only, so a dataset file can name its
    groups and still be run under ``--split window``.
    """
    from ecg_pipeline.training.splits import split_windows

    group_options = {}
    if settings.split == "group":
        group_options = {
            "group_column": settings.group_column,
            "test_groups": list(settings.test_groups) if settings.test_groups else None,
            "group_validation": settings.group_validation,
        }
    return split_windows(
        meta,
        kind=settings.split,
        seed=settings.seed,
        test_fraction=settings.test_fraction,
        val_fraction=settings.val_fraction,
        gap_windows=settings.gap_windows,
        **group_options,
    )


def identity_threshold(model, data, val_idx: np.ndarray, known_reject_rate: float) -> dict:
    """Calibrate the "unknown" threshold on this fold's validation windows (known subjects).

    Called with the best epoch's weights restored, so the threshold belongs to the model that
    is saved. See :mod:`ecg_pipeline.training.calibration` for the rule and its limits.
    """
    import torch

    from ecg_pipeline.training.calibration import threshold_from_validation
    from ecg_pipeline.training.loop import predict_logits

    logits = np.empty((0, data.heads["identity"]), dtype=np.float32)
    if len(val_idx):
        device = next(model.parameters()).device
        x_val = torch.as_tensor(data.x[val_idx], device=device)
        logits = predict_logits(model, x_val)["identity"].cpu().numpy()
    recordings = data.meta["recording_id"].to_numpy()[val_idx]
    return threshold_from_validation(logits, recordings, known_reject_rate).as_dict()


def _load(config: StudyConfig, store_root, max_windows_per_recording: int | None, catalog=None):
    """The dataset's windows (optionally the first few of each recording) and its splits,
    without the people ``[training] holdout_people`` leaves out (see :func:`load_with_strangers`).
    """
    _, data, splits, _ = load_with_strangers(config, store_root, max_windows_per_recording, catalog)
    return data, splits


def load_with_strangers(
    config: StudyConfig, store_root=None, max_windows_per_recording: int | None = None, catalog=None
):
    """Every window, the training data without the held-out people, its splits, and who they are.

    Returns
    -------
    everyone : WindowData
        All windows of the store (held-out people included).
    data : WindowData
        Without the held-out people, labels encoded over the people left: what is trained on.
    splits : list of Split
        Row positions into ``data``.
    people : HeldOutPeople
        The held-out people by role (empty without ``holdout_people``);
        see :mod:`~ecg_pipeline.training.holdout`.
    """
    from ecg_pipeline.training.holdout import (
        choose_holdout_people,
        impostor_roles,
        without_people,
    )

    everyone, splits = _load_everyone(config, store_root, max_windows_per_recording, catalog)
    n = config.training.holdout_people
    if not n:
        return everyone, everyone, splits, impostor_roles([], config.verify.calibration_share)
    subjects = everyone.meta["subject"].astype(str).to_numpy()
    tested = {p for s in splits for p in subjects[s.test]}
    people = choose_holdout_people(subjects, n, config.training.seed, avoid=sorted(tested))
    data = without_people(everyone, people)
    roles = impostor_roles(people, config.verify.calibration_share)
    return everyone, data, configured_splits(data.meta, config.training), roles


def _load_everyone(config: StudyConfig, store_root, max_windows_per_recording, catalog):
    from ecg_pipeline.training.data import load_window_data

    t = config.training
    store = WindowStore(store_root or config.store.root, config.dataset.name)
    catalog = store.catalog() if catalog is None else catalog
    check_one_ingest_hash(catalog, config.ingest_hash(), store.path)
    kind, k, n = input_shape(config, config.ingest.windows.window_samples)
    # Train and evaluate tasks of one flow run share one read (see load_window_data).
    data = load_window_data(
        store, t.tasks, config.store.normalisation, catalog, (k, n) if kind == "beats" else None
    )
    if max_windows_per_recording:
        keep = data.meta.groupby("recording_id").cumcount().to_numpy() < max_windows_per_recording
        data.x, data.meta = data.x[keep], data.meta[keep].reset_index(drop=True)
        data.labels = {k: v[keep] for k, v in data.labels.items()}
    return data, configured_splits(data.meta, t)


def check_one_ingest_hash(catalog, ingest_hash: str, store_path) -> None:
    """Refuse to train on windows made with other ``[ingest]`` settings than the configuration's.

    A store holds one hash after a complete ingest; recordings left from other settings (the
    configuration changed and was not re-ingested, or a recording the new settings refuse)
    would silently mix two preprocessings in one model.

    Raises
    ------
    ValueError
        Naming how many recordings differ, one of them, and what to do.
    """
    if catalog.empty:
        return
    other = catalog[catalog["ingest_hash"] != ingest_hash]
    if other.empty:
        return
    first = other.iloc[0]
    raise ValueError(
        f"{store_path}: {len(other)} of {len(catalog)} stored recording(s) were written with "
        f"other [ingest] settings (hash {first['ingest_hash']}, e.g. {first['source_path']}) "
        f"than this configuration's ({ingest_hash}); ingest the recordings again with this "
        "configuration (a recording it now refuses loses its old windows), or train with the "
        "configuration they were written with"
    )


def _data_signature(data) -> str:
    """Which windows a run saw: its recordings and window count (evaluation must see the same)."""
    import hashlib

    ids = sorted(data.meta["recording_id"].astype(str).unique())
    text = "\n".join([*ids, str(len(data.meta)), repr(sorted(data.classes.items()))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


FOLD_FILE = "fold.json"  # a finished fold's result, written beside its checkpoint


def _train_folds(
    config, data, splits, run_dir: Path, on_epoch, resume: bool = False
) -> list[FoldResult]:
    """Train each fold; with ``resume``, a fold finished before is read back and a fold
    stopped mid-way continues from its last epoch (same settings and windows only)."""
    import json

    from ecg_pipeline.io.atomic import atomic_write_text
    from ecg_pipeline.training.checkpoint import save_checkpoint
    from ecg_pipeline.training.loop import fit, training_fingerprint
    from ecg_pipeline.training.resume import RESUME_FILE
    from ecg_pipeline.training.splits import fewer_training_recordings, recording_count

    t = config.training
    fs_hz = float(data.meta["fs_hz"].iloc[0])
    spec = model_spec(config, data.heads, data.classes, config.ingest.windows.window_samples, fs_hz)
    folds = []
    for split in splits:
        split.check_disjoint()
        all_training = split
        split = fewer_training_recordings(split, data.meta, t.label_fraction, t.seed)
        model = build_from_spec(spec, t.seed)
        pretrained = None
        if config.model.pretrained:
            from ecg_pipeline.training.pretrain import load_encoder_into

            test = data.meta.iloc[split.test]
            pretrained = load_encoder_into(
                model,
                config,
                config.model.pretrained,
                split.name,
                list(zip(test["recording_id"].astype(str), test["window_index"], strict=True)),
            )
        folder = fold_dir(run_dir, split.name)
        fingerprint = training_fingerprint(t, data.x, split.train, split.val, model)
        finished = _finished_fold(folder, fingerprint) if resume else None
        if finished is not None:
            folds.append(finished)
            continue
        if not resume:  # a fresh start: nothing of an earlier training in this folder counts
            (folder / RESUME_FILE).unlink(missing_ok=True)
            (folder / FOLD_FILE).unlink(missing_ok=True)
        result = fit(
            model,
            data.x,
            data.labels,
            split.train,
            split.val,
            t,
            fs_hz=fs_hz,
            on_epoch=(lambda row, name=split.name: on_epoch(name, row)) if on_epoch else None,
            resume_file=folder / RESUME_FILE,
        )
        fold = FoldResult(
            name=split.name,
            best_epoch=result.best_epoch,
            history=result.history,
            sizes={
                "train": len(split.train),
                "val": len(split.val),
                "test": len(split.test),
                # Label scarcity keeps whole recordings: how many of how many.
                "train_recordings": recording_count(split.train, data.meta),
                "train_recordings_offered": recording_count(all_training.train, data.meta),
            },
            pretrained=pretrained,
        )
        fold_spec = dict(spec)
        if "identity" in data.labels:
            threshold = identity_threshold(model, data, split.val, config.predict.known_reject_rate)
            fold.identity_threshold = fold_spec["identity_threshold"] = threshold
        save_checkpoint(folder, model, fold_spec)
        # Finished: its result beside the checkpoint (a resumed run reads it back), and the
        # per-epoch state is no longer needed.
        record = {"fingerprint": fingerprint, "fold": fold.to_json()}
        atomic_write_text(folder / FOLD_FILE, json.dumps(record, default=float))
        (folder / RESUME_FILE).unlink(missing_ok=True)
        folds.append(fold)
    return folds


def _finished_fold(folder: Path, fingerprint: str) -> FoldResult | None:
    """The fold trained before in ``folder`` with the same settings and windows, if any."""
    import json

    from ecg_pipeline.training.checkpoint import WEIGHTS_FILE

    path = folder / FOLD_FILE
    if not (path.is_file() and (folder / WEIGHTS_FILE).is_file()):
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("fingerprint") != fingerprint:
        return None
    return FoldResult.from_json(record["fold"])


def _evaluate_folds(data, splits, folds: list[FoldResult], run_dir: Path) -> None:
    """Score each fold's saved checkpoint (the model that is logged) on its test side."""
    import torch

    from ecg_pipeline.training.checkpoint import load_checkpoint
    from ecg_pipeline.training.loop import predict_logits
    from ecg_pipeline.training.metrics import classification_report, recording_predictions

    by_name = {s.name: s for s in splits}
    recording_ids = data.meta["recording_id"].to_numpy()
    for fold in folds:
        split = by_name[fold.name]
        model, _ = load_checkpoint(fold_dir(run_dir, split.name))
        device = next(model.parameters()).device
        logits = predict_logits(model, torch.as_tensor(data.x[split.test], device=device))
        metrics, recordings = {}, {}
        for task, lg in logits.items():
            y_true = data.labels[task][split.test]
            scores = lg.cpu().numpy()
            report = classification_report(y_true, scores.argmax(1), data.classes[task])
            # The rule predict answers with, and the majority vote beside it.
            per_recording = recording_predictions(y_true, scores, recording_ids[split.test])
            hits = per_recording["y_true"].to_numpy()
            report["recording_accuracy"] = float(
                (per_recording["y_pred"].to_numpy() == hits).mean()
            )
            report["recording_accuracy_vote"] = float(
                (per_recording["y_vote"].to_numpy() == hits).mean()
            )
            metrics[task] = report
            recordings[task] = per_recording.drop(columns="n_windows").to_dict("records")
        fold.metrics, fold.recordings = metrics, recordings


def _empty_run(config, out_dir, run_name) -> RunResult:
    t = config.training
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_name = (
        run_name or f"{config.dataset.name}-{config.model.name}-{t.split}-seed{t.seed}-{stamp}"
    )
    run_dir = Path(out_dir or t.out_dir) / run_name
    return RunResult(
        run_dir, [], config=config.model_dump(mode="json"), ingest_hash=config.ingest_hash()
    )


def _train(config, data, splits, out_dir, run_name, on_epoch, resume=False) -> RunResult:
    run = _empty_run(config, out_dir, run_name)
    run.folds = _train_folds(config, data, splits, run.run_dir, on_epoch, resume)
    return run


def train_run(
    config: StudyConfig,
    *,
    store_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    run_name: str | None = None,
    max_windows_per_recording: int | None = None,
    on_epoch: Callable[[str, dict], None] | None = None,
    evaluate: bool = False,
    catalog=None,
    candidates: Mapping[str, StudyConfig] | None = None,
    resume: bool = False,
    on_folds: Callable[[list[str]], None] | None = None,
) -> RunResult:
    """Train each fold of the configured split on the dataset's stored windows.

    ``on_folds(names)`` is told the folds, in order, before the first is trained (a tracker
    names per-fold metrics by them); ``on_epoch(fold, row)`` is told each epoch's history row.

    With ``resume``, a run stopped mid-way (killed, a lost machine) continues in the same run
    folder: finished folds are read back and the interrupted one continues after its last
    epoch, ending as an uninterrupted run would (:mod:`~ecg_pipeline.training.resume`).

    Writes each fold's checkpoint (with its calibrated identity threshold) and
    ``results.json``; test metrics only with ``evaluate=True`` (else :func:`evaluate_run`
    adds them later). ``max_windows_per_recording`` keeps the first windows of each recording
    only (quick checks). ``catalog`` is the store's catalog when the caller already holds it
    (a flow's batch report), so the footers are not listed again.

    ``candidates`` (name -> configuration, ``config`` among them or not) makes every fold
    choose its recipe on inner folds of its own training side first
    (:mod:`~ecg_pipeline.training.selection`); the test side is read only to score the choice.
    """
    if candidates:
        return _train_selected(
            config, candidates, store_root, out_dir, run_name, max_windows_per_recording, on_epoch
        )
    check_trainable(config)  # refuse an unusable [model] setting before reading data
    data, splits = _load(config, store_root, max_windows_per_recording, catalog)
    if on_folds is not None:
        on_folds([s.name for s in splits])
    run = _train(config, data, splits, out_dir, run_name, on_epoch, resume)
    run.max_windows_per_recording = max_windows_per_recording
    run.data_signature = _data_signature(data)
    if evaluate:
        _evaluate_folds(data, splits, run.folds, run.run_dir)
    run.save()
    return run


def _train_selected(
    config, candidates, store_root, out_dir, run_name, max_windows, on_epoch
) -> RunResult:
    """Each outer fold: choose a candidate on inner folds, train it, score it on the test side."""
    from ecg_pipeline.training.selection import choose

    seed = config.training.seed
    candidates = {n: c.with_overrides({"training.seed": seed}) for n, c in candidates.items()}
    for candidate in candidates.values():
        check_trainable(candidate)

    def load(candidate):
        return _load(candidate, store_root, max_windows)

    _, outer = load(config)
    run = _empty_run(config, out_dir, run_name)
    run.candidates = candidates_fingerprint(candidates)
    for split in outer:
        chosen, report = choose(candidates, load, split.name)
        data, splits = load(candidates[chosen])
        same = [s for s in splits if s.name == split.name]
        (fold,) = _train_folds(candidates[chosen], data, same, run.run_dir, on_epoch)
        _evaluate_folds(data, same, [fold], run.run_dir)
        fold.selection = report
        run.folds.append(fold)
        run.data_signature = _data_signature(data)
    run.max_windows_per_recording = max_windows
    run.save()
    return run


# The parts of a configuration a trained model depends on. The others (servers, flow, watch,
# predict, limits, demo) say how and where the product runs: a new setting there must not make
# `train --resume` retrain every stored seed.
TRAINING_SECTIONS = ("dataset", "ingest", "store", "model", "training", "pretrain")


def training_part(config: StudyConfig | Mapping) -> dict:
    """The :data:`TRAINING_SECTIONS` of a configuration (or of its stored JSON dump).

    ``[dataset.markers]`` is left out: it decides which recordings the store holds, and a
    training run sees that through its data signature, not through the map (runs stored before
    the map existed compare equal). So is ``[store] root``: where a store lies is not what it
    holds (the 100-Hz rows' store moved to ``data/windows-segment-100hz`` when the default went
    back to 250 Hz; its windows, and so the runs' data signatures, stayed the same).
    """
    dump = config if isinstance(config, Mapping) else config.model_dump(mode="json")
    part = copy.deepcopy({k: dump.get(k) for k in TRAINING_SECTIONS})
    if isinstance(part.get("dataset"), Mapping):
        part["dataset"] = {k: v for k, v in part["dataset"].items() if k != "markers"}
    if isinstance(part.get("store"), Mapping):
        part["store"] = {k: v for k, v in part["store"].items() if k != "root"}
    # Settings added after runs were stored count only away from their default, at which they
    # train as before: a stored run and today's configuration then compare equal.
    for path in _ADDED_LATER:
        *parents, key = path.split(".")
        values, default = part, _DEFAULTS
        for name in parents:
            values = values.get(name) if isinstance(values, Mapping) else None
            default = default.get(name, {})
        if isinstance(values, dict) and values.get(key, default.get(key)) == default.get(key):
            values.pop(key, None)
    return part


# Settings added after runs were stored (their defaults train and window as before).
_ADDED_LATER = (
    "training.holdout_people",
    "ingest.quality.min_heartbeat_periodicity",
    "ingest.quality.neurokit_methods",
    "ingest.quality.neurokit_max_windows",
    "ingest.quality.min_window_score",
    "ingest.quality.min_recording_score",
)
_DEFAULTS = StudyConfig().model_dump(mode="json")


def candidates_fingerprint(candidates: Mapping[str, StudyConfig] | None) -> dict[str, str] | None:
    """Each candidate recipe's name and a hash of its training configuration (what a run chose
    among)."""
    import hashlib
    import json

    if not candidates:
        return None
    return {
        name: hashlib.sha256(
            json.dumps(training_part(c), sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
        for name, c in sorted(candidates.items())
    }


def stored_run_matches(
    run_dir: str | Path,
    config: StudyConfig,
    *,
    store_root: str | Path | None = None,
    max_windows_per_recording: int | None = None,
    candidates: Mapping[str, StudyConfig] | None = None,
) -> tuple[RunResult | None, str]:
    """The evaluated run stored in ``run_dir`` if it is what training ``config`` now would give.

    Reused only when every fold is evaluated and the stored run had the same training
    configuration (:data:`TRAINING_SECTIONS`), ``[ingest]`` hash, window cap, candidate
    recipes, pre-trained encoder weights and the same windows in the store (its data
    signature); otherwise ``(None, why not)``.
    """
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return None, "no stored run"
    run = RunResult.load(run_dir)
    if candidates:
        seed = config.training.seed
        candidates = {n: c.with_overrides({"training.seed": seed}) for n, c in candidates.items()}
    checks = [
        (run.evaluated, "not every fold was evaluated"),
        (training_part(run.config) == training_part(config), "its configuration differs"),
        (run.ingest_hash == config.ingest_hash(), "its [ingest] hash differs"),
        (run.max_windows_per_recording == max_windows_per_recording, "its window cap differs"),
        (run.candidates == candidates_fingerprint(candidates), "its candidate recipes differ"),
    ]
    for ok, why in checks:
        if not ok:
            return None, why
    if config.model.pretrained:
        why = _encoder_differs(run, config.model.pretrained)
        if why:
            return None, why
    data, _ = _load(config, store_root, max_windows_per_recording)
    if run.data_signature != _data_signature(data):
        return None, "the store's windows changed since"
    return run, "same configuration, data and candidates"


def _encoder_differs(run: RunResult, pretrained: str | Path) -> str | None:
    """Why the stored run's folds did not start from the encoders now at ``pretrained``, if so.

    Compares the weights' hash; runs stored before hashes were recorded are compared by the
    encoder's best pre-training epoch (a re-run pre-training that stopped elsewhere differs).
    """
    import json

    from ecg_pipeline.training.pretrain import ENCODER_SPEC, encoder_digest, encoder_folder

    for fold in run.folds:
        stored = fold.pretrained or {}
        try:
            folder = encoder_folder(pretrained, fold.name, run.seed)
        except FileNotFoundError:
            return f"its pre-trained encoder for {fold.name} is not here to compare"
        if "weights_sha256" in stored:
            if stored["weights_sha256"] != encoder_digest(folder):
                return f"the encoder at {folder} has other weights than the one it started from"
        else:
            spec = json.loads((folder / ENCODER_SPEC).read_text(encoding="utf-8"))
            if stored.get("best_epoch") != spec.get("best_epoch"):
                return f"the encoder at {folder} is another pre-training than it started from"
    return None


def evaluate_run(
    run: RunResult | str | Path, config: StudyConfig, *, store_root: str | Path | None = None
) -> RunResult:
    """Score the checkpoints of a trained run on the test side of its split; update results.json.

    Parameters
    ----------
    run : RunResult or path-like
        The run :func:`train_run` returned, or its folder (``results.json`` is read).

    The windows and splits are rebuilt from the store with the run's settings (the splits are
    deterministic); in the process that trained, the windows are not read again (see
    :func:`~ecg_pipeline.training.data.load_window_data`). A store that changed in between
    (recordings ingested meanwhile) is refused.

    Raises
    ------
    ValueError
        The store no longer holds the windows the run was trained on.
    """
    run = run if isinstance(run, RunResult) else RunResult.load(run)
    data, splits = _load(config, store_root, run.max_windows_per_recording)
    signature = _data_signature(data)
    if run.data_signature not in (None, signature):
        raise ValueError(
            f"{run.run_dir}: the store's windows changed since this run was trained (recordings "
            "added or replaced meanwhile), so its test split cannot be rebuilt; train again"
        )
    _evaluate_folds(data, splits, run.folds, run.run_dir)
    run.data_signature = signature
    run.save()
    return run


def train_and_evaluate(config: StudyConfig, **options) -> RunResult:
    """:func:`train_run` then :func:`evaluate_run`, reading the store once (same options)."""
    return train_run(config, evaluate=True, **options)
