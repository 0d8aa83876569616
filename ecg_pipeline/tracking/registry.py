"""The model registry: which version is the champion, and loading it back without pickles.

Each registered version carries its held-out score as the tag ``heldout_score``. The alias
``champion`` moves to a new version only when its score is strictly higher than the current
champion's, so a worse (or equal) retraining never replaces the model in use, and the first
version of a model is the champion by default.

Models are loaded with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``: the project logs
``pt2`` archives (``torch.export``, no pickle), and MLflow then checks that the archive holds
no pickle payload before ``torch.export.load`` reads it, so a tampered artifact cannot run
code on the loading machine.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ecg_pipeline.training.model_handle import Model, threshold_value

__all__ = [
    "CHAMPION_ALIAS",
    "TrackingUnavailableError",
    "check_tracking_server",
    "ModelNotFoundError",
    "PROTOCOL_TAG",
    "SCORE_TAG",
    "Promotion",
    "disallow_pickle",
    "load_champion",
    "promote_if_better",
    "registered_model_name",
    "using_tracking_uri",
]

CHAMPION_ALIAS = "champion"
SCORE_TAG = "heldout_score"
PROTOCOL_TAG = "heldout_protocol"
_PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
_URI_ENVS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# MLflow's client retries an unanswered request 7 times with exponential backoff: about 250 s
# before the first sign of a stopped server, and minutes per failing run. The product bounds
# it (a person's own MLFLOW_HTTP_* settings win); the flow's log task retries on top of this.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
PROBE_TIMEOUT_S = 5.0


class TrackingUnavailableError(ConnectionError):
    """The MLflow server does not answer; the message names its URL."""


def bound_mlflow_retries() -> None:
    """Give MLflow's HTTP client bounded retries unless the person set their own."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def check_tracking_server(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Ask an ``http(s)`` tracking server's ``/health`` once, within ``timeout_s``.

    So that a stopped server is reported in seconds, naming its URL, before any logging
    starts. File and database URIs are not probed.

    Raises
    ------
    TrackingUnavailableError
    """
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    if urlsplit(uri).scheme not in ("http", "https"):
        return
    handlers = [urllib.request.ProxyHandler({})] if _loopback(uri) else []
    try:
        with urllib.request.build_opener(*handlers).open(
            f"{uri.rstrip('/')}/health", timeout=timeout_s
        ) as response:
            if response.status == 200:
                return
            why = f"/health answered {response.status}"
    except urllib.error.HTTPError as exc:
        why = f"/health answered {exc.code}"
    except (OSError, ValueError) as exc:
        why = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    raise TrackingUnavailableError(
        f"MLflow at {uri} is not answering ({why}); start it (`ecg-pipeline servers`, or "
        "`make run`) or point [servers] tracking_uri at a running server"
    )


def _loopback(uri: str) -> bool:
    from urllib.parse import urlsplit

    return (urlsplit(uri).hostname or "") in ("127.0.0.1", "localhost", "::1")


def disallow_pickle() -> None:
    """Refuse pickled models in this process from now on (MLflow reads the variable per load)."""
    os.environ[_PICKLE_ENV] = "false"


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (tracking and registry) at ``uri`` for the block only.

    An ``http(s)`` server is asked for ``/health`` first (:func:`check_tracking_server`), and
    MLflow's own retries are bounded (:data:`HTTP_DEFAULTS`), so a stopped server fails the
    caller within seconds with :class:`TrackingUnavailableError` naming its URL.

    ``mlflow.pytorch.log_model`` and ``load_model`` resolve the server from MLflow's globals,
    not from a client, so they are set here and put back afterwards. ``set_tracking_uri`` and
    ``set_registry_uri`` mirror themselves into the ``MLFLOW_*_URI`` variables, so those
    variables are the whole prior state. Not thread-safe: two threads tracking to different
    servers at once would see each other's URI.
    """
    import mlflow

    bound_mlflow_retries()
    check_tracking_server(uri)
    before = {name: os.environ.get(name) for name in _URI_ENVS}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before["MLFLOW_TRACKING_URI"])  # None unsets it again
        mlflow.set_registry_uri(before["MLFLOW_REGISTRY_URI"])
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)


@dataclass(frozen=True)
class Promotion:
    """The outcome of :func:`promote_if_better`.

    Attributes
    ----------
    is_champion : bool
        Whether the new version holds the alias now.
    previous_version : str or None
        The champion before the call (None when there was none).
    previous_score : float or None
        Its ``heldout_score`` tag (None when missing or unreadable).
    """

    is_champion: bool
    previous_version: str | None
    previous_score: float | None


def _score_of(client, name: str, version: str) -> float | None:
    tags = client.get_model_version(name, version).tags or {}
    try:
        return float(tags[SCORE_TAG])
    except (KeyError, ValueError):
        return None


