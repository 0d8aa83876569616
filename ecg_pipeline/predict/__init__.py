"""Labelling new recordings with the registered ``champion`` model, or verifying them against
enrolled people.

* :mod:`~ecg_pipeline.training.aggregate`: window probabilities to one answer per recording
  (pure numpy).
* :mod:`~ecg_pipeline.training.calibration`: the identity confidence threshold below which a
  recording is "unknown", calibrated on the validation part at training time (pure numpy).
* :mod:`~ecg_pipeline.predict.predict`: files to windows (the ingest chain, no labels needed),
  windows to predictions, one row per recording.
* :mod:`~ecg_pipeline.predict.output`: the predictions Parquet and the rejections table,
  written atomically.
* :mod:`~ecg_pipeline.predict.enrol`: enrolled people's templates beside a checkpoint
  (``templates.json``), added from a few recordings without retraining; with them, ``predict``
  answers with the best-scoring person or "unknown" below the threshold calibrated on people
  left out of training (:mod:`ecg_pipeline.training.verification`).

Logging a prediction batch to MLflow lives in :mod:`ecg_pipeline.tracking.predict_log` (only
``tracking/`` imports mlflow). Importing this package imports nothing heavy.
"""
