"""Verification end to end on demo ``.acq`` files: train with people left out, verify, enrol,
predict; and enrolments that must be refused without changing anything stored.

No mocks: a real one-epoch training on a six-person synthetic cohort (two people left out),
real files written by the project's ``.acq`` writer, the command line as a person types it.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ecg_pipeline.cli import main
from ecg_pipeline.cohort.demo import write_demo_cohort, write_demo_recording
from ecg_pipeline.config import StudyConfig
from ecg_pipeline.errors import (
    AlreadyEnrolledError,
    EnrolmentError,
    EnrolmentRecordingError,
    TemplatesWeightsError,
)
from ecg_pipeline.ingest import ingest_folder
from ecg_pipeline.predict.enrol import TEMPLATES_FILE, enrol_person, load_enrolment
from ecg_pipeline.predict.predict import predict_recordings
from ecg_pipeline.tracking.verify_log import write_verification
from ecg_pipeline.training.model_handle import load_checkpoint_model
from ecg_pipeline.training.run import train_and_evaluate
from ecg_pipeline.training.verify_run import verify_experiment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    write_demo_cohort(root / "inbox", n_subjects=6, duration_s=45.0)
    config = StudyConfig().with_overrides(
        {
            "store.root": root / "store",
            "discovery.settle_s": 0.0,
            "training.epochs": 1,
            "training.cpu_threads": 1,
            "training.out_dir": root / "runs",
            "training.holdout_people": 2,
        }
    )
    assert ingest_folder(root / "inbox", config).count("written") == 18
    run = train_and_evaluate(config, run_name="seed0")
    results, enrolments, stored = verify_experiment(run.run_dir)
    files = write_verification(results, enrolments, root / "results", "demo")
    return root, config, run, results, files


@pytest.fixture(scope="module")
def visitor(tmp_path_factory):
    """Four recordings of a person in no cohort (subject 9), under names that say nothing."""
    staging, folder = tmp_path_factory.mktemp("staging"), tmp_path_factory.mktemp("visitor")
    paths = []
    for i, condition in enumerate(("rest", "exercise", "deep_breathing", "rest")):
        made = write_demo_recording(staging, 9, condition, duration_s=20.0, seed=i)
        os.replace(made, folder / f"visit-{i}.acq")
        paths.append(folder / f"visit-{i}.acq")
    return paths


def test_people_left_out_are_in_no_class_and_verified_as_strangers(verified):
    root, config, run, results, files = verified
    assert list(results["runs"]) == ["seed0"] and results["seeds"] == [0]
    seed = results["runs"]["seed0"]
    people = seed["held_out_people"]
    assert len(people["calibration"]) == 1 and len(people["test"]) == 1
    classes = json.loads((run.run_dir / "time_block" / "model.json").read_text())["classes"]
    assert not set(people["calibration"] + people["test"]) & set(classes["identity"])
    (fold,) = seed["folds"]
    assert fold["enrolled_people"] == 4 and fold["genuine_people"] == 4
    for key in ("eer", "stranger_accepted", "known_rejected", "training_recordings_refused"):
        assert 0.0 <= fold[key] <= 1.0
    assert fold["threshold_info"]["n_people"] == 1
    assert [f.name for f in files] == ["demo.json", "demo.png"] and all(f.is_file() for f in files)
    stored = json.loads((run.run_dir / "time_block" / TEMPLATES_FILE).read_text())
    assert sorted(stored["people"]) == classes["identity"]
    assert stored["threshold"]["value"] == fold["threshold"]


def test_enrol_then_predict_with_the_templates(verified, visitor, capsys):
    root, config, run, _, _ = verified
    folder = run.run_dir / "time_block"
    code = main(["enrol", "visitor", *map(str, visitor[:3]), "--model", str(folder)])
    assert code == 0 and "enrolled visitor from 3 recording(s)" in capsys.readouterr().out
    model = load_checkpoint_model(folder)
    enrolment = load_enrolment(model)
    assert enrolment.people["visitor"]["source"] == "enrol"
    assert np.isclose(np.linalg.norm(enrolment.people["visitor"]["template"]), 1.0)
    table, errors = predict_recordings([visitor[3]], config, model, enrolment=enrolment)
    assert not errors
    row = table.iloc[0]
    assert row["identity"] in [*enrolment.people, "unknown"]
    assert row["identity_threshold"] == enrolment.threshold_value
    assert "enrolled template" in row["notes"]
    # A copy of an enrolment recording scores as its own template's person at the top.
    table, _ = predict_recordings([visitor[0]], config, model, enrolment=enrolment)
    assert table.iloc[0]["identity_best"] == "visitor"
    # The public API finds the templates beside a checkpoint model by itself.
    import ecg_pipeline as ecg

    ecg.enrol("api-visitor", visitor[1:3], ecg.load_model(folder), config)
    table, _ = ecg.predict_files(visitor[3], ecg.load_model(folder), config)
    assert "enrolled template" in table.iloc[0]["notes"]
    # And from the command line, with a checkpoint folder instead of the registry.
    capsys.readouterr()
    out = root / "predictions"
    argv = ["predict", str(visitor[3]), "--model", str(folder), "--out", str(out), "--no-log"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "verification threshold (cosine)" in printed and "visit-3.acq: identity" in printed


def test_refused_enrolments_change_nothing(verified, visitor, tmp_path):
    root, config, run, _, _ = verified
    folder = run.run_dir / "time_block"
    model = load_checkpoint_model(folder)
    enrol_person("twice", visitor[:2], config, model)
    before = (folder / TEMPLATES_FILE).read_bytes()
    with pytest.raises(AlreadyEnrolledError, match="already enrolled.*--replace"):
        enrol_person("twice", visitor[2:], config, model)
    truncated = tmp_path / "cut.acq"
    truncated.write_bytes(visitor[0].read_bytes()[:3000])
    with pytest.raises(EnrolmentRecordingError, match="cut.acq.*refused by ingest") as caught:
        enrol_person("someone", [visitor[1], truncated], config, model)
    assert caught.value.stage != "enrol" and caught.value.path == str(truncated)
    with pytest.raises(EnrolmentError, match="person"):
        enrol_person("../etc", visitor[:1], config, model)
    with pytest.raises(EnrolmentRecordingError, match="named twice"):
        enrol_person("someone", [visitor[0], visitor[0]], config, model)
    assert (folder / TEMPLATES_FILE).read_bytes() == before
    replaced = enrol_person("twice", visitor[2:], config, model, replace=True)
    assert replaced.people["twice"]["n_recordings"] == 2
    assert main(["enrol", "twice", str(visitor[0]), "--model", str(folder)]) == 2


def test_verify_command_keeps_people_enrolled_since(verified, visitor, tmp_path, capsys):
    _, config, run, _, _ = verified
    folder = run.run_dir / "time_block"
    model = load_checkpoint_model(folder)
    enrol_person("kept", visitor[:1], config, model, replace=True)
    out = tmp_path / "out"
    assert main(["verify", str(run.run_dir), "--set", f"verify.out_dir={out}"]) == 0
    assert "EER" in capsys.readouterr().out and (out / f"{run.run_dir.name}.json").is_file()
    assert "kept" in load_enrolment(model).people
    assert main(["verify", str(run.run_dir), "--set", "training.epochs=3"]) == 2


def test_templates_of_other_weights_are_refused(verified, tmp_path):
    import shutil

    _, _, run, _, _ = verified
    copy = tmp_path / "fold"
    shutil.copytree(run.run_dir / "time_block", copy)
    weights = copy / "model.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")  # other bytes: other weights
    with pytest.raises(TemplatesWeightsError, match="other weights"):
        load_enrolment(_model_at(copy))


def _model_at(folder):
    # The handle without loading the altered weights: only its folder is read by enrolment.
    import dataclasses

    from ecg_pipeline.training.model_handle import Model

    return dataclasses.replace(
        Model(None, (), {}, None, None, None, None, None, folder.name), source=str(folder)
    )


def test_verification_is_logged_to_mlflow(verified, tmp_path):
    """A real MLflow store (SQLite, no server, no mocks): one run tagged kind=verify."""
    import mlflow
    from ecg_pipeline.tracking.verify_log import log_verification

    _, config, _, results, files = verified
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    # Artifacts under tmp_path, not the working folder's ./mlruns.
    client.create_experiment(config.dataset.name, artifact_location=(tmp_path / "art").as_uri())
    run_id = log_verification(results, files, config, tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.tags["kind"] == "verify" and run.info.status == "FINISHED"
    assert run.data.metrics["eer"] == results["summary"]["eer"]
    assert run.data.params["training.holdout_people"] == "2"
    logged = {a.path for a in client.list_artifacts(run_id, "verification")}
    assert logged == {"verification/demo.json", "verification/demo.png"}
