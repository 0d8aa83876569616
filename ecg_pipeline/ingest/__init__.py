"""Batch ingest: a folder of recordings into the dataset's window store.

One sequence (:mod:`.batch`), called alike by ``ingest_folder``, the flow's tasks and the
benchmarks: discover and label (:mod:`ecg_pipeline.cohort.labels`), check the labels, plan
against the store (:mod:`.plan`), read and window each file (:mod:`.process`), check the
contracts and write (:mod:`.write`), then finish (tables, cohort report) and decide whether to
train (:func:`.batch.training_decision`).
"""

from ecg_pipeline.ingest.batch import (
    Discovered,
    TrainDecision,
    check_labels,
    discover_batch,
    finish_batch,
    ingest_files,
    ingest_folder,
    open_store,
    plan_files,
    training_decision,
)
from ecg_pipeline.ingest.plan import Plan, PlannedFile, plan_batch
from ecg_pipeline.ingest.process import ProcessedFile, process_file, read_windows
from ecg_pipeline.ingest.results import BatchReport, FileResult
from ecg_pipeline.ingest.write import (
    rejections_table,
    validate_batch,
    write_batch,
    write_batch_tables,
)

__all__ = [
    "BatchReport",
    "Discovered",
    "FileResult",
    "Plan",
    "PlannedFile",
    "ProcessedFile",
    "TrainDecision",
    "check_labels",
    "discover_batch",
    "finish_batch",
    "ingest_files",
    "ingest_folder",
    "open_store",
    "plan_batch",
    "plan_files",
    "process_file",
    "read_windows",
    "rejections_table",
    "training_decision",
    "validate_batch",
    "write_batch",
    "write_batch_tables",
]
