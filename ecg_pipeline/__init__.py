"""ecg-pipeline: from BIOPAC AcqKnowledge ECG recordings to validated windows and tracked models.

The calls a lab scripts against, in the spirit of ``bioread.read`` and ``wfdb.rdrecord``::

    import ecg_pipeline as ecg

    config = ecg.load_config("configs/demo.toml")
    recording = ecg.read("data/inbox/S01_rest.acq", config)     # the ECG channel, in mV
    report = ecg.ingest_folder("data/inbox", config)           # windows into the store
    x, meta = ecg.open_store(config).read_windows()            # (n, 300) float32 + metadata
    model = ecg.load_model("data/runs/demo/seed0/time_block")  # or "models:/dt4ecg-demo@champion"
    predictions, refused = ecg.predict_files(["new.acq"], model, config)
    ecg.enrol("visitor", ["v1.acq", "v2.acq", "v3.acq"], model, config)  # a checkpoint folder's

Everything is imported on first use: ``import ecg_pipeline`` costs nothing, and a script that
only reads recordings never imports torch, Prefect or MLflow. A ``config`` argument may be a
:class:`StudyConfig`, a TOML path or None (the defaults: the lab's own study).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Model",
    "StudyConfig",
    "__version__",
    "enrol",
    "ingest_folder",
    "load_config",
    "load_model",
    "open_store",
    "predict_files",
    "read",
]

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from ecg_pipeline.config import StudyConfig
    from ecg_pipeline.errors import IngestError
    from ecg_pipeline.ingest.results import BatchReport
    from ecg_pipeline.io.recording import RawRecording
    from ecg_pipeline.io.store import WindowStore
    from ecg_pipeline.training.model_handle import Model

ConfigLike = "StudyConfig | str | os.PathLike | None"


def _config(config: Any) -> StudyConfig:
    from ecg_pipeline.config import StudyConfig, load_config

    if config is None:
        return StudyConfig()
    if isinstance(config, StudyConfig):
        return config
    return load_config(config)


def load_config(path: str | os.PathLike | None = None, **options: Any) -> StudyConfig:
    """Read a study configuration (see :func:`ecg_pipeline.config.load_config`)."""
    from ecg_pipeline.config import load_config as _load

    return _load(path, **options)


def read(path: str | os.PathLike, config: Any = None) -> RawRecording:
    """Read one recording's ECG channel (only that channel) as the study's configuration says.

    Parameters
    ----------
    path : path-like
        An AcqKnowledge file (or the dataset format ``[dataset] format`` names).
    config : StudyConfig, path or None
        Which channel is the ECG (``[ingest.channel]``); defaults otherwise.

    Returns
    -------
    RawRecording
        The channel's gap-free segments in physical units, with their rates, the channel's
        name and the file's header.

    Raises
    ------
    IngestError
        A subclass naming the file and what is wrong (not an AcqKnowledge file, truncated, no
        or several ECG channels).

    See Also
    --------
    ingest_folder : read, filter, window and store a whole folder.
    """
    from ecg_pipeline.ingest.process import read_raw

    return read_raw(path, _config(config))


def ingest_folder(folder: str | os.PathLike, config: Any = None, **options: Any) -> BatchReport:
    """Ingest every settled recording of ``folder`` into the window store.

    See :func:`ecg_pipeline.ingest.batch.ingest_folder` for the options (``manifest``,
    ``store_root``, ``progress``). Raw recordings are never modified.
    """
    from ecg_pipeline.ingest.batch import ingest_folder as _ingest

    return _ingest(folder, _config(config), **options)


def open_store(config: Any = None, root: str | os.PathLike | None = None) -> WindowStore:
    """The study's window store (``[store] root`` / ``[dataset] name``, or ``root``)."""
    from ecg_pipeline.io.store import WindowStore

    cfg = _config(config)
    return WindowStore(root or cfg.store.root, cfg.dataset.name)


