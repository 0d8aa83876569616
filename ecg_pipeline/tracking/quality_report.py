"""The batch's signal-quality report: one self-contained HTML page beside the store.

Built from the store alone: each recording's quality account is in its Parquet footer (see
:mod:`ecg_pipeline.ingest.quality`), and only the samples of each recording's worst and best
window are read back. The overview is a matplotlib PNG embedded as base64 and each
recording's strip an inline SVG, so the page opens anywhere, offline, and travels as one MLflow
artifact. It lives in ``tracking/`` because it draws with matplotlib (the layer rules keep
matplotlib out of ``ingest/``, and ``tracking/`` may not import ``ingest/``: it reads the
footers itself); ``ecg-pipeline ingest`` and the flow call it after the batch.
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from ecg_pipeline.io.atomic import atomic_write_text
from ecg_pipeline.io.store import QUALITY_KEY, WindowStore

REPORT_NAME = "_quality_report.html"
# Columns of the short table printed at the end of `ecg-pipeline ingest`.
SHORT_COLUMNS = [
    "subject",
    "condition",
    "score",
    "heart_rate_bpm",
    "kept",
    "good",
    "flat_s",
    "railed_s",
    "clipped_s",
]
_SPAN_COLOURS = {"flat": "#999999", "railed": "#d62728", "clipped": "#ff7f0e"}


def quality_table(catalog_rows: list[dict]) -> pd.DataFrame:
    """One row per stored recording: its quality account's headline figures.

    Parameters
    ----------
    catalog_rows : list of dict
        :meth:`ecg_pipeline.io.store.WindowStore.catalog_rows` (footers, no samples read).

    Returns
    -------
    pandas.DataFrame
        recording_id, subject, condition, session, score, averageQRS, heart_rate_bpm,
        heart_rate_plausible, kept (windows kept / total), good_windows, flat_s, railed_s,
        clipped_s, below_min_recording_score; recordings stored before quality was measured
        have NaN figures.
    """
    rows = []
    for row in catalog_rows:
        acc = row.get(QUALITY_KEY) or {}
        spans = acc.get("spans_s", {})
        rows.append(
            {
                "recording_id": row.get("recording_id"),
                "subject": row.get("subject"),
                "condition": row.get("condition"),
                "session": row.get("session"),
                "score": acc.get("score", np.nan),
                "averageQRS": acc.get("averageQRS", np.nan),
                "heart_rate_bpm": acc.get("heart_rate_bpm", np.nan),
                "heart_rate_plausible": acc.get("heart_rate_plausible"),
                "windows_kept": acc.get("windows_kept", row.get("n_windows")),
                "windows_total": acc.get("windows_total", np.nan),
                "good_windows": acc.get("good_windows", np.nan),
                # Accounts written before scoring was sampled scored every window kept.
                "scored_windows": acc.get("scored_windows", acc.get("windows_kept", np.nan)),
                **{
                    f"{kind}_s": round(sum(b - a for a, b in spans.get(kind, [])), 1)
                    for kind in ("flat", "railed", "clipped")
                },
                "below_min_recording_score": acc.get("below_min_recording_score"),
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(["subject", "condition", "recording_id"], ignore_index=True)
    return table


def short_table(table: pd.DataFrame) -> pd.DataFrame:
    """The report's per-recording table, cut to what a terminal shows."""
    if table.empty:
        return table
    out = table.copy()
    out["kept"] = [
        f"{k}/{t:.0f}" if pd.notna(t) else f"{k}/?"
        for k, t in zip(out["windows_kept"], out["windows_total"], strict=True)
    ]
    out["good"] = [
        f"{g:.0f}/{n:.0f}" if pd.notna(g) and pd.notna(n) else "?"
        for g, n in zip(out["good_windows"], out["scored_windows"], strict=True)
    ]
    return out[[c for c in SHORT_COLUMNS if c in out]]


def render_short_table(table: pd.DataFrame, max_rows: int = 15) -> str:
    """Text of :func:`short_table` for a terminal, poorest recordings first."""
    if table.empty:
        return "signal quality: no recording stored"
    ordered = table.sort_values("score", na_position="first", ignore_index=True)
    short = short_table(ordered)
    text = short.head(max_rows).to_string(index=False, float_format=lambda v: f"{v:.2f}")
    more = len(short) - max_rows
    return "signal quality (poorest first)\n" + text + (f"\n... {more} more" if more > 0 else "")


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _new_figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig


def _polyline(x: np.ndarray, y: np.ndarray, box: tuple, limits: tuple, colour: str, dash="") -> str:
    """One SVG polyline of (x, y) scaled into ``box`` (left, top, width, height); NaN breaks it."""
    left, top, width, height = box
    (x0, x1), (y0, y1) = limits
    sx = width / (x1 - x0) if x1 > x0 else 0.0
    sy = height / (y1 - y0) if y1 > y0 else 0.0
    out, run = [], []
    for a, b in zip(x, y, strict=True):
        if not np.isfinite(b):
            out.append(run)
            run = []
            continue
        run.append(f"{left + (a - x0) * sx:.1f},{top + height - (b - y0) * sy:.1f}")
    out.append(run)
    style = f" stroke-dasharray='{dash}'" if dash else ""
    return "".join(
        f"<polyline fill='none' stroke='{colour}' stroke-width='1'{style} points='{' '.join(r)}'/>"
        for r in out
        if len(r) > 1
    )


