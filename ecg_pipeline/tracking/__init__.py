"""Experiment tracking: figures, lineage and MLflow logging of training runs.

* :mod:`~ecg_pipeline.tracking.plots` draws the run's figures (matplotlib only, no MLflow).
* :mod:`~ecg_pipeline.tracking.lineage` says what a run was trained on (git commit, data hash,
  a recordings table without personal data).
* :mod:`~ecg_pipeline.tracking.mlflow_log` logs a finished run (params, metrics, figures,
  a pickle-free model) and keeps the registry's ``champion`` alias on the best version.
* :mod:`~ecg_pipeline.tracking.registry` moves that alias and loads the champion back.

Only this package imports mlflow (see ``design.md``). Importing the package itself imports
neither mlflow nor matplotlib, so command lines that never track stay quick to start.
"""