def load_model(source: str | os.PathLike, *, tracking_uri: str | None = None) -> Model:
    """A trained model from a checkpoint folder, or from the MLflow registry.

    Parameters
    ----------
    source : path-like or str
        A fold folder of a training run (``model.pt`` + ``model.json``; no server needed), or
        ``models:/<name>@<alias>`` / ``models:/<name>/<version>`` (``models:/dt4ecg-demo@champion``).
    tracking_uri : str, optional
        The MLflow server of a ``models:/`` source; by default the embedded one
        (``[servers]`` of the default configuration).

    Returns
    -------
    Model
        The network with its class names, identity threshold, normalisation and ``[ingest]``
        hash. Nothing is unpickled either way.
    """
    text = str(source)
    if not text.startswith("models:/"):
        from ecg_pipeline.training.model_handle import load_checkpoint_model

        return load_checkpoint_model(source)
    from ecg_pipeline.config import ServerSettings
    from ecg_pipeline.tracking.registry import load_champion

    ref = text.removeprefix("models:/")
    name, alias, version = ref, "champion", None
    if "@" in ref:
        name, alias = ref.split("@", 1)
    elif "/" in ref:
        name, version = ref.split("/", 1)
    uri = tracking_uri or ServerSettings().mlflow_uri
    return load_champion(uri, name, alias=alias, version=version)


# Not named ``predict``: that is the subpackage ecg_pipeline.predict, whose import would replace
# a function of the same name on this module.
def predict_files(
    paths: Sequence[str | os.PathLike], model: Model, config: Any = None
) -> tuple[pd.DataFrame, list[IngestError]]:
    """Label recordings (files or folders) with ``model``: identity or "unknown", activity.

    ``config`` must read files as the model's training windows were made (its ``[ingest]``
    hash); see :func:`ecg_pipeline.predict.predict.predict_recordings`. Returns one row per
    recording and the files refused, each with its reason.

    When the model is a checkpoint folder holding enrolled people (``templates.json``, see
    :func:`enrol`), identity is the best-scoring enrolled person, or "unknown" below the
    threshold calibrated on people left out of training.
    """
    from ecg_pipeline.predict.enrol import TEMPLATES_FILE, load_enrolment
    from ecg_pipeline.predict.predict import predict_recordings

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    enrolment = None
    if model.version is None and (Path(model.source) / TEMPLATES_FILE).is_file():
        enrolment = load_enrolment(model)
    return predict_recordings(paths, _config(config), model, enrolment=enrolment)


def enrol(
    person: str,
    paths: Sequence[str | os.PathLike],
    model: Model,
    config: Any = None,
    *,
    replace: bool = False,
):
    """Add a person to a checkpoint model's enrolled people from a few recordings.

    No retraining: the recordings' backbone embeddings are averaged into one template, stored
    in the checkpoint folder's ``templates.json``; a person already enrolled is refused unless
    ``replace``. See :func:`ecg_pipeline.predict.enrol.enrol_person`.

    Raises
    ------
    EnrolmentError
        Naming the file and what is wrong; nothing stored is changed.

    Examples
    --------
    >>> model = load_model("data/runs/ecg-id/seed0/later_date=yes")   # doctest: +SKIP
    >>> enrol("visitor", ["v1.hea", "v2.hea", "v3.hea"], model, "configs/ecg-id.toml")  # doctest: +SKIP
    """
    from ecg_pipeline.predict.enrol import enrol_person

    return enrol_person(person, list(paths), _config(config), model, replace=replace)


def __getattr__(name: str) -> Any:
    # Types, imported when first named (``ecg_pipeline.Model``), so the import stays free.
    if name == "Model":
        from ecg_pipeline.training.model_handle import Model

        return Model
    if name == "StudyConfig":
        from ecg_pipeline.config import StudyConfig

        return StudyConfig
    raise AttributeError(f"module 'ecg_pipeline' has no attribute {name!r}")
