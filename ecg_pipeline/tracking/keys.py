"""MLflow's names for what a run logs: valid metric keys, the configuration as params, the
per-fold prefixes and the held-out protocol that champions are compared within.

Pure functions of settings and strings: nothing here talks to a server or imports mlflow.
"""

from __future__ import annotations

import json
import posixpath
import re

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.training.results import FoldResult

# The test metrics of each task logged per run (classification_report's keys and the two
# recording-level rules).
FINAL_METRICS = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "recording_accuracy",
    "recording_accuracy_vote",
)
# The identity confidence below which a recording is "unknown" (training.run calibrates it).
THRESHOLD_METRIC = "identity_unknown_threshold"
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def metric_key(name: str) -> str:
    """``name`` made valid as an MLflow metric or param key.

    MLflow takes alphanumerics, ``_ - . /`` and spaces (colons too, but not on Windows, so
    not here) and refuses keys that change under path normalisation (``a//b``, ``./a``).
    Anything else becomes ``_``: ``fold_session=01`` gives ``fold_session_01``.
    """
    key = re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name))
    parts = ["_" if p in (".", "..") else p for p in key.split("/") if p]
    key = "/".join(parts) or "_"
    assert posixpath.normpath(key) == key, key
    return key


def _param_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) > _MAX_PARAM_CHARS:
        text = text[: _MAX_PARAM_CHARS - 15] + "...[truncated]"
    return text


def flatten_params(config: StudyConfig) -> dict[str, str]:
    """The whole configuration as MLflow params: one dotted key per setting.

    Nested settings objects become dotted keys (``training.augment.gain``); every other value
    (numbers, lists, mappings such as ``dataset.condition_aliases``, None) is one param
    holding its JSON text, strings as they are. Values longer than MLflow's 6000 characters
    are cut and marked ``...[truncated]``.
    """
    from pydantic import BaseModel

    dumped = config.model_dump(mode="json")  # Paths and tuples as JSON-ready values
    out: dict[str, str] = {}

    def walk(model: BaseModel, values: dict, prefix: str) -> None:
        for field in type(model).model_fields:
            value = getattr(model, field)
            if isinstance(value, BaseModel):
                walk(value, values[field], f"{prefix}{field}.")
            else:
                out[metric_key(prefix + field)] = _param_value(values[field])

    walk(config, dumped, "")
    return out


def fold_prefixes(folds: list[FoldResult]) -> list[str]:
    """``""`` for a single fold; otherwise ``fold_<name>/``, made unique."""
    return prefixes_of_folds([fold.name for fold in folds])


def prefixes_of_folds(names: list[str]) -> list[str]:
    """:func:`fold_prefixes` from the folds' names (known before any fold is trained)."""
    if len(names) == 1:
        return [""]
    prefixes: list[str] = []
    for i, name in enumerate(names):
        p = metric_key(f"fold_{name}").replace("/", "_")
        prefixes.append(f"{p}/" if f"{p}/" not in prefixes else f"{p}_{i}/")
    return prefixes


def heldout_protocol(config: StudyConfig) -> str:
    """How the held-out score was measured: scores of different protocols are not compared."""
    t = config.training
    if t.split == "group":
        return f"group:{t.group_column}:{','.join(t.test_groups or ())}"
    return t.split
