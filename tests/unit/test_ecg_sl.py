"""ECG-SL: masking and padding, export, the pre-training objectives, and pre-training that never
reads the test side by default (one encoder per fold), fine-tuning from it and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.models import TupleOutput, build_model
from ecg_pipeline.training.objectives import Contrastive, MaskedBeats

K, L = 6, 40
HEADS = {"identity": 4, "activity": 3}


def _beats(n_real: list[int], seed: int = 0) -> torch.Tensor:
    """(B, K, L + 2) with n_real[i] real beats in row i, right-padded with zeros."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(n_real), K, L + 2)
    for i, n in enumerate(n_real):
        x[i, :n, :L] = torch.rand(n, L, generator=g)
        x[i, :n, L] = 0.6 + 0.4 * torch.rand(n, generator=g)
        x[i, 0, L] = 0.0  # the first beat's interval is unknown
        x[i, :n, L + 1] = 1.0
    return x


def _model(temporal: str, pooling: str = "mean"):
    torch.manual_seed(0)
    return build_model(
        "ecg_sl",
        in_channels=K,
        n_samples=L,
        heads=HEADS,
        temporal=temporal,
        segment_pooling=pooling,
    )


@pytest.mark.parametrize("pooling", ["mean", "flatten"])
@pytest.mark.parametrize("temporal", ["gru", "transformer"])
def test_padding_never_changes_a_window_s_output(temporal, pooling):
    model = _model(temporal, pooling).eval()
    x = _beats([3, 6, 1, 0])
    noisy = x.clone()
    noisy[0, 3:, : L + 1] = torch.randn(K - 3, L + 1)  # garbage where row 0 is padded
    noisy[2, 1:, : L + 1] = torch.randn(K - 1, L + 1)
    with torch.no_grad():
        a, b = model(x), model(noisy)
    for head in HEADS:
        assert torch.isfinite(a[head]).all()  # a window without beats too
        torch.testing.assert_close(a[head][[0, 2]], b[head][[0, 2]])


@pytest.mark.parametrize("temporal", ["gru", "transformer"])
def test_padding_stays_out_of_batch_norm_while_training(temporal):
    model = _model(temporal).train()
    x = _beats([2, 5])
    model(x)
    stats = model.backbone.encoder.stem[1].running_mean.clone()
    model2 = _model(temporal).train()
    model2(_beats([2, 5]))  # the same real beats: the same statistics, whatever K pads
    torch.testing.assert_close(stats, model2.backbone.encoder.stem[1].running_mean)


def test_beat_weights_cover_real_beats_only():
    model = _model("gru").eval()
    with torch.no_grad():
        w = model.beat_weights(_beats([3, 6, 1]))
    assert w.shape == (3, K)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(3))
    assert (w[0, 3:] == 0).all() and w[2, 0] == 1


@pytest.mark.parametrize("temporal", ["gru", "transformer"])
def test_export_with_a_dynamic_batch_matches(temporal):
    wrapped = TupleOutput(_model(temporal)).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(wrapped, (_beats([3, 6]),), dynamic_shapes=({0: batch},))
    x = _beats([1, 2, 6, 4, 5], seed=3)
    with torch.no_grad():
        for a, b in zip(program.module()(x), wrapped(x), strict=True):
            torch.testing.assert_close(a, b)


def test_a_window_input_is_refused_with_the_expected_shape():
    with pytest.raises(ValueError, match=rf"expected beat input \(B, K, {L + 2}\)"):
        _model("gru")(torch.rand(2, 1, 300))


def test_masked_beats_hides_real_beats_and_leaves_context():
    model = _model("gru")
    objective = MaskedBeats(model.backbone, mask_fraction=0.5)
    real = _beats([1, 2, 6, 0])[..., -1] > 0.5
    for seed in range(20):
        hide = objective._hide(real, torch.Generator().manual_seed(seed))
        assert not (hide & ~real).any()  # only real beats are hidden
        assert hide[1].sum() == 1 and hide[2].sum() >= 1  # at least one where there is context
        n_real = real.sum(1)
        assert ((hide.sum(1) < n_real) | (n_real == 0)).all()  # never every beat
        assert not hide[0].any()  # one beat has no context to infer it from
    loss, _ = objective.batch(model.backbone, _beats([3, 6, 5]), None, torch.Generator())
    loss.sum().backward()
    assert model.backbone.mask_token.grad is not None and model.backbone.mask_token.grad.any()


