"""Choosing among candidate recipes on the training side only (nested validation).

For every outer fold of the configured split, each candidate configuration (a recipe: the
paper's, the tuned one, another model or segment rate) is trained and scored on *inner* folds
made from that fold's training side (its train and validation windows) by the same protocol
as the outer split:

* leave-one-session-out: an inner leave-one-session-out over the training sessions;
* ECG-ID ``last_record`` / ``later_date``: the hold-out columns recomputed on the training
  side, so each training person's last record (latest date) is held out;
* ``time_block`` and ``window``: the same split of the training side.

The candidate with the best mean inner score (window accuracy averaged over tasks and inner
folds) is then trained on the outer fold and scored on its test side, which nothing before has
read. Each fold's ``results.json`` entry records the inner scores and the choice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.training.splits import Split, add_holdout_columns

_DERIVED = ("last_record", "later_date")


def inner_splits(meta, outer: Split, settings) -> list[Split]:
    """Inner folds over ``outer``'s training side, in row positions of ``meta``.

    Each inner split's ``test`` is the held-out part that scores a candidate; its ``train`` and
    ``val`` train it (``val`` chooses the epoch). No row of ``outer.test`` is in any of them.

    Raises
    ------
    ValueError
        The training side cannot be split by the outer protocol (e.g. one group and no hold-out
        column to recompute).
    """
    from ecg_pipeline.training.run import configured_splits

    side = np.sort(np.concatenate([outer.train, outer.val]))
    sub = meta.iloc[side].reset_index(drop=True)
    if settings.split == "group" and settings.group_column in _DERIVED:
        sub = add_holdout_columns(sub.drop(columns=list(_DERIVED)))
    inner = configured_splits(sub, settings)
    return [
        Split(f"inner {s.name}", side[s.train], side[s.val], side[s.test])
        for s in inner
        if len(s.test) and len(s.train)
    ]


def _fold_score(config: StudyConfig, data, split: Split) -> float:
    """Train ``config`` on an inner split; mean window accuracy over tasks on its held-out part."""
    import torch

    from ecg_pipeline.training.loop import fit, predict_logits
    from ecg_pipeline.training.spec import build_from_spec, model_spec

    fs_hz = float(data.meta["fs_hz"].iloc[0])
    spec = model_spec(config, data.heads, data.classes, config.ingest.windows.window_samples, fs_hz)
    model = build_from_spec(spec, config.training.seed)
    fit(model, data.x, data.labels, split.train, split.val, config.training, fs_hz=fs_hz)
    device = next(model.parameters()).device
    logits = predict_logits(model, torch.as_tensor(data.x[split.test], device=device))
    return float(
        np.mean(
            [
                (lg.argmax(1).cpu().numpy() == data.labels[task][split.test]).mean()
                for task, lg in logits.items()
            ]
        )
    )


def choose(
    candidates: Mapping[str, StudyConfig],
    load: Callable[[StudyConfig], tuple],
    outer_name: str,
) -> tuple[str, dict]:
    """The candidate with the best mean inner score for the outer fold ``outer_name``.

    ``load(config)`` returns ``(data, outer_splits)`` for a candidate (its windows or beats,
    and the configured outer splits, which are the same for every candidate).

    Returns
    -------
    (name, report)
        The chosen candidate and ``{"protocol", "inner_folds", "scores", "chosen"}``.
    """
    scores: dict[str, float] = {}
    inner_names: list[str] = []
    for name, config in candidates.items():
        data, splits = load(config)
        outer = next(s for s in splits if s.name == outer_name)
        inner = inner_splits(data.meta, outer, config.training)
        if not inner:
            raise ValueError(f"fold {outer_name!r}: its training side has no inner fold")
        inner_names = [s.name for s in inner]
        scores[name] = float(np.mean([_fold_score(config, data, s) for s in inner]))
    chosen = max(scores, key=lambda n: (scores[n], -list(candidates).index(n)))
    return chosen, {
        "protocol": "inner folds of the training side, by the outer split's protocol",
        "inner_folds": inner_names,
        "scores": scores,
        "chosen": chosen,
    }
