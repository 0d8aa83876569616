"""Training on windows written by the real ingest: learning happens, runs repeat, checkpoints load.

Short schedules on a small synthetic cohort: these check the machinery, not accuracy.
"""

import json

import numpy as np
import pytest
import torch
from helpers import small_demo_study

from ecg_pipeline.training.checkpoint import load_checkpoint
from ecg_pipeline.training.run import evaluate_run, train_and_evaluate, train_run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    return small_demo_study(tmp_path_factory.mktemp("train"), epochs=6)


def test_train_then_evaluate_as_two_steps_scores_as_one_step(small_store):
    """The flow's train and evaluate tasks (two processes' worth of steps) give the same figures."""
    one = train_and_evaluate(small_store, run_name="one-step").folds[0]
    trained = train_run(small_store, run_name="two-step")
    assert not trained.evaluated
    assert json.loads((trained.run_dir / "results.json").read_text())["summary"] is None
    two = evaluate_run(trained.run_dir, small_store).folds[0]
    assert two.history == one.history
    for task in ("identity", "activity"):
        assert two.metrics[task]["confusion_matrix"] == one.metrics[task]["confusion_matrix"]
    saved = json.loads((trained.run_dir / "results.json").read_text())
    assert saved["summary"]["identity"]["accuracy"] == one.metrics["identity"]["accuracy"]


