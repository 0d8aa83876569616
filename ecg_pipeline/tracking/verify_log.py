"""Log a verification result to MLflow: a run in the dataset's experiment, tagged ``kind=verify``.

A run holds:

* tags: ``kind=verify``, ``experiment_folders`` (the training runs it verified), ``model``,
  ``split``, ``git_commit``;
* params: the ``[verify]`` settings and ``holdout_people``;
* metrics: the summary's means over runs and folds (``eer``, ``far_at_fixed_frr``,
  ``frr_at_fixed_far``, ``stranger_accepted``, ``known_rejected``, ...), with their ``_std``;
* artifacts: ``verification/`` holding the results JSON and the ROC/DET figure.
"""

from __future__ import annotations

import time
from pathlib import Path

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.tracking.lineage import git_commit
from ecg_pipeline.tracking.registry import using_tracking_uri

__all__ = ["log_verification", "write_verification"]


def write_verification(results: dict, enrolments: dict, out_dir, name: str) -> list[Path]:
    """Write the results JSON and its ROC/DET figure, and store each fold's enrolment.

    Parameters
    ----------
    results, enrolments
        From :func:`ecg_pipeline.training.verify_run.verify_experiment`.
    out_dir : path-like
        ``[verify] out_dir``; the files are ``<name>.json`` and ``<name>.png`` there.
    name : str
        The experiment's name.

    Returns
    -------
    list of Path
        The JSON and the figure. Each fold folder gains (or updates) its ``templates.json``:
        the known people's templates and the calibrated threshold
        (:func:`ecg_pipeline.predict.enrol.store_training_enrolment`).
    """
    from ecg_pipeline.predict.enrol import store_training_enrolment
    from ecg_pipeline.tracking.plots import verification_curves
    from ecg_pipeline.training.model_handle import load_checkpoint_model
    from ecg_pipeline.training.verify_run import write_results

    out = Path(out_dir)
    json_path = write_results(results, out / f"{name}.json")
    curves = [
        {
            "label": f"{label} {fold['fold']} (EER {fold['eer']:.1%})",
            "far": fold["roc"]["far"],
            "frr": fold["roc"]["frr"],
            "at_threshold": (fold["far_at_threshold"], fold["frr_at_threshold"]),
        }
        for label, entry in results["runs"].items()
        for fold in entry["folds"]
    ]
    title = f"{results['dataset']} {results['model']}: known people's held-out records vs strangers"
    figure = verification_curves(curves, title=title)
    png = out / f"{name}.png"
    from ecg_pipeline.io.atomic import atomic_target

    with atomic_target(png) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    for folder, fold in enrolments.items():
        store_training_enrolment(load_checkpoint_model(folder), fold.templates, fold.threshold)
    return [json_path, png]


def log_verification(
    results: dict,
    files: list[Path],
    config: StudyConfig,
    *,
    tracking_uri: str | None = None,
    run_name: str | None = None,
) -> str:
    """Log ``verify_experiment``'s results and their files as one MLflow run; its run id.

    Parameters
    ----------
    results : dict
        From :func:`ecg_pipeline.training.verify_run.verify_experiment`.
    files : list of Path
        The written results JSON and figure, logged under ``verification/``.
    config : StudyConfig
        Its dataset names the experiment; ``[servers]`` the tracking server by default.
    tracking_uri : str, optional
        The tracking server (``config.servers.mlflow_uri`` by default).
    run_name : str, optional
        ``verify-<UTC time stamp>`` by default.

    Raises
    ------
    mlflow.exceptions.MlflowException
        When the server refuses a request; a run already created is then marked FAILED.
    """
    from mlflow.entities import Metric, Param

    import mlflow
    from ecg_pipeline.tracking.mlflow_log import experiment_id

    uri = tracking_uri or config.servers.mlflow_uri
    name = run_name or f"verify-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    tags = {
        "kind": "verify",
        "experiment_folders": ",".join(results["experiments"]),
        "model": str(results["model"]),
        "split": f"{results['split']}:{results.get('group_column')}",
        "dataset": config.dataset.name,
        "git_commit": git_commit(),
    }
    params = {f"verify.{k}": str(v) for k, v in results["verify"].items()}
    params["training.holdout_people"] = str(results["holdout_people"])
    params["seeds"] = ",".join(map(str, results["seeds"]))
    with using_tracking_uri(uri):
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        run = client.create_run(
            experiment_id(client, config.dataset.name), run_name=name, tags=tags
        )
        run_id = run.info.run_id
        try:
            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in results["summary"].items()],
                params=[Param(k, v) for k, v in params.items()],
            )
            for path in files:
                client.log_artifact(run_id, str(path), artifact_path="verification")
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
    return run_id
