"""Figures of a training run: learning curves, GradNorm weights, confusion matrices, examples.

Every function is pure: it takes plain data (a history list, a matrix, arrays) and returns a
:class:`matplotlib.figure.Figure` that the caller saves (``fig.savefig("x.png")``). Figures are
built on a ``FigureCanvasAgg`` directly instead of through ``pyplot``: that renders headless
with the Agg backend without switching the process-wide backend, and the figures are never
registered with pyplot, so nothing has to be closed and repeated calls leak no memory.
matplotlib is imported inside the functions so importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for annotations; the import itself is deferred
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "confusion_matrix_figure",
    "example_windows",
    "gradnorm_weights",
    "training_curves",
    "verification_curves",
]

# Above this many classes per axis the per-cell counts become unreadable: colour only.
_MAX_ANNOTATED_CLASSES = 25


def _new_figure(width_in: float, height_in: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def _tasks(history: Sequence[Mapping], suffix: str) -> list[str]:
    """Task names in first-seen order, from keys like ``identity_train_loss``."""
    if not history:
        raise ValueError("history is empty: no epochs to plot")
    return [k[: -len(suffix)] for k in history[0] if k.endswith(suffix)]


def _epochs(history: Sequence[Mapping]) -> np.ndarray:
    # Histories from training.loop carry "epoch"; fall back to the row position for others.
    return np.array([row.get("epoch", i) for i, row in enumerate(history)])


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.5" ticks


def _column(history: Sequence[Mapping], key: str) -> np.ndarray:
    return np.array([row.get(key, np.nan) for row in history], dtype=float)


def training_curves(history: Sequence[Mapping], *, best_epoch: int | None = None) -> Figure:
    """Loss and accuracy per epoch of every task, training and validation, on one page.

    Parameters
    ----------
    history : sequence of mapping
        One row per epoch as ``training.loop.fit`` writes them: ``epoch`` and, per task,
        ``<task>_train_loss``, ``<task>_train_acc``, ``<task>_val_loss``, ``<task>_val_acc``.
    best_epoch : int, optional
        Marked with a dotted vertical line on every panel (the checkpoint that was kept).

    Returns
    -------
    matplotlib.figure.Figure
        Two rows (loss, accuracy) by one column per task; each panel holds a ``train`` line
        and, where the history has it, a ``val`` line.

    Raises
    ------
    ValueError
        When the history is empty or holds no ``<task>_train_loss`` key.
    """
    tasks = _tasks(history, "_train_loss")
    if not tasks:
        raise ValueError(f"no '<task>_train_loss' key in history rows: {sorted(history[0])}")
    epochs = _epochs(history)
    fig = _new_figure(4.0 * len(tasks), 6.0)
    axes = fig.subplots(2, len(tasks), squeeze=False, sharex=True)
    for col, task in enumerate(tasks):
        for row, (metric, label) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
            ax = axes[row, col]
            for part in ("train", "val"):
                key = f"{task}_{part}_{metric}"
                if key in history[0]:
                    ax.plot(epochs, _column(history, key), marker="o", ms=3, label=part)
            if best_epoch is not None:
                ax.axvline(best_epoch, color="grey", ls=":", lw=1, label="kept")
            ax.set_title(f"{task}: {label}")
            ax.set_ylabel(label)
            _integer_epochs(ax)
            ax.grid(alpha=0.3)
            if metric == "acc":
                ax.set_ylim(-0.02, 1.02)  # accuracies share a scale across tasks and runs
                ax.set_xlabel("epoch")
            ax.legend(fontsize="small")
    return fig


def gradnorm_weights(history: Sequence[Mapping]) -> Figure:
    """Each task's loss weight over the epochs (GradNorm's, or constant ones).

    Parameters
    ----------
    history : sequence of mapping
        Epoch rows with ``<task>_weight`` per task.

    Returns
    -------
    matplotlib.figure.Figure
        One panel, one line per task.

    Raises
    ------
    ValueError
        When the history is empty or has no ``<task>_weight`` key.
    """
    tasks = _tasks(history, "_weight")
    if not tasks:
        raise ValueError(f"no '<task>_weight' key in history rows: {sorted(history[0])}")
    epochs = _epochs(history)
    fig = _new_figure(6.0, 3.5)
    ax = fig.subplots()
    for task in tasks:
        ax.plot(epochs, _column(history, f"{task}_weight"), marker="o", ms=3, label=task)
    ax.set_title("task loss weights")
    _integer_epochs(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("weight")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def confusion_matrix_figure(
    matrix: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str], title: str = ""
) -> Figure:
    """A confusion matrix, rows true class and columns predicted, with counts in the cells.

    Colours show each row's fraction (recall per class), so a small class's errors stand out
    as much as a large one's; the numbers are the raw counts. Counts are left out above
    25 classes, where they would not be legible.

    Parameters
    ----------
    matrix : array-like of int, (n, n)
        Counts; ``matrix[i, j]`` windows of class ``i`` predicted as ``j``.
    class_names : sequence of str
        The ``n`` class names in code order.
    title : str
        The panel's title (task, fold).

    Returns
    -------
    matplotlib.figure.Figure
        One panel holding one image.

    Raises
    ------
    ValueError
        When the matrix is not square or does not match ``class_names``.
    """
    cm = np.asarray(matrix, dtype=float)
    n = len(class_names)
    if cm.shape != (n, n):
        raise ValueError(f"matrix shape {cm.shape} does not match {n} class names")
    totals = cm.sum(axis=1, keepdims=True)
    fractions = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    side = min(3.0 + 0.45 * n, 14.0)
    fig = _new_figure(side + 0.5, side)
    ax = fig.subplots()
    ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=[str(c) for c in class_names], rotation=90 if n > 6 else 0)
    ax.set_yticks(ticks, labels=[str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= _MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}",
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="white" if fractions[i, j] > 0.5 else "black",
                )
    return fig


def _pick_examples(meta: pd.DataFrame, rows: np.ndarray, k: int) -> list[int]:
    """Up to ``k`` of ``rows``: one window per subject (or recording) first, then any others.

    Distinct subjects show the spread between people; the middle window of each recording
    avoids the settling at a recording's start.
    """
    group_col = next((c for c in ("subject", "recording_id") if c in meta.columns), None)
    chosen: list[int] = []
    if group_col is not None:
        groups = meta.iloc[rows].groupby(group_col, sort=True).indices
        for positions in groups.values():
            chosen.append(int(rows[positions[len(positions) // 2]]))
            if len(chosen) == k:
                return chosen
    taken = set(chosen)
    rest = [int(r) for r in rows if int(r) not in taken]
    if rest and len(chosen) < k:
        take = np.linspace(0, len(rest) - 1, num=min(k - len(chosen), len(rest))).round()
        chosen.extend(rest[int(i)] for i in take)
    return chosen


def example_windows(
    x: np.ndarray,
    meta: pd.DataFrame,
    fs_hz: float,
    per_condition: int = 3,
    *,
    condition_column: str = "condition",
) -> Figure:
    """A page of example windows: one row per condition, ``per_condition`` windows in each.

    Parameters
    ----------
    x : np.ndarray
        (N, T) or (N, 1, T) windows, in whatever units they are (normalised or mV).
    meta : pandas.DataFrame
        N rows aligned with ``x``; needs ``condition_column`` and uses ``subject`` (or
        ``recording_id``) to show different people, and ``subject`` in the titles.
    fs_hz : float
        Sampling rate of the windows, for the time axis in seconds.
    per_condition : int
        Windows shown per condition.
    condition_column : str
        The column that names the condition.

    Returns
    -------
    matplotlib.figure.Figure
        One panel (one line) per window shown; a condition with fewer windows than
        ``per_condition`` has fewer panels.

    Raises
    ------
    ValueError
        On mismatched lengths, an unknown shape, a missing column, ``fs_hz <= 0`` or
        ``per_condition < 1``.
    """
    x = np.asarray(x)
    if x.ndim == 3 and x.shape[1] == 1:
        x = x[:, 0, :]
    if x.ndim != 2:
        raise ValueError(f"x must be (N, T) or (N, 1, T), got shape {x.shape}")
    if len(meta) != len(x):
        raise ValueError(f"meta has {len(meta)} rows but x has {len(x)} windows")
    if condition_column not in meta.columns:
        raise ValueError(f"meta lacks column {condition_column!r}; has {list(meta.columns)}")
    if fs_hz <= 0 or per_condition < 1:
        raise ValueError(f"need fs_hz > 0 and per_condition >= 1, got {fs_hz}, {per_condition}")
    conditions = list(dict.fromkeys(meta[condition_column].astype(str)))  # first-seen order
    labels = meta[condition_column].astype(str).to_numpy()
    t = np.arange(x.shape[1]) / fs_hz
    fig = _new_figure(3.2 * per_condition, 2.2 * max(len(conditions), 1))
    axes = fig.subplots(max(len(conditions), 1), per_condition, squeeze=False, sharex=True)
    for r, condition in enumerate(conditions):
        picks = _pick_examples(meta, np.flatnonzero(labels == condition), per_condition)
        for c in range(per_condition):
            ax = axes[r, c]
            if c >= len(picks):
                ax.remove()  # fewer windows than columns: leave the cell empty
                continue
            i = picks[c]
            ax.plot(t, x[i], lw=0.8)
            who = f" · {meta['subject'].iloc[i]}" if "subject" in meta.columns else ""
            ax.set_title(f"{condition}{who}", fontsize="small")
            ax.grid(alpha=0.3)
            if r == len(conditions) - 1:
                ax.set_xlabel("time (s)")
    if not conditions:
        axes[0, 0].set_title("no windows")
    return fig


def beat_segments_figure(
    window: np.ndarray,
    fs_hz: float,
    peak_s: np.ndarray,
    segments: np.ndarray,
    beat_fs_hz: float,
    before_s: float,
    weights: np.ndarray | None = None,
    *,
    title: str = "",
) -> Figure:
    """One window with its detected R peaks, and its beat segments overlaid.

    Parameters
    ----------
    window : np.ndarray
        (T,) the window at ``fs_hz``.
    peak_s : np.ndarray
        (k,) R peaks from the window's start, in seconds.
    segments : np.ndarray
        (k, L) the beat segments at ``beat_fs_hz``, the peak ``before_s`` into each.
    weights : np.ndarray, optional
        (k,) how much the temporal model weighed each beat (its attention pooling); shown as
        the beats' labels and line widths.
    """
    window, peak_s, segments = np.asarray(window), np.asarray(peak_s), np.asarray(segments)
    fig = _new_figure(11, 3.4)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    t = np.arange(len(window)) / fs_hz
    left.plot(t, window, lw=0.8, color="0.3")
    at = np.clip(np.rint(peak_s * fs_hz).astype(int), 0, len(window) - 1)
    left.plot(peak_s, window[at], "v", color="tab:red", label="R peak")
    for i, (p, y) in enumerate(zip(peak_s, window[at], strict=True)):
        label = f"{i + 1}" if weights is None else f"{i + 1}: {weights[i]:.2f}"
        left.annotate(label, (p, y), textcoords="offset points", xytext=(3, 4), fontsize="x-small")
    left.set_xlabel("time (s)")
    left.set_title(
        title or "window, detected R peaks" + (" (beat weights)" if weights is not None else ""),
        fontsize="small",
    )
    left.grid(alpha=0.3)
    ts = np.arange(segments.shape[1]) / beat_fs_hz - before_s if segments.size else np.zeros(0)
    scale = 1.0 if weights is None or not len(weights) else 1 / max(float(np.max(weights)), 1e-9)
    for i, seg in enumerate(segments):
        width = 0.8 if weights is None else 0.5 + 2.5 * float(weights[i]) * scale
        right.plot(ts, seg, lw=width, label=f"beat {i + 1}")
    right.axvline(0, color="tab:red", lw=0.6, ls="--")
    right.set_xlabel("time from R peak (s)")
    right.set_title(f"{len(segments)} beat segments at {beat_fs_hz:g} Hz", fontsize="small")
    right.grid(alpha=0.3)
    return fig


def label_scarcity_curve(points: Sequence[Mapping], *, title: str = "") -> Figure:
    """Accuracy against the share of training recordings with labels, one line per method.

    Parameters
    ----------
    points : sequence of mapping
        ``{"series", "task", "fraction", "mean", "sd"}``: a row of the evaluation table (mean
        and sample sd over seeds x folds) at one label fraction.
    """
    tasks = sorted({p["task"] for p in points})
    fig = _new_figure(5.5 * max(len(tasks), 1), 3.8)
    axes = np.atleast_1d(fig.subplots(1, max(len(tasks), 1)))
    for ax, task in zip(axes, tasks, strict=False):
        for series in sorted({p["series"] for p in points if p["task"] == task}):
            rows = sorted(
                (p for p in points if p["task"] == task and p["series"] == series),
                key=lambda p: p["fraction"],
            )
            x = [100 * p["fraction"] for p in rows]
            ax.errorbar(
                x,
                [100 * p["mean"] for p in rows],
                yerr=[100 * p["sd"] for p in rows],
                marker="o",
                capsize=3,
                label=series,
            )
        ax.set_xscale("log")
        ticks = sorted({round(100 * p["fraction"]) for p in points})
        ax.minorticks_off()  # the log axis's own minor labels (3 x 10^1) would crowd the shares
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.set_xlabel("training recordings with labels (%)")
        ax.set_ylabel(f"{task} window accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(title or "label scarcity", fontsize="small")
    return fig


def verification_curves(curves: Sequence[Mapping], *, title: str = "") -> Figure:
    """ROC and DET curves of verification, one line per (seed, fold), side by side.

    Parameters
    ----------
    curves : sequence of mappings
        Each with ``label``, ``far`` and ``frr`` (equal-length sequences over thresholds, as
        ``ecg_pipeline.training.verification.roc_points`` gives them) and ``at_threshold``,
        the (FAR, FRR) pair at the calibrated threshold, marked on both panels.
    title : str
        Above both panels.

    The ROC panel's FAR axis is logarithmic. The DET panel plots FRR against FAR on normal-deviate axes (a straight line for Gaussian
    scores), the convention of speaker and biometric verification; rates of 0 and 1 are
    clipped to 0.1 % and 99.9 % to stay on the axes.
    """
    from scipy.stats import norm

    if not curves:
        raise ValueError("no curves to plot")
    fig = _new_figure(10, 4.5)
    roc, det = fig.subplots(1, 2)
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99])

    def deviate(p):
        return norm.ppf(np.clip(np.asarray(p, dtype=float), 0.001, 0.999))

    for curve in curves:
        far, frr = np.asarray(curve["far"]), np.asarray(curve["frr"])
        # A log FAR axis: the operating points that matter lie below 1 % (0 shown at 0.1 %).
        (line,) = roc.plot(np.clip(far, 0.001, 1), 1 - frr, lw=1.2, label=curve["label"])
        det.plot(deviate(far), deviate(frr), lw=1.2, color=line.get_color())
        point = curve.get("at_threshold")
        if point is not None:
            roc.plot(max(point[0], 0.001), 1 - point[1], "o", color=line.get_color(), ms=5)
            det.plot(deviate(point[0]), deviate(point[1]), "o", color=line.get_color(), ms=5)
    chance = np.logspace(-3, 0, 50)
    roc.plot(chance, chance, ls=":", color="grey", lw=0.8)
    roc.set_xscale("log")
    roc.set(xlabel="false accept rate (log)", ylabel="genuine accept rate (1 - FRR)", title="ROC")
    roc.legend(fontsize=7, loc="lower right")
    det.plot(deviate([0.001, 0.999]), deviate([0.001, 0.999]), ls=":", color="grey", lw=0.8)
    det.set_xticks(deviate(ticks), [f"{t:g}" for t in ticks], fontsize=7)
    det.set_yticks(deviate(ticks), [f"{t:g}" for t in ticks], fontsize=7)
    det.set(xlabel="false accept rate", ylabel="false reject rate", title="DET (o: threshold)")
    if title:
        fig.suptitle(title)
    return fig