def test_contrastive_views_keep_beats_at_the_front():
    model = _model("gru")
    objective = Contrastive(model.backbone, beat_dropout=0.5)
    x = _beats([3, 6, 1])
    for seed in range(10):
        view = objective.view(x, torch.Generator().manual_seed(seed))
        real = view[..., -1] > 0.5
        assert real.any(dim=1).all()  # never every beat dropped
        # Right padding: no real beat after a padded one, and padding is all zeros.
        assert (real.int().diff(dim=1) <= 0).all()
        assert not view[~real].any()
    loss, _ = objective.batch(model.backbone, x, None, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss).all()


# Pre-training and fine-tuning on a small ingested demo store --------------------------------


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    from ecg_pipeline import ingest_folder
    from ecg_pipeline.cohort.demo import write_demo_cohort

    root = tmp_path_factory.mktemp("ecgsl")
    write_demo_cohort(root / "inbox", n_subjects=3, duration_s=24.0)
    config = StudyConfig().with_overrides(
        {
            "discovery.settle_s": 0.0,
            "store.root": root / "store",
            "model.name": "ecg_sl",
            "model.d_model": 16,
            "model.channels": [8, 8, 16],
            "training.epochs": 2,
            "training.out_dir": root / "runs",
            "pretrain.epochs": 2,
            "pretrain.out_dir": root / "pretrained",
        }
    )
    report = ingest_folder(root / "inbox", config)
    assert report.count("written") == 9
    return root, config


@pytest.mark.parametrize("objective", ["masked_beats", "contrastive"])
def test_pretraining_never_reads_the_test_side_by_default(demo_store, objective):
    from ecg_pipeline.training.data import load_window_data
    from ecg_pipeline.training.pretrain import pretrain_run
    from ecg_pipeline.training.run import configured_splits, train_and_evaluate

    _, config = demo_store
    config = config.with_overrides({"pretrain.objective": objective})
    result = pretrain_run(config)
    store_data = load_window_data(
        __import__("ecg_pipeline").open_store(config), ("identity",), "window"
    )
    for split in configured_splits(store_data.meta, config.training):
        spec = json.loads((result.out_dir / split.name / "encoder.json").read_text())
        seen = {(r, i) for r, idx in spec["windows_seen"].items() for i in idx}
        test = store_data.meta.iloc[split.test]
        test_keys = set(zip(test["recording_id"], test["window_index"], strict=True))
        assert test_keys and not (seen & test_keys), "a test window reached pre-training"
        assert spec["objective"] == objective and spec["sees_test"] is False
    state = torch.load(result.out_dir / "time_block" / "encoder.pt", weights_only=True)
    assert "fuse.weight" in state
    # Fine-tuning names the encoder it starts from, and starts from its weights.
    run = train_and_evaluate(config.with_overrides({"model.pretrained": str(result.out_dir)}))
    (fold,) = run.folds
    assert fold.pretrained["objective"] == objective and fold.pretrained["sees_test"] is False
    assert run.fold_dir(fold.name).joinpath("model.pt").is_file()


def test_resume_retrains_a_seed_whose_encoder_was_pretrained_again(demo_store, tmp_path):
    """Pre-training is not bit-reproducible on every CPU: a seed is reused only with the same
    encoder weights, not merely the same encoder folder."""
    from ecg_pipeline.training.experiment import run_seeds
    from ecg_pipeline.training.pretrain import pretrain_run

    _, config = demo_store
    config = config.with_overrides({"pretrain.objective": "contrastive"})
    result = pretrain_run(config, run_name="resumable")
    tuned = config.with_overrides({"model.pretrained": str(result.out_dir)})
    runs, _ = run_seeds(tuned, [0], name="from-encoder", out_dir=tmp_path)
    assert len(runs[0][1].folds[0].pretrained["weights_sha256"]) == 16
    told = []
    run_seeds(
        tuned,
        [0],
        name="from-encoder",
        out_dir=tmp_path,
        resume=True,
        on_reuse=lambda seed, why: told.append(why),
    )
    assert told[-1].startswith("reused")
    state_file = result.out_dir / "time_block" / "encoder.pt"
    state = torch.load(state_file, weights_only=True)
    torch.save({k: v + 1e-3 if v.is_floating_point() else v for k, v in state.items()}, state_file)
    run_seeds(
        tuned,
        [0],
        name="from-encoder",
        out_dir=tmp_path,
        resume=True,
        on_reuse=lambda seed, why: told.append(why),
    )
    assert "other weights" in told[-1]


