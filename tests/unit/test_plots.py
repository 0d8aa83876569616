"""The run's figures: right panels and lines, and they render to PNG headless."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ecg_pipeline.tracking import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(n_epochs=4, tasks=("identity", "activity")):
    rows = []
    for e in range(n_epochs):
        row = {"epoch": e, "lr": 1e-3}
        for i, t in enumerate(tasks):
            row |= {
                f"{t}_train_loss": 2.0 / (e + 1),
                f"{t}_train_acc": 0.2 * e,
                f"{t}_val_loss": 2.2 / (e + 1),
                f"{t}_val_acc": 0.15 * e,
                f"{t}_weight": 1.0 + (0.1 * e if i == 0 else -0.1 * e),
            }
        row["val_score"] = 0.15 * e
        rows.append(row)
    return rows


def _saves_png(fig, path):
    fig.savefig(path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 1000


def test_training_curves_has_loss_and_accuracy_per_task(tmp_path):
    fig = plots.training_curves(_history())
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4  # (loss, accuracy) x (identity, activity)
    titles = sorted(ax.get_title() for ax in fig.axes)
    expected = [f"{t}: {m}" for t in ("identity", "activity") for m in ("loss", "accuracy")]
    assert titles == sorted(expected)
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()] == ["train", "val"]
        assert all(len(line.get_xdata()) == 4 for line in ax.get_lines())
    _saves_png(fig, tmp_path / "curves.png")


def test_training_curves_marks_the_kept_epoch_and_handles_one_task(tmp_path):
    fig = plots.training_curves(_history(tasks=("identity",)), best_epoch=2)
    assert len(fig.axes) == 2
    assert all(len(ax.get_lines()) == 3 for ax in fig.axes)  # train, val, kept epoch
    _saves_png(fig, tmp_path / "one.png")


def test_gradnorm_weights_one_line_per_task(tmp_path):
    fig = plots.gradnorm_weights(_history())
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["identity", "activity"]
    np.testing.assert_allclose(lines[0].get_ydata(), [1.0, 1.1, 1.2, 1.3])
    _saves_png(fig, tmp_path / "weights.png")


def test_empty_or_foreign_history_is_refused():
    with pytest.raises(ValueError, match="empty"):
        plots.training_curves([])
    with pytest.raises(ValueError, match="_weight"):
        plots.gradnorm_weights([{"epoch": 0, "loss": 1.0}])


def test_confusion_matrix_shows_counts_coloured_by_row(tmp_path):
    matrix = [[5, 1, 0], [0, 3, 3], [0, 0, 0]]  # the last class never occurs: no division error
    fig = plots.confusion_matrix_figure(matrix, ["rest", "exercise", "deep_breathing"], "activity")
    (ax,) = fig.axes
    (image,) = ax.get_images()
    np.testing.assert_allclose(image.get_array()[1], [0.0, 0.5, 0.5])
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(v) for row in matrix for v in row)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["rest", "exercise", "deep_breathing"]
    assert ax.get_title() == "activity"
    _saves_png(fig, tmp_path / "cm.png")


def test_confusion_matrix_must_match_the_class_names():
    with pytest.raises(ValueError, match="3 class names"):
        plots.confusion_matrix_figure(np.eye(2), ["a", "b", "c"])


def test_large_confusion_matrix_leaves_out_the_counts(tmp_path):
    fig = plots.confusion_matrix_figure(np.eye(30, dtype=int), [f"S{i:02d}" for i in range(30)])
    assert len(fig.axes[0].texts) == 0
    _saves_png(fig, tmp_path / "big.png")


def _windows(conditions=("rest", "exercise", "deep_breathing"), subjects=4, per_recording=5):
    rows = [
        {"subject": f"S{s:02d}", "condition": c, "recording_id": f"{s}-{c}", "window_index": w}
        for c in conditions
        for s in range(1, subjects + 1)
        for w in range(per_recording)
    ]
    meta = pd.DataFrame(rows)
    t = np.arange(300) / 100.0
    x = np.stack([np.sin(2 * np.pi * (1 + i % 7) * t) for i in range(len(meta))]).astype(np.float32)
    return x[:, None, :], meta


def test_example_windows_one_row_per_condition_from_different_subjects(tmp_path):
    x, meta = _windows()
    fig = plots.example_windows(x, meta, fs_hz=100.0, per_condition=3)
    assert len(fig.axes) == 9
    for ax in fig.axes:
        (line,) = ax.get_lines()
        assert line.get_xdata()[-1] == pytest.approx(2.99)  # seconds, not samples
    rest_titles = [ax.get_title() for ax in fig.axes[:3]]
    assert rest_titles == ["rest · S01", "rest · S02", "rest · S03"]
    _saves_png(fig, tmp_path / "examples.png")


def test_example_windows_takes_2d_input_and_short_conditions(tmp_path):
    x, meta = _windows(conditions=("rest",), subjects=1, per_recording=2)
    fig = plots.example_windows(x[:, 0, :], meta, fs_hz=100.0, per_condition=3)
    assert len(fig.axes) == 2  # only two windows exist: the third cell is removed
    _saves_png(fig, tmp_path / "short.png")


def test_example_windows_checks_its_inputs():
    x, meta = _windows()
    with pytest.raises(ValueError, match="rows"):
        plots.example_windows(x[:-1], meta, 100.0)
    with pytest.raises(ValueError, match="shape"):
        plots.example_windows(x[:, :, :, None], meta, 100.0)
    with pytest.raises(ValueError, match="condition"):
        plots.example_windows(x, meta.drop(columns="condition"), 100.0)