def recording_strip(
    account: dict, worst: np.ndarray | None, best: np.ndarray | None, fs_hz: float
) -> str:
    """Quality over time (both NeuroKit2 indices, bad spans shaded, the good-window threshold
    dashed) and the worst and best stored windows of one recording, as one inline SVG.

    SVG rather than a matplotlib PNG per recording: the page stays self-contained and scales,
    and drawing 45 recordings takes milliseconds instead of seconds (bench/quality_report.py).
    """
    w = account.get("windows", {})
    start = np.asarray(w.get("start_s", []), dtype=float)
    end_s = float(start.max()) + 3.0 if len(start) else 1.0
    for spans in account.get("spans_s", {}).values():
        end_s = max([end_s, *(b for _, b in spans)])
    box = (30, 8, 420, 70)
    parts = [
        "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='100' "
        "style='font:10px sans-serif'>",
        f"<rect x='{box[0]}' y='{box[1]}' width='{box[2]}' height='{box[3]}' fill='none' "
        "stroke='#ccc'/>",
    ]
    for kind, colour in _SPAN_COLOURS.items():
        for a, b in account.get("spans_s", {}).get(kind, []):
            x = box[0] + a / end_s * box[2]
            parts.append(
                f"<rect x='{x:.1f}' y='{box[1]}' width='{max((b - a) / end_s * box[2], 1):.1f}' "
                f"height='{box[3]}' fill='{colour}' opacity='0.35'><title>{kind} "
                f"{a:g}-{b:g} s</title></rect>"
            )
    limits = ((0.0, end_s), (0.0, 1.0))
    threshold = account.get("min_window_score", 0.6)
    parts.append(
        _polyline(np.array([0.0, end_s]), np.array([threshold] * 2), box, limits, "#000", "3,3")
    )
    for name, colour, dash in (("templatematch", "#1f77b4", ""), ("averageQRS", "#9467bd", "2,2")):
        values = np.array([np.nan if v is None else v for v in w.get(name, [])], dtype=float)
        if len(values):
            parts.append(_polyline(start, values, box, limits, colour, dash))
    parts.append(
        f"<text x='{box[0]}' y='{box[1] + box[3] + 12}'>0 s</text>"
        f"<text x='{box[0] + box[2]}' y='{box[1] + box[3] + 12}' text-anchor='end'>"
        f"{end_s:.0f} s</text><text x='2' y='{box[1] + 8}'>1</text>"
        f"<text x='2' y='{box[1] + box[3]}'>0</text>"
        f"<text x='{box[0] + 60}' y='{box[1] + box[3] + 12}'>templatematch (blue), "
        "averageQRS (purple, dotted)</text>"
    )
    for k, (title, x, colour) in enumerate(
        (("worst window", worst, "#d62728"), ("best window", best, "#2ca02c"))
    ):
        panel = (480 + k * 240, 8, 220, 70)
        parts.append(
            f"<rect x='{panel[0]}' y='{panel[1]}' width='{panel[2]}' height='{panel[3]}' "
            f"fill='none' stroke='#ccc'/><text x='{panel[0]}' y='{panel[1] + panel[3] + 12}'>"
            f"{title}</text>"
        )
        if x is not None and len(x) > 1:
            t = np.arange(len(x)) / fs_hz
            lo, hi = float(np.min(x)), float(np.max(x))
            parts.append(_polyline(t, x, panel, ((0.0, t[-1]), (lo, hi)), colour))
    parts.append("</svg>")
    return "".join(parts)


def _extreme_windows(store: WindowStore, rows: list[dict]) -> dict[str, tuple]:
    """Each recording's worst and best stored window (by templatematch), read in one pass."""
    wanted: dict[str, tuple[int, int]] = {}
    for row in rows:
        w = (row.get(QUALITY_KEY) or {}).get("windows", {})
        scores = np.array([np.nan if v is None else v for v in w.get("templatematch", [])])
        if not len(scores) or not np.isfinite(scores).any():
            continue
        index = w["index"]
        wanted[row["recording_id"]] = (
            index[int(np.nanargmin(scores))],
            index[int(np.nanargmax(scores))],
        )
    if not wanted:
        return {}
    indices = sorted({i for pair in wanted.values() for i in pair})
    table = store.read_table(
        columns=["recording_id", "window_index", "samples", "fs_hz"],
        filter=pc.field("window_index").isin(indices),
    )
    rid = table.column("recording_id").to_numpy(zero_copy_only=False)
    idx = table.column("window_index").to_numpy()
    fs = table.column("fs_hz").to_numpy()
    samples = table.column("samples").combine_chunks()
    width = samples.type.list_size
    x = samples.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    where = {(r, int(i)): k for k, (r, i) in enumerate(zip(rid, idx, strict=True))}
    out = {}
    for recording, (lo, hi) in wanted.items():
        a, b = where.get((recording, lo)), where.get((recording, hi))
        out[recording] = (
            None if a is None else x[a],
            None if b is None else x[b],
            float(fs[a if a is not None else b]) if (a is not None or b is not None) else 100.0,
        )
    return out


