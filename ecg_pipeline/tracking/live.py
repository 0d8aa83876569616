"""An MLflow run that exists while its model trains: opened at the start, per-epoch metrics
logged as each epoch ends, finished by :func:`~ecg_pipeline.tracking.mlflow_log.log_training_run`.

Training knows nothing of MLflow: the flow hands :meth:`LiveRun.epoch` to the training loop as
its ``on_epoch`` callback and :meth:`LiveRun.folds` as ``on_folds``. A tracking server that stops
answering mid-training does not stop the training: live logging warns once and goes quiet, and
the final logging (retried, bounded) says whether the server is back.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.tracking.keys import flatten_params, metric_key, prefixes_of_folds

__all__ = ["LIVE_TAG", "LiveRun"]

LIVE_TAG = "live"  # "true" on a run opened before its training


class LiveRun:
    """The MLflow run ``run_id`` on ``tracking_uri``, being filled while its model trains."""

    def __init__(self, tracking_uri: str, run_id: str):
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self._prefixes: dict[str, str] = {}
        self._quiet = False

    @classmethod
    def open(
        cls,
        config: StudyConfig,
        *,
        tracking_uri: str,
        run_name: str,
        tags: Mapping[str, str] | None = None,
        experiment: str | None = None,
    ) -> LiveRun:
        """Create the run (RUNNING, in the dataset's experiment) with its tags and parameters."""
        import mlflow
        from ecg_pipeline.tracking.abandoned import owner_tags
        from ecg_pipeline.tracking.mlflow_log import _log_numbers, experiment_id
        from ecg_pipeline.tracking.registry import using_tracking_uri

        with using_tracking_uri(tracking_uri):
            client = mlflow.MlflowClient(tracking_uri=tracking_uri)
            exp_id = experiment_id(client, experiment or config.dataset.name)
            all_tags = {str(k): str(v) for k, v in (tags or {}).items()}
            all_tags |= {LIVE_TAG: "true", **owner_tags()}
            run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
            _log_numbers(client, run.info.run_id, flatten_params(config), [])
        return cls(tracking_uri, run.info.run_id)

    def folds(self, names: list[str]) -> None:
        """The run's folds, in order (before the first epoch): they name the metrics."""
        self._prefixes = dict(zip(names, prefixes_of_folds(names), strict=True))

    def epoch(self, fold: str, row: Mapping) -> None:
        """Log one epoch's history row of ``fold`` at step ``row["epoch"]``."""
        if self._quiet:
            return
        from mlflow.entities import Metric

        import mlflow
        from ecg_pipeline.tracking.registry import bound_mlflow_retries

        bound_mlflow_retries()  # a stopped server costs seconds, not minutes of retries

        prefix = self._prefixes.get(fold, "")
        now = int(time.time() * 1000)
        step = int(row["epoch"])
        metrics = [
            Metric(metric_key(prefix + key), float(value), now, step)
            for key, value in row.items()
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
        try:
            mlflow.MlflowClient(tracking_uri=self.tracking_uri).log_batch(
                self.run_id, metrics=metrics
            )
        except Exception as exc:  # the server, the network: training goes on regardless
            self._quiet = True
            warnings.warn(
                f"MLflow at {self.tracking_uri} took no epoch metrics ({type(exc).__name__}: "
                f"{exc}); training goes on, and the run is logged when it ends",
                stacklevel=2,
            )