def promote_if_better(
    client, name: str, version: str | int, score: float, *, protocol: str | None = None
) -> Promotion:
    """Tag ``version`` with ``score`` and give it the champion alias if it beats the holder.

    Parameters
    ----------
    client : mlflow.MlflowClient
        A client whose registry is the one holding ``name``.
    name : str
        The registered model.
    version : str or int
        The version just registered.
    score : float
        Its held-out score; higher is better. NaN never wins against an existing champion.
    protocol : str, optional
        How the score was measured (the split). Scores of different protocols are not
        compared: a champion measured otherwise keeps the alias, so a leaky ``window`` split
        never displaces a model scored on held-out sessions. Moving it then is a person's call
        (``set_registered_model_alias``).

    Returns
    -------
    Promotion
        Whether the alias moved, and the previous holder and its score.

    Notes
    -----
    A champion without a readable score tag (set by hand, say) is replaced: a score that can
    be compared is better evidence than none. Read-then-write: two runs finishing at the same
    instant could both win; the project runs one flow at a time (``serve(limit=1)``).
    """
    version = str(version)
    client.set_model_version_tag(name, version, SCORE_TAG, repr(float(score)))
    if protocol is not None:
        client.set_model_version_tag(name, version, PROTOCOL_TAG, protocol)
    # The registered model's alias map avoids relying on the error code of a missing alias,
    # which differs between the SQL store and the REST client.
    aliases = client.get_registered_model(name).aliases or {}
    current = aliases.get(CHAMPION_ALIAS)
    current = str(current) if current is not None else None
    previous_score = _score_of(client, name, current) if current is not None else None
    if current is not None and current != version and protocol is not None:
        held = (client.get_model_version(name, current).tags or {}).get(PROTOCOL_TAG)
        if held is not None and held != protocol:
            return Promotion(False, current, previous_score)
    wins = (
        current is None
        or previous_score is None
        or (not math.isnan(score) and score > previous_score)
    )
    if wins and current != version:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    return Promotion(bool(wins or current == version), current, previous_score)


def registered_model_name(config) -> str:
    """``<model>-<dataset>`` (``"dt4ecg-demo"``, ``"ecgsl-demo"``): a study's registry name.

    Underscores are dropped from the model's name (``ecg_sl`` registers as ``ecgsl``).
    """
    return f"{config.model.name.replace('_', '')}-{config.dataset.name}"


_NOT_FOUND_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


class ModelNotFoundError(LookupError):
    """The registry holds no such model, version or alias (nothing to predict with)."""


def _model_version(client, name: str, alias: str, version, tracking_uri: str):
    from mlflow.exceptions import MlflowException

    wanted = f"version {version}" if version is not None else f"alias {alias!r}"
    try:
        if version is None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        # Stores differ in the code of a missing alias; anything else (a server error, an
        # unreachable server) is not "not found" and propagates as it is.
        if exc.error_code not in _NOT_FOUND_CODES:
            raise
        raise ModelNotFoundError(
            f"no registered model {name!r} with {wanted} on {tracking_uri}: train and log one "
            f"first (ingest-train), or name an existing version ({exc.message})"
        ) from exc


def load_champion(
    tracking_uri: str, name: str, *, alias: str = CHAMPION_ALIAS, version: str | int | None = None
) -> Model:
    """Load the version of ``name`` that holds ``alias``, refusing pickled artefacts.

    Parameters
    ----------
    tracking_uri : str
        The MLflow server (``ServerSettings.mlflow_uri``), also used as the registry.
    name : str
        The registered model, e.g. ``"dt4ecg-demo"``.
    alias : str
        ``"champion"`` by default.
    version : str or int, optional
        Load this version instead of the alias's.

    Returns
    -------
    Model
        The exported program as the handle's ``network`` (``network(x)`` with ``x`` a float32
        (B, 1, T) tensor returns a tuple of (B, n_classes) logits in ``head_names`` order), its
        class names, calibrated identity threshold, normalisation, window length and rate, the
        ``[ingest]`` hash of its training windows (from the training run's tag for older
        models; None when unknown), ``name`` and ``version`` as registered, and the MLmodel
        metadata.

    Raises
    ------
    ModelNotFoundError
        When the model, version or alias does not exist.
    mlflow.exceptions.MlflowException
        When the server fails or the artefact is not pickle-free.
    """
    disallow_pickle()
    from mlflow.models import Model as MLmodel

    import mlflow

    with using_tracking_uri(tracking_uri), tempfile.TemporaryDirectory() as tmp:
        client = mlflow.MlflowClient()
        found = _model_version(client, name, alias, version, tracking_uri)
        # By number, not by alias: the alias may move while this runs, and the version
        # reported must be the one loaded. One download serves the metadata and the weights.
        uri = f"models:/{name}/{found.version}"
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
        metadata = MLmodel.load(local).metadata or {}
        module = mlflow.pytorch.load_model(local)
        ingest_hash = metadata.get("ingest_hash")
        if ingest_hash is None and found.run_id:
            # Models logged before the hash was in their metadata: the training run's tag.
            ingest_hash = client.get_run(found.run_id).data.tags.get("ingest_hash")
    threshold = metadata.get("identity_threshold") or None
    return Model(
        network=module,
        head_names=tuple(metadata.get("head_names", ())),
        classes=dict(metadata.get("classes", {})),
        identity_threshold=threshold_value(threshold),
        normalisation=metadata.get("normalisation"),
        ingest_hash=ingest_hash,
        n_samples=metadata.get("n_samples"),
        fs_hz=metadata.get("fs_hz"),
        name=name,
        version=str(found.version),
        source=uri,
        threshold_info=dict(threshold) if threshold else None,
        metadata=dict(metadata),
    )