def _overview_figure(table: pd.DataFrame):
    fig = _new_figure(11.0, 2.2)
    ax = fig.add_axes((0.06, 0.3, 0.92, 0.6))
    ordered = table.sort_values("score", na_position="first", ignore_index=True)
    ax.bar(np.arange(len(ordered)), ordered["score"].fillna(0.0), color="C0")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score", fontsize=7)
    ax.set_xticks(np.arange(len(ordered)))
    ax.set_xticklabels(
        [f"{s}/{c}" for s, c in zip(ordered["subject"], ordered["condition"], strict=True)],
        rotation=90,
        fontsize=5,
    )
    ax.tick_params(axis="y", labelsize=6)
    ax.set_title("recording score (median NeuroKit2 templatematch), poorest first", fontsize=8)
    return fig


def write_quality_report(store: WindowStore, path: str | Path | None = None) -> Path:
    """Write the store's signal-quality report, atomically, and return its path.

    Parameters
    ----------
    store : WindowStore
        The dataset's store (the report covers every recording stored, as the catalog does).
    path : path-like, optional
        Where to write; ``_quality_report.html`` in the store's dataset folder by default.

    Returns
    -------
    Path
        The page: open it in any browser (it needs no network and no other file).
    """
    started = time.perf_counter()
    target = Path(path) if path is not None else store.path / REPORT_NAME
    rows = sorted(
        store.catalog_rows(), key=lambda r: (r["subject"], r["condition"], r["recording_id"])
    )
    table = quality_table(rows)
    extremes = _extreme_windows(store, rows) if rows else {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Signal quality: {html.escape(store.dataset)}</title>",
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "img{max-width:100%}h3{margin:0.8em 0 0.1em 0;font-size:14px}</style></head><body>",
        f"<h1>Signal quality: {html.escape(store.dataset)}</h1>",
        f"<p>{len(rows)} recording(s) stored. Score: the median over a recording's windows of "
        "NeuroKit2's <code>templatematch</code> index (each beat's correlation with the "
        "recording's average beat; 1 = every beat alike); <code>averageQRS</code> ranks the "
        "windows within one recording. Both score up to <code>[ingest.quality] "
        "neurokit_max_windows</code> windows spread over each recording (NeuroKit2 costs about "
        "3.5 ms per beat). A window is <em>good</em> when its templatematch "
        "reaches <code>[ingest.quality] min_window_score</code> and its beats are not flagged. "
        "Shaded: flat (grey), railed (red) and clipped (orange) spans of the raw signal; flat "
        "and railed windows are dropped, clipped ones kept.</p>",
    ]
    if not table.empty:
        parts.append(f"<img src='data:image/png;base64,{_png(_overview_figure(table))}'>")
        shown = table.drop(columns=["recording_id"]).round(2).astype(object)
        shown = shown.where(shown.notna(), "-")
        parts.append(shown.to_html(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-"))
    for row in rows:
        account = row.get(QUALITY_KEY)
        label = html.escape(
            f"{row['subject']} / {row['condition']}"
            + (f" / session {row['session']}" if row.get("session") else "")
            + f" ({row['recording_id']}, {Path(str(row.get('source_path', ''))).name})"
        )
        parts.append(f"<h3>{label}</h3>")
        if not account:
            parts.append("<p>stored before signal quality was measured: ingest it again</p>")
            continue
        worst, best, fs_hz = extremes.get(row["recording_id"], (None, None, 100.0))
        hr = account.get("heart_rate_bpm")
        parts.append(
            "<p>"
            + html.escape(
                f"score {_fmt(account.get('score'))}, heart rate {_fmt(hr, 0)} bpm"
                f"{'' if account.get('heart_rate_plausible') else ' (implausible)'}, "
                f"{account['windows_kept']} of {account['windows_total']} windows kept "
                f"(dropped: {account['dropped_why']['flat']} flat, "
                f"{account['dropped_why']['railed']} railed), {account['good_windows']} of "
                f"{account.get('scored_windows', account['windows_kept'])} scored windows good"
                + (f", flagged: {account['flagged']}" if account.get("flagged") else "")
                + (
                    f"; BELOW min_recording_score {account['min_recording_score']:g}"
                    if account.get("below_min_recording_score")
                    else ""
                )
            )
            + "</p>"
        )
        parts.append(recording_strip(account, worst, best, fs_hz))
    parts.append(
        f"<p><small>written in {time.perf_counter() - started:.1f} s at "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}</small></p></body></html>"
    )
    atomic_write_text(target, "\n".join(parts))
    return target


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
