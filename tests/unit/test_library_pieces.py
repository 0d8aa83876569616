"""The small library functions the flows, the command line and the benchmarks share."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ecg_pipeline.cohort.checks import CohortReport
from ecg_pipeline.config import StudyConfig
from ecg_pipeline.errors import (
    DuplicateRecordingError,
    IngestError,
    NotAcqFileError,
    StillBeingWrittenError,
)
from ecg_pipeline.ingest import BatchReport, FileResult, training_decision
from ecg_pipeline.instrument import count, recording, stage
from ecg_pipeline.training.metrics import mean_and_sd
from ecg_pipeline.training.results import FoldResult, RunResult, fold_dir, fold_statistics


# --- train or skip --------------------------------------------------------------------------
def _report(statuses: list[str], stored: int) -> BatchReport:
    results = [FileResult(f"f{i}.acq", s) for i, s in enumerate(statuses)]
    catalog = pd.DataFrame({"recording_id": [f"r{i}" for i in range(stored)]})
    return BatchReport("demo", None, "h", results, catalog, CohortReport(), None)


@pytest.mark.parametrize(
    ("statuses", "stored", "train", "force", "expected", "words"),
    [
        (["written", "unchanged"], 2, True, False, True, "1 recording(s) new or changed"),
        (["replaced"], 1, True, False, True, "new or changed"),
        (["unchanged", "unchanged"], 2, True, False, False, "training skipped"),
        (["unchanged"], 1, True, True, True, "forced"),
        (["rejected"], 0, True, True, False, "nothing stored"),
        ([], 0, True, False, False, "nothing stored"),
        (["written"], 1, False, True, False, "ingest only"),
    ],
)
def test_training_decision(statuses, stored, train, force, expected, words):
    decision = training_decision(_report(statuses, stored), train=train, force=force)
    assert decision.train is expected
    assert words in decision.reason


# --- errors carry their status ----------------------------------------------------------------
def test_an_error_s_status_belongs_to_its_class():
    assert IngestError("a", "r").status == "rejected"
    assert NotAcqFileError("a", "r").status == "rejected"
    assert DuplicateRecordingError("a", "r").status == "rejected"
    assert StillBeingWrittenError("a", "r").status == "deferred"
    assert FileResult.refused(StillBeingWrittenError("a", "copying")).status == "deferred"
    assert FileResult.refused(NotAcqFileError("b", "text")).status == "rejected"


# --- typed results ----------------------------------------------------------------------------
def _fold(name: str, acc: float, vote: float | None = None) -> FoldResult:
    report = {"accuracy": acc, "f1_macro": acc, "f1_weighted": acc, "recording_accuracy": acc}
    if vote is not None:
        report["recording_accuracy_vote"] = vote
    return FoldResult(
        name, 3, [{"epoch": 1}], {"train": 5, "val": 1, "test": 2}, None, {"identity": report}
    )


def test_run_result_round_trips_through_results_json(tmp_path):
    run = RunResult(
        tmp_path / "run",
        [_fold("session=01", 0.8, 0.9), _fold("a/b", 0.6, 0.5)],
        config={"training": {"seed": 2, "split": "group"}},
        ingest_hash="abc",
    )
    path = run.save()
    assert json.loads(path.read_text())["recording_rule"] == "mean_probability"
    back = RunResult.load(tmp_path / "run")
    assert back == run
    assert (back.seed, back.split) == (2, "group")
    assert back.fold_dir("a/b") == tmp_path / "run" / "a_b" == fold_dir(back.run_dir, "a/b")
    with pytest.raises(KeyError, match="no fold"):
        back.fold("session=09")


def test_results_written_before_the_rule_hold_a_vote(tmp_path):
    # Older results.json: no recording_rule, "config_hash", recording_accuracy was the vote.
    old = {"config": {}, "config_hash": "h1", "folds": [_fold("window", 0.7).to_json()]}
    (tmp_path / "results.json").write_text(json.dumps(old))
    run = RunResult.load(tmp_path)
    metrics = run.folds[0].metrics["identity"]
    assert metrics["recording_accuracy_vote"] == 0.7 and "recording_accuracy" not in metrics
    assert run.ingest_hash == "h1"


def test_fold_statistics_use_the_sample_standard_deviation():
    stats = fold_statistics([_fold("a", 0.8, 0.9), _fold("b", 0.6, 0.5)])["identity"]
    assert stats["accuracy"] == pytest.approx(0.7)
    assert stats["accuracy_std"] == pytest.approx(0.2 / 2**0.5)
    assert stats["recording_accuracy_vote_std"] == pytest.approx(0.4 / 2**0.5)
    assert mean_and_sd([0.5]) == (0.5, 0.0)
    with pytest.raises(ValueError):
        mean_and_sd([])


# --- one configuration ------------------------------------------------------------------------
def test_with_overrides_validates_like_a_file(tmp_path):
    config = StudyConfig().with_overrides(
        {"training.epochs": 3, "model.name": None, "store.root": tmp_path}, training__seed=4
    )
    assert (config.training.epochs, config.training.seed, config.store.root) == (3, 4, tmp_path)
    assert config.model.name == StudyConfig().model.name  # None: left as it is
    with pytest.raises(ValueError, match="training.epochs"):
        StudyConfig().with_overrides({"training.epochs": 0})
    with pytest.raises(ValueError, match="Extra inputs"):
        StudyConfig().with_overrides({"training.epoch": 3})


def test_a_model_key_the_model_cannot_use_is_refused():
    from ecg_pipeline.training.spec import model_spec

    heads, classes = {"identity": 2}, {"identity": ["a", "b"]}
    lstm = StudyConfig().with_overrides({"model.name": "lstm"})
    model_spec(lstm, heads, classes, 300)  # defaults untouched: nothing to refuse
    odd = lstm.with_overrides({"model.kernel_size": 9})
    with pytest.raises(ValueError, match=r"\[model\] kernel_size = 9: model 'lstm' does not take"):
        model_spec(odd, heads, classes, 300)
    resnet = StudyConfig().with_overrides({"model.name": "resnet1d", "model.kernel_size": 9})
    assert model_spec(resnet, heads, classes, 300)["options"]["kernel_size"] == 9
    # A baseline keeps its own widths unless the configuration changes one it takes.
    mobile = StudyConfig().with_overrides({"model.name": "mobilenet1d"})
    assert model_spec(mobile, heads, classes, 300)["options"] == {}
    wider = mobile.with_overrides({"model.kernel_size": 9})
    assert model_spec(wider, heads, classes, 300)["options"] == {"kernel_size": 9}


# --- the timing and counting hook -------------------------------------------------------------
def test_stages_and_counts_are_recorded_only_while_asked():
    with stage("outside"):
        count("outside")
    with recording() as rec:
        with stage("a"):
            with stage("b"):
                count("reads", 2)
        count("reads")
    assert rec.calls == {"a": 1, "b": 1} and rec.counts == {"reads": 3}
    assert rec.seconds["a"] >= rec.seconds["b"] >= 0.0
    assert "outside" not in rec.seconds