def test_a_stopped_pretraining_resumes_to_the_same_encoder(demo_store, tmp_path):
    """Pre-training saves its state every epoch too; resumed, it ends with the encoder an
    uninterrupted pre-training gives (same weights, same curve)."""
    from ecg_pipeline.training.pretrain import pretrain_run

    class Stop(Exception):
        pass

    def stop_after_first(fold, row):
        if row["epoch"] == 1:
            raise Stop

    _, config = demo_store
    config = config.with_overrides({"pretrain.objective": "contrastive", "pretrain.epochs": 3})
    whole = pretrain_run(config, out_dir=tmp_path, run_name="whole")
    with pytest.raises(Stop):
        pretrain_run(config, out_dir=tmp_path, run_name="stopped", on_epoch=stop_after_first)
    assert (tmp_path / "stopped" / "time_block" / "resume.pt").is_file()
    resumed = pretrain_run(config, out_dir=tmp_path, run_name="stopped", resume=True)
    assert resumed.encoders["time_block"]["history"] == whole.encoders["time_block"]["history"]
    a = torch.load(tmp_path / "whole" / "time_block" / "encoder.pt", weights_only=True)
    b = torch.load(tmp_path / "stopped" / "time_block" / "encoder.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "stopped" / "time_block" / "resume.pt").exists()
    # Finished encoders are kept by a resumed run, not trained again.
    weights = tmp_path / "stopped" / "time_block" / "encoder.pt"
    stamp = weights.stat().st_mtime_ns
    again = pretrain_run(config, out_dir=tmp_path, run_name="stopped", resume=True)
    assert weights.stat().st_mtime_ns == stamp
    assert again.encoders["time_block"]["history"] == whole.encoders["time_block"]["history"]


def test_a_transductive_encoder_is_marked_and_a_leaky_one_refused(demo_store):
    from ecg_pipeline.training.pretrain import EncoderMismatchError, pretrain_run
    from ecg_pipeline.training.run import train_and_evaluate

    _, config = demo_store
    transductive = config.with_overrides(
        {"pretrain.transductive": True, "pretrain.objective": "contrastive"}
    )
    result = pretrain_run(transductive, run_name="transductive")
    assert list(result.encoders) == ["all"] and result.encoders["all"]["sees_test"]
    run = train_and_evaluate(config.with_overrides({"model.pretrained": str(result.out_dir)}))
    assert run.folds[0].pretrained["sees_test"] is True
    # The same encoder with its mark removed is refused: it read this fold's test windows.
    spec_file = result.out_dir / "all" / "encoder.json"
    spec = json.loads(spec_file.read_text())
    spec["transductive"] = False
    spec_file.write_text(json.dumps(spec))
    with pytest.raises(EncoderMismatchError, match="read fold 'time_block'.s test windows"):
        train_and_evaluate(config.with_overrides({"model.pretrained": str(result.out_dir)}))


def test_an_encoder_with_other_segment_settings_is_refused_naming_them(demo_store):
    from ecg_pipeline.training.pretrain import EncoderMismatchError, pretrain_run
    from ecg_pipeline.training.run import train_and_evaluate

    _, config = demo_store
    result = pretrain_run(config, run_name="for-mismatch")
    spec_file = result.out_dir / "time_block" / "encoder.json"
    spec = json.loads(spec_file.read_text())
    spec["beats"]["segment_fs_hz"] = 500.0
    spec_file.write_text(json.dumps(spec))
    with pytest.raises(EncoderMismatchError, match=r"ingest.beats.segment_fs_hz: encoder 500.0"):
        train_and_evaluate(config.with_overrides({"model.pretrained": str(result.out_dir)}))
    with pytest.raises(FileNotFoundError, match="no pre-trained encoder for fold"):
        train_and_evaluate(config.with_overrides({"model.pretrained": str(result.out_dir / "x")}))


def test_pretraining_an_empty_store_says_so(tmp_path):
    from ecg_pipeline.training.pretrain import PretrainError, pretrain_run

    config = StudyConfig().with_overrides({"store.root": tmp_path, "model.name": "ecg_sl"})
    with pytest.raises(PretrainError, match="no windows stored for dataset 'demo'"):
        pretrain_run(config)


def test_ecg_sl_training_reads_the_same_windows_as_dt4ecg(demo_store):
    from ecg_pipeline.training.data import load_window_data

    _, config = demo_store
    store = __import__("ecg_pipeline").open_store(config)
    windows = load_window_data(store, ("identity", "activity"), "window")
    samples = config.ingest.beats.segment_samples  # 70 at the default 100 Hz
    beats = load_window_data(store, ("identity", "activity"), "window", beats=(10, samples))
    assert windows.x.shape[1:] == (1, 300) and beats.x.shape[1:] == (10, samples + 2)
    assert windows.meta[["recording_id", "window_index"]].equals(
        beats.meta[["recording_id", "window_index"]]
    )
    assert all(np.array_equal(windows.labels[t], beats.labels[t]) for t in windows.labels)


def test_the_pretrain_command_exits_non_zero_on_an_empty_store(tmp_path, capsys):
    from ecg_pipeline.cli import main

    assert main(["pretrain", "--data", str(tmp_path), "--epochs", "1"]) == 2
    assert "no windows stored for dataset 'demo'" in capsys.readouterr().err


def test_window_split_rows_pretrain_once_per_seed_and_each_seed_finds_its_own(
    demo_store, tmp_path, capsys
):
    """The window split draws its test windows by seed: one encoder for every seed would have
    read other seeds' test windows (refused), so `pretrain --seeds` writes NAME/seed<k> and
    fine-tuning seed k starts from seed<k>'s encoder."""
    from ecg_pipeline.cli import main
    from ecg_pipeline.training.pretrain import EncoderMismatchError, encoder_folder
    from ecg_pipeline.training.run import train_and_evaluate

    _, config = demo_store
    window = config.with_overrides({"training.split": "window"})
    args = ["pretrain", "--data", str(config.store.root), "--out", str(tmp_path)]
    args += ["--set", "model.d_model=16", "--set", "model.channels=[8, 8, 16]"]
    args += ["--set", "training.split=window", "--epochs", "1", "--no-progress"]
    assert main([*args, "--name", "per-seed", "--seeds", "0", "1"]) == 0
    assert f"--set model.pretrained={tmp_path / 'per-seed'}" in capsys.readouterr().out
    root = tmp_path / "per-seed"
    assert encoder_folder(root, "window", 0).parent == root / "seed0"
    assert encoder_folder(root, "window", 1).parent == root / "seed1"
    with pytest.raises(FileNotFoundError, match="of seed 2"):
        encoder_folder(root, "window", 2)
    for seed in (0, 1):
        run = train_and_evaluate(
            window.with_overrides({"training.seed": seed, "model.pretrained": str(root)})
        )
        assert run.folds[0].pretrained["folder"] == str(root / f"seed{seed}" / "window")
        assert run.folds[0].pretrained["sees_test"] is False
    # One pre-training used for another seed is refused: it read that seed's test windows.
    with pytest.raises(EncoderMismatchError, match="read fold 'window'.s test windows"):
        train_and_evaluate(
            window.with_overrides({"training.seed": 1, "model.pretrained": str(root / "seed0")})
        )
    assert main([*args, "--seed", "0", "--seeds", "1"]) == 2
    # A folder mixing per-seed encoders with encoders of no seed is ambiguous: refused.
    import shutil

    shutil.copytree(root / "seed0" / "window", root / "window")
    with pytest.raises(FileNotFoundError, match="both per-seed encoders"):
        encoder_folder(root, "window", 0)
    assert encoder_folder(root, "window") == root / "window"  # no seed asked: the plain layout
