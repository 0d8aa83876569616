"""The flow's summary as people read it (end of the flow's log, make run, the watcher)."""

from ecg_pipeline.report import render_flow_summary


def test_refusals_and_why_training_was_skipped_are_spelled_out():
    text = render_flow_summary(
        {
            "folder": "/lab/inbox",
            "counts": {"unchanged": 9, "rejected": 1},
            "rejected": [
                {
                    "file": "/lab/inbox/S06_rest.acq",
                    "error": "NotAcqError",
                    "reason": "not an AcqKnowledge file",
                }
            ],
            "rejections_file": "/lab/store/demo/_rejections.csv",
            "trained": False,
            "note": "no new or changed recordings: training skipped",
        }
    )
    lines = text.splitlines()
    assert lines[0] == "files in /lab/inbox: 9 unchanged, 1 refused"
    assert "/lab/inbox/S06_rest.acq: not an AcqKnowledge file (NotAcqError)" in text
    assert lines[-1] == "not trained: no new or changed recordings: training skipped"
    assert "{" not in text  # no JSON for people


def test_a_trained_run_ends_with_its_metrics_and_where_to_look():
    text = render_flow_summary(
        {
            "folder": "/lab/inbox",
            "counts": {"written": 9},
            "rejected": [],
            "trained": True,
            "metrics": {
                "identity": {"accuracy": 0.91234, "f1_macro": 0.9, "recording_accuracy": 1.0},
                "activity": {"accuracy": 0.8, "f1_macro": 0.79, "recording_accuracy": 0.9},
            },
            "mlflow_run_url": "http://127.0.0.1:5000/#/experiments/1/runs/abc",
            "model_uri": "models:/m-0123",
            "registered_model": "dt4ecg-demo",
            "model_version": "3",
            "is_champion": True,
        }
    )
    assert "identity  test accuracy 0.912 per window, 1.000 per recording" in text
    assert "MLflow run: http://127.0.0.1:5000/#/experiments/1/runs/abc" in text
    assert text.endswith("model: dt4ecg-demo version 3 (the champion)")