def test_evaluation_refuses_a_store_that_changed_since_training(small_store, tmp_path):
    """Recordings ingested between the train and evaluate tasks would shift the test split."""
    import shutil

    trained = train_run(small_store, run_name="changed", max_windows_per_recording=8)
    saved = json.loads((trained.run_dir / "results.json").read_text())
    saved["data_signature"] = "0" * 16  # as if the store had held other windows at training
    (trained.run_dir / "results.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="changed since this run was trained"):
        evaluate_run(trained.run_dir, small_store)
    shutil.rmtree(trained.run_dir)


def test_learning_happens_and_results_are_written(small_store):
    run = train_and_evaluate(small_store, run_name="a")
    (fold,) = run.folds
    first, last = fold.history[0], fold.history[-1]
    assert last["identity_train_loss"] < first["identity_train_loss"]
    assert last["activity_train_loss"] < first["activity_train_loss"]
    # 4 subjects, 3 conditions: chance is 0.25 and 0.33
    assert fold.metrics["identity"]["accuracy"] > 0.5
    for row in fold.history:
        assert row["identity_weight"] + row["activity_weight"] == pytest.approx(2.0)
    sizes = fold.sizes
    assert sizes["train"] > sizes["test"] > 0 and sizes["val"] > 0
    saved = json.loads((run.run_dir / "results.json").read_text())
    assert saved["seed"] == 0 and saved["split"] == "time_block"
    assert saved["config"]["training"]["epochs"] == 6
    assert set(saved["folds"][0]["metrics"]["identity"]) >= {
        "accuracy",
        "precision_macro",
        "recall_weighted",
        "f1_macro",
        "f1_weighted",
        "confusion_matrix",
        "recording_accuracy",
    }


def test_same_seed_same_history_on_cpu(small_store):
    config = small_store.with_overrides({"training.epochs": 2})
    a = train_and_evaluate(config, run_name="s1").folds[0].history
    b = train_and_evaluate(config, run_name="s2").folds[0].history
    assert a == b


def test_checkpoint_loads_without_pickle_and_predicts_the_same(small_store):
    from ecg_pipeline.io.store import WindowStore

    run = train_and_evaluate(
        small_store.with_overrides({"training.epochs": 1}),
        run_name="ckpt",
    )
    folder = run.run_dir / "time_block"
    state = torch.load(folder / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model, spec = load_checkpoint(folder)
    assert spec["heads"] == {"identity": 4, "activity": 3}
    # The "unknown" threshold, calibrated on the validation blocks of the 12 recordings.
    threshold = spec["identity_threshold"]
    assert threshold["method"] == "recording_quantile" and threshold["n_recordings"] == 12
    assert threshold["n_windows"] == run.folds[0].sizes["val"]
    assert threshold["known_reject_rate"] == 0.05 and 0.0 < threshold["value"] <= 1.0
    saved = json.loads((run.run_dir / "results.json").read_text())
    assert saved["folds"][0]["identity_threshold"] == threshold
    assert spec["ingest_hash"] == small_store.ingest_hash() and spec["fs_hz"] == 100.0
    # A checkpoint from before thresholds existed still loads.
    old = {k: v for k, v in spec.items() if k not in ("identity_threshold", "ingest_hash", "fs_hz")}
    (folder / "model.json").write_text(json.dumps(old))
    load_checkpoint(folder)
    x, _ = WindowStore(small_store.store.root, "demo").read_windows()
    xt = torch.as_tensor(x[:32, None, :])
    again, _ = load_checkpoint(folder)
    with torch.no_grad():
        a, b = model(xt), again(xt)
    for task in a:
        torch.testing.assert_close(a[task], b[task])


@pytest.mark.parametrize("kind", ["window", "time_block", "group"])
def test_every_split_trains(small_store, kind):
    update = {"training.epochs": 1, "training.split": kind}
    if kind == "group":
        update.update(
            {
                "training.group_column": "subject",
                "training.test_groups": ("S04",),
                "training.tasks": ("activity",),
            }
        )
    config = small_store.with_overrides(update)
    run = train_and_evaluate(config, run_name=f"split-{kind}")
    assert run.folds and all(
        np.isfinite(f.metrics[t]["accuracy"]) for f in run.folds for t in f.metrics
    )


def test_seeds_are_summarised_with_mean_and_spread(small_store, tmp_path):
    from ecg_pipeline.training.experiment import run_seeds

    config = small_store.with_overrides({"training.epochs": 1})
    runs, summary = run_seeds(
        config, [0, 1], name="two-seeds", out_dir=tmp_path, command="ecg-pipeline train ..."
    )
    saved = json.loads((tmp_path / "two-seeds" / "summary.json").read_text())
    assert (
        saved["seeds"] == [0, 1]
        and saved["n_folds"] == 1
        and saved["command"] == "ecg-pipeline train ..."
    )
    accuracies = [run.folds[0].metrics["identity"]["accuracy"] for _, run in runs]
    assert saved["tasks"]["identity"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert saved["tasks"]["identity"]["accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert saved["per_seed"]["1"]["identity"]["accuracy"] == pytest.approx(accuracies[1])
    assert (tmp_path / "two-seeds" / "seed1" / "results.json").is_file()
    assert (tmp_path / "two-seeds" / "seed0" / "time_block" / "model.pt").is_file()


def test_label_scarcity_records_the_share_of_recordings_it_kept(small_store, tmp_path):
    """The summary says how many training recordings kept labels, for the curve's x axis."""
    from ecg_pipeline.training.experiment import run_seeds

    config = small_store.with_overrides({"training.epochs": 1, "training.label_fraction": 0.1})
    runs, summary = run_seeds(config, [0], name="scarce", out_dir=tmp_path)
    (fold,) = runs[0][1].folds
    # 4 people x 3 conditions offered; 10 % asked, one recording per person kept.
    assert fold.sizes["train_recordings_offered"] == 12 and fold.sizes["train_recordings"] == 4
    saved = json.loads((tmp_path / "scarce" / "summary.json").read_text())
    assert saved["labelled_share"] == pytest.approx(4 / 12)


def test_resume_reuses_seeds_trained_as_separate_commands_and_nothing_else(
    small_store, tmp_path, monkeypatch
):
    """Seeds run side by side as two commands end in one summary; a changed setting retrains."""
    from ecg_pipeline.training import experiment
    from ecg_pipeline.training.experiment import run_seeds

    config = small_store.with_overrides({"training.epochs": 1})
    for seed in (0, 1):  # two lanes, each its own command and summary
        run_seeds(config, [seed], name="lanes", out_dir=tmp_path)
    stamps = {
        s: (tmp_path / "lanes" / f"seed{s}" / "results.json").stat().st_mtime_ns for s in (0, 1)
    }
    told = []
    trained = []
    real = experiment.train_and_evaluate

    def counting(cfg, **options):
        trained.append(cfg.training.seed)
        return real(cfg, **options)

    monkeypatch.setattr(experiment, "train_and_evaluate", counting)
    runs, summary = run_seeds(
        config,
        [0, 1, 2],
        name="lanes",
        out_dir=tmp_path,
        resume=True,
        on_reuse=lambda seed, why: told.append((seed, why)),
    )
    assert trained == [2]  # seeds 0 and 1 were read back, not trained again
    assert [why.split(":")[0] for _, why in told] == ["reused", "reused", "training"]
    for s in (0, 1):
        path = tmp_path / "lanes" / f"seed{s}" / "results.json"
        assert path.stat().st_mtime_ns == stamps[s]
    assert summary["seeds"] == [0, 1, 2] and summary["n_seeds"] == 3

    # Where and how the product runs (servers, flow, limits) is not what a model depends on.
    elsewhere = config.with_overrides(
        {"servers.mlflow_port": 5999, "flow.task_runner": "dask", "limits.file_time_s": 60}
    )
    run_seeds(elsewhere, [0], name="lanes", out_dir=tmp_path, resume=True)
    assert trained == [2]

    trained.clear()
    changed = config.with_overrides({"training.batch_size": 8})
    run_seeds(
        changed,
        [0],
        name="lanes",
        out_dir=tmp_path,
        resume=True,
        on_reuse=lambda seed, why: told.append((seed, why)),
    )
    assert trained == [0] and told[-1] == (0, "training: its configuration differs")


def test_tuned_recipe_trains_with_augmentation_and_a_cosine_schedule(small_store, tmp_path):
    from pathlib import Path

    from ecg_pipeline.config import load_config

    recipe = load_config(
        recipes=[Path(__file__).resolve().parents[2] / "configs/recipes/tuned.toml"]
    )
    training = recipe.with_overrides(
        {"training.epochs": 4, "training.cpu_threads": 1, "training.out_dir": tmp_path}
    ).training
    config = small_store.with_overrides({"training": training})
    assert config.training.augment.enabled
    history = train_and_evaluate(config, run_name="tuned").folds[0].history
    rates = [row["lr"] for row in history]
    assert (
        rates[0] == pytest.approx(1e-3)
        and rates == sorted(rates, reverse=True)
        and rates[-1] < 2e-4
    )
    assert history[-1]["identity_train_loss"] < history[0]["identity_train_loss"]


def test_evaluate_reads_windows_as_the_checkpoint_was_trained(small_store):
    from ecg_pipeline.training.evaluate import evaluate_checkpoint

    zscored = small_store.with_overrides(
        {"store.normalisation": "window_zscore", "training.epochs": 1}
    )
    run = train_and_evaluate(zscored, run_name="zscore")
    folder = run.run_dir / "time_block"
    assert json.loads((folder / "model.json").read_text())["normalisation"] == "window_zscore"
    # The default configuration says min-max; the checkpoint's own setting wins.
    told_wrong = evaluate_checkpoint(folder, small_store, small_store.store.root)
    told_right = evaluate_checkpoint(folder, zscored, small_store.store.root)
    assert told_wrong == told_right
