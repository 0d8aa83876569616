"""Training speed and memory of DT4ECG and ECG-SL: full step against a bare loop, GradNorm,
inference, pre-training.

Measured in one run, in one process, on a synthetic demo cohort ingested once into a fresh store
in a temp folder, for each model family in turn on the same store: DT4ECG reads (B, 1, T) windows,
ECG-SL (B, K, L + 2) beat sequences (``load_window_data(..., beats=(K, L))``):

(1) full    ``load_window_data(store)`` + ``split_windows`` + ``fit(...)`` for E epochs with the
            paper's settings (Adam 1e-3, batch 16, GradNorm alpha 2): data loading from the Parquet
            store, forward, GradNorm, backward, optimiser, plus fit's own bookkeeping, its
            per-epoch validation pass and its copy of the best weights;
(2) bare    the same model (same seed), the same GradNorm weighting and the same batch order
            (``_batches`` with the same seeded generator), on in-memory tensors of the training
            set's shape made directly on the device: no store, no bookkeeping, no validation.
            For ECG-SL the random segments keep the real windows' RR and beat-mask columns (a
            training step encodes only the real beats, so its cost depends on how many there are).

Reported per model, side by side: training windows per second of each, the ratio full/bare per
epoch (target <= 1.15), GradNorm's cost per step against equal weights, a breakdown of what fit
adds to a bare step, inference windows per second at batch 1 and 256, the parameter count, peak
memory (tracemalloc and the Arrow pool for the store load; CUDA max_memory_allocated on a GPU,
else the process's maxrss) and 50 epochs on the demo cohort extrapolated from (1) (DT4ECG's paper
schedule, ECG-SL's fine-tuning; target < 4 min each).

(7) pre-training: ECG-SL's backbone (``ECGSLBackbone``, ``labels={}``) through ``fit(...,
objective=build_objective(name, backbone))`` for each objective (``masked_beats``,
``contrastive``) with ``[pretrain]``'s batch size and learning rate and equal weighting, on the
windows ``pretrain_run`` reads for the first fold (its test side left out, held-out recordings for
validation): training windows per second (fit, validation included) and ``[pretrain]`` epochs on
the demo cohort extrapolated (no target).

Run: ``.venv/bin/python bench/train.py [--quick] [--json PATH]`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from machine import cpu_busy, write_figures  # bench/machine.py: the script's folder is on sys.path
from torch import nn

from ecg_pipeline.config import DemoSettings, StudyConfig, load_config
from ecg_pipeline.io.store import WindowStore, caching
from ecg_pipeline.models import build_model
from ecg_pipeline.models.ecg_sl import ECGSLBackbone
from ecg_pipeline.training.data import load_window_data
from ecg_pipeline.training.loop import _batches, fit, predict_logits, seed_everything
from ecg_pipeline.training.objectives import OBJECTIVES, build_objective
from ecg_pipeline.training.pretrain import _recording_split, backbone_options
from ecg_pipeline.training.run import configured_splits
from ecg_pipeline.training.spec import input_shape, model_spec
from ecg_pipeline.training.weighting import build_weighting, shared_grad_norms

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "demo.toml"
TARGET_FULL_VS_BARE = 1.15
TARGET_50_EPOCHS_S = 240.0
PAPER_EPOCHS = 50
# The model families measured side by side (ecg_pipeline.models registry names).
MODELS = ("dt4ecg", "ecg_sl")
# The demo cohort the 4-minute target is about ([demo] in the configuration).
DEMO_SUBJECTS, DEMO_DURATION_S = DemoSettings().n_subjects, DemoSettings().duration_s


# --- the store ----------------------------------------------------------------------------------
def _config(path: Path | None) -> StudyConfig:
    config = load_config(path) if path is not None and path.exists() else StudyConfig()
    # The files were just written: do not defer them as "still being copied".
    return config.with_overrides({"discovery.settle_s": 0.0})


def build_store(root: Path, config_path: Path | None, n_subjects: int, duration_s: float) -> dict:
    """Write the demo cohort and ingest it into ``root/windows`` (run in a child process)."""
    from ecg_pipeline.cohort.demo import write_demo_cohort
    from ecg_pipeline.ingest import ingest_folder

    config = _config(config_path)
    t0 = time.perf_counter()
    files = write_demo_cohort(
        root / "inbox",
        n_subjects=n_subjects,
        conditions=config.dataset.conditions,
        duration_s=duration_s,
        fs_hz=config.demo.fs_hz,
        seed=config.demo.seed,
    )
    t1 = time.perf_counter()
    summary = ingest_folder(root / "inbox", config, store_root=root / "windows")
    t2 = time.perf_counter()
    return {
        "files": len(files),
        "written": summary.count("written"),
        "rejected": summary.count("rejected"),
        "windows": int(summary.catalog["n_windows"].sum()),
        "write_s": t1 - t0,
        "ingest_s": t2 - t1,
    }


def build_store_in_child(
    root: Path, config_path: Path | None, n_subjects: int, duration_s: float
) -> dict:
    """A child process keeps ingest's allocations out of this process's peak-memory figures."""
    cmd = [
        sys.executable,
        __file__,
        "--_build-store",
        str(root),
        "--subjects",
        str(n_subjects),
        "--duration-s",
        str(duration_s),
    ]
    if config_path is not None:
        cmd += ["--config", str(config_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"building the demo store failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- helpers ------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    sync(device)
    return time.perf_counter()


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def build(spec: dict) -> nn.Module:
    return build_model(
        spec["name"],
        in_channels=spec["in_channels"],
        n_samples=spec["n_samples"],
        heads=spec["heads"],
        attention=spec["attention"],
        **spec["options"],
    )


def new_model(spec: dict, seed: int, device: torch.device) -> nn.Module:
    torch.manual_seed(seed)
    return build(spec).to(device)


def synthetic_data(
    like: np.ndarray, n: int, heads: dict[str, int], device: torch.device, seed: int
):
    """In-memory training tensors of the real training set's shape, made directly on the device.

    ``like`` holds real input rows: for beat input (N, K, L + 2) their RR and mask columns are
    kept (cycled to ``n`` rows) and the segments of padded beats zeroed, so a step encodes as
    many real beats as on the real data; window input is random throughout.
    """
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, *like.shape[1:], generator=g)
    if like.shape[1] > 1:  # beat sequences
        extra = torch.as_tensor(like[np.arange(n) % len(like)][..., -2:])
        x[..., -2:] = extra
        x[..., :-2] *= extra[..., -1:]
    x = x.to(device)
    ys = {t: torch.randint(0, k, (n,), generator=g).to(device) for t, k in heads.items()}
    return x, ys


class Bare:
    """The bare loop: model, weighting and Adam, stepping over seeded permutation batches."""

    def __init__(self, spec, settings, device, weighting: str | None = None):
        self.model = new_model(spec, settings.seed, device)
        self.device = device
        self.tasks = list(spec["heads"])
        self.weighting = build_weighting(
            weighting or settings.weighting,
            len(self.tasks),
            alpha=settings.gradnorm_alpha,
            lr=settings.gradnorm_lr,
        )
        self.opt = torch.optim.Adam(self.model.parameters(), lr=settings.learning_rate)
        self.batch_size = settings.batch_size
        self.generator = torch.Generator().manual_seed(settings.seed)

    def step(self, x: torch.Tensor, ys: dict[str, torch.Tensor]) -> None:
        out = self.model(x)
        losses = torch.stack([nn.functional.cross_entropy(out[t], ys[t]) for t in self.tasks])
        total = self.weighting.step(losses, self.model.shared_layer())
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()

    def epoch(self, x: torch.Tensor, ys: dict[str, torch.Tensor]) -> int:
        self.model.train()
        steps = 0
        for batch in _batches(len(x), self.batch_size, self.generator):
            if len(batch) < 2:
                continue  # as fit does
            idx = batch.to(self.device)
            self.step(x[idx], {t: y[idx] for t, y in ys.items()})
            steps += 1
        return steps

    def timed_steps(self, x, ys, n_steps: int, warmup: int = 3) -> float:
        """Mean ms per step over ``n_steps`` after ``warmup`` steps."""
        self.model.train()
        batches = [b.to(self.device) for b in _batches(len(x), self.batch_size, self.generator)]
        batches = [b for b in batches if len(b) >= 2]
        for i in range(warmup):
            b = batches[i % len(batches)]
            self.step(x[b], {t: y[b] for t, y in ys.items()})
        t0 = now(self.device)
        for i in range(n_steps):
            b = batches[i % len(batches)]
            self.step(x[b], {t: y[b] for t, y in ys.items()})
        return (now(self.device) - t0) / n_steps * 1e3


def fit_like_steps(bare: Bare, x, ys, train: torch.Tensor, n_steps: int) -> float:
    """ms per step of fit's inner loop as written (index gather, bookkeeping); no validation."""
    model, device, tasks = bare.model, bare.device, bare.tasks
    model.train()
    sums = {t: [0.0, 0, 0] for t in tasks}
    batches = [b for b in _batches(len(train), bare.batch_size, bare.generator) if len(b) >= 2]
    t0 = None
    for i in range(n_steps + 3):
        if i == 3:
            t0 = now(device)
        batch = batches[i % len(batches)]
        idx = train[batch.to(device)]
        out = model(x[idx])
        losses = torch.stack([nn.functional.cross_entropy(out[t], ys[t][idx]) for t in tasks])
        total = bare.weighting.step(losses, model.shared_layer())
        bare.opt.zero_grad(set_to_none=True)
        total.backward()
        bare.opt.step()
        with torch.no_grad():
            for j, t in enumerate(tasks):
                sums[t][0] += float(losses[j]) * len(idx)
                sums[t][1] += int((out[t].argmax(1) == ys[t][idx]).sum())
                sums[t][2] += len(idx)
    return (now(device) - t0) / n_steps * 1e3


def interleaved(variants: dict, reps: int) -> dict[str, float]:
    """Median of each variant's figure over ``reps`` rounds, the order rotating every round."""
    names, out = list(variants), {name: [] for name in variants}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            out[name].append(variants[name]())
    return {name: median(values) for name, values in out.items()}


def grad_norms_ms(bare: Bare, x, ys, n_steps: int) -> float:
    """ms per call of ``shared_grad_norms`` alone (GradNorm's per-task partial backwards)."""
    model, tasks, total = bare.model, bare.tasks, 0.0
    model.train()
    bs = bare.batch_size
    for i in range(n_steps + 2):
        lo = (i * bs) % max(len(x) - bs, 1)
        out = model(x[lo : lo + bs])
        losses = torch.stack(
            [nn.functional.cross_entropy(out[t], ys[t][lo : lo + bs]) for t in tasks]
        )
        t0 = now(bare.device)
        shared_grad_norms(losses, model.shared_layer())
        if i >= 2:
            total += now(bare.device) - t0
        del out, losses
    return total / n_steps * 1e3


def inference_rate(
    model: nn.Module, rows: torch.Tensor, batch: int, device: torch.device, min_s: float
) -> float:
    """Windows per second of ``model`` in eval mode on ``batch`` of ``rows`` (cycled)."""
    model.eval()
    x = rows[torch.arange(batch, device=rows.device) % len(rows)]
    with torch.no_grad():
        for _ in range(5):
            model(x)
        n, t0 = 0, now(device)
        while True:
            model(x)
            n += 1
            if n % 4 == 0 and now(device) - t0 >= min_s:
                break
        elapsed = now(device) - t0
    return n * batch / elapsed


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the benchmark ------------------------------------------------------------------------------
def model_config(config: StudyConfig, name: str) -> StudyConfig:
    """The study configuration with ``[model] name`` set to ``name`` (its other keys kept)."""
    return config if config.model.name == name else config.with_overrides({"model.name": name})


def beats_of(config: StudyConfig) -> tuple[int, int] | None:
    """``load_window_data``'s ``beats`` for the configured model: (K, L), or None for windows."""
    kind, k, n = input_shape(config, config.ingest.windows.window_samples)
    return (k, n) if kind == "beats" else None


def measure_model(config: StudyConfig, settings, store: WindowStore, device, args) -> dict:
    """(0)-(6) for the model ``[model]`` names, on ``store``; the figures as one dict."""
    name = config.model.name
    beats = beats_of(config)

    def load():
        return load_window_data(store, settings.tasks, config.store.normalisation, beats=beats)

    res: dict = {"model": name, "input": "beats" if beats else "windows"}
    gc.collect()
    rss_before = maxrss_mib()

    # Store-load memory, untimed (tracemalloc slows numpy and pandas down).
    with caching(False):
        tracemalloc.start()
        data = load()
        _, tm_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    x_bytes = data.x.nbytes
    del data
    gc.collect()

    # Warm the process (allocator, kernels, thread pool) before anything is timed.
    data = load()
    split = configured_splits(data.meta, settings)[0]
    spec = model_spec(config, data.heads, data.classes, config.ingest.windows.window_samples)
    n_train, n_val = len(split.train), len(split.val)
    like = data.x[np.concatenate([split.train, split.val])]  # real rows: shape, RR, beat mask
    xb, yb = synthetic_data(like[:n_train], n_train, spec["heads"], device, settings.seed)
    # fit turns deterministic algorithms on for the process; the bare loop runs under them too.
    seed_everything(settings.seed)
    Bare(spec, settings, device).timed_steps(xb, yb, 10)

    model = new_model(spec, settings.seed, device)
    res.update(
        n_windows=len(data.x),
        n_train=n_train,
        n_val=n_val,
        n_samples=spec["n_samples"],
        input_shape=list(data.x.shape[1:]),
        heads=spec["heads"],
        parameters=sum(p.numel() for p in model.parameters()),
    )
    if beats:
        real = data.x[split.train][..., -1] > 0.5
        res["beats_per_window"] = float(real.sum(axis=1).mean())
    del data, model
    shape = " x ".join(str(v) for v in res["input_shape"])
    print(
        f"[{name}] {res['n_windows']} windows ({shape}): {n_train} train, {n_val} validation; "
        f"{res['parameters']:,} parameters",
        flush=True,
    )

    # (1) full and (2) bare, interleaved, each rep with a fresh model.
    full_load, full_fit, full_epochs, bare_total = [], [], [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for rep in range(args.reps):
        for which in ("full", "bare") if rep % 2 == 0 else ("bare", "full"):
            gc.collect()
            if which == "full":
                t0 = now(device)
                # A real run's first load: the library's in-process caches would make every
                # rep after the first free (io.store.caching).
                with caching(False):
                    data = load()
                split = configured_splits(data.meta, settings)[0]
                t1 = now(device)
                torch.manual_seed(settings.seed)
                model = build(spec)
                marks = [now(device)]
                fit(
                    model,
                    data.x,
                    data.labels,
                    split.train,
                    split.val,
                    settings,
                    on_epoch=lambda row, marks=marks: marks.append(now(device)),
                )
                t2 = now(device)
                full_load.append(t1 - t0)
                full_fit.append(t2 - t1)
                full_epochs += list(np.diff(marks))
                trained = model
                del data
            else:
                bare = Bare(spec, settings, device)
                t0 = now(device)
                for _ in range(args.epochs):
                    bare.epoch(xb, yb)
                bare_total.append(now(device) - t0)
                del bare
        print(
            f"  rep {rep + 1}/{args.reps}: full {full_load[-1] + full_fit[-1]:.2f} s "
            f"(load {full_load[-1]:.2f} s), bare {bare_total[-1]:.2f} s",
            flush=True,
        )
    peak_train = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    rss_train = maxrss_mib()

    e = args.epochs
    full_s = median([a + b for a, b in zip(full_load, full_fit, strict=True)])
    res["full"] = {
        "seconds": full_s,
        "load_s": median(full_load),
        "fit_s": median(full_fit),
        "epoch_s": full_s / e,
        "fit_epoch_s": median(full_fit) / e,
        "epoch_s_each": [float(v) for v in full_epochs],
        "windows_per_s": n_train * e / full_s,
    }
    bare_s = median(bare_total)
    res["bare"] = {
        "seconds": bare_s,
        "epoch_s": bare_s / e,
        "windows_per_s": n_train * e / bare_s,
        "epoch_s_per_2000": bare_s / e / n_train * 2000,
    }
    res["ratio_full_vs_bare"] = res["full"]["epoch_s"] / res["bare"]["epoch_s"]
    res["ratio_fit_vs_bare"] = res["full"]["fit_epoch_s"] / res["bare"]["epoch_s"]

    # (3) GradNorm against equal weights, and what fit adds to a bare step, all per step and
    # interleaved (each variant a fresh model, the order rotating every rep) so drift cancels.
    xs_all, ys_all = synthetic_data(like, len(like), spec["heads"], device, settings.seed + 7)
    train_idx = torch.arange(n_train, device=device)
    default_threads = torch.get_num_threads()

    def with_state(fn, deterministic=True, threads=None):
        def run_variant():
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
            torch.set_num_threads(threads or default_threads)
            try:
                return fn()
            finally:
                torch.use_deterministic_algorithms(True, warn_only=True)
                torch.set_num_threads(default_threads)

        return run_variant

    steps = args.steps
    variants = {
        "gradnorm": with_state(lambda: Bare(spec, settings, device).timed_steps(xb, yb, steps)),
        "equal": with_state(
            lambda: Bare(spec, settings, device, "equal").timed_steps(xb, yb, steps)
        ),
        "fit_step": with_state(
            lambda: fit_like_steps(Bare(spec, settings, device), xs_all, ys_all, train_idx, steps)
        ),
        "nondeterministic": with_state(
            lambda: Bare(spec, settings, device).timed_steps(xb, yb, steps), deterministic=False
        ),
    }
    if device.type == "cpu" and not args.no_thread_sweep:
        for n in sorted({1, default_threads, os.cpu_count() or 1} - {default_threads}):
            variants[f"threads_{n}"] = with_state(
                lambda: Bare(spec, settings, device).timed_steps(xb, yb, steps), threads=n
            )
    ms = interleaved(variants, args.reps + 1)
    res["gradnorm_ms"], res["equal_ms"] = ms["gradnorm"], ms["equal"]
    res["gradnorm_overhead_ms"] = res["gradnorm_ms"] - res["equal_ms"]
    res["gradnorm_overhead"] = res["gradnorm_ms"] / res["equal_ms"] - 1

    bd: dict = {
        "bare_step_ms": ms["gradnorm"],
        "fit_step_ms": ms["fit_step"],
        "bare_step_nondeterministic_ms": ms["nondeterministic"],
    }
    bd["shared_grad_norms_ms"] = grad_norms_ms(Bare(spec, settings, device), xb, yb, steps)
    x_val = xs_all[n_train:]
    # fit validates through predict_logits at its default batch (256).
    for key, bs in (("val_pass_ms", 256), ("val_pass_ms_batch128", 128)):
        predict_logits(trained, x_val, batch_size=bs)
        t0 = now(device)
        for _ in range(3):
            predict_logits(trained, x_val, batch_size=bs)
        bd[key] = (now(device) - t0) / 3 * 1e3
    t0 = now(device)
    for _ in range(3):
        copy.deepcopy({k: v.detach().cpu() for k, v in trained.state_dict().items()})
    bd["best_copy_ms"] = (now(device) - t0) / 3 * 1e3
    steps_per_epoch = sum(1 for b in _batches(n_train, settings.batch_size, None) if len(b) >= 2)
    bd["steps_per_epoch"] = steps_per_epoch
    bd["modelled_fit_epoch_s"] = (
        steps_per_epoch * bd["fit_step_ms"] + bd["val_pass_ms"] + bd["best_copy_ms"]
    ) / 1e3
    if any(k.startswith("threads_") for k in ms):
        sweep = {default_threads: ms["gradnorm"]}
        sweep.update({int(k.split("_")[1]): v for k, v in ms.items() if k.startswith("threads_")})
        bd["bare_step_ms_by_threads"] = dict(sorted(sweep.items()))
    res["breakdown"] = bd

    # (4) inference.
    res["inference"] = {
        str(b): inference_rate(trained, xs_all, b, device, args.min_infer_s) for b in (1, 256)
    }

    # (5) memory. maxrss and the Arrow pool's peak are the process's so far (the models run in
    # turn), the load's tracemalloc peak and the CUDA peak this model's own.
    res["memory"] = {
        "x_mib": x_bytes / 2**20,
        "load_tracemalloc_peak_mib": tm_peak / 2**20,
        "arrow_pool_peak_mib": pa.default_memory_pool().max_memory() / 2**20,
        "maxrss_before_load_mib": rss_before,
        "maxrss_after_train_mib": rss_train,
        "maxrss_mib": maxrss_mib(),
        "cuda_peak_train_mib": peak_train,
    }

    # (6) 50 epochs on the demo cohort, from the full path's per-epoch time.
    scale = demo_scale(args)
    res["fifty_epochs_s"] = (
        res["full"]["load_s"] + PAPER_EPOCHS * res["full"]["fit_epoch_s"]
    ) * scale
    res["fifty_epochs_scaled"] = scale != 1.0
    res["pass_ratio"] = res["ratio_full_vs_bare"] <= TARGET_FULL_VS_BARE
    res["pass_fifty"] = res["fifty_epochs_s"] < TARGET_50_EPOCHS_S
    return res


def measure_pretrain(config: StudyConfig, settings, store: WindowStore, device, args) -> dict:
    """(7) ECG-SL pre-training through fit, each objective in turn (interleaved reps)."""
    config = model_config(config, "ecg_sl")
    p = config.pretrain
    k, n = beats_of(config)
    data = load_window_data(store, (), config.store.normalisation, None, (k, n))
    # pretrain_run's pool for the first fold: its test side left out, recordings held out.
    test_side = np.zeros(len(data.x), dtype=bool)
    test_side[configured_splits(data.meta, settings)[0].test] = True
    x = data.x[~test_side]
    recordings = data.meta["recording_id"].to_numpy()[~test_side].astype(str)
    held = _recording_split(recordings, p.val_fraction, settings.seed)
    train_idx, val_idx = np.flatnonzero(~held), np.flatnonzero(held)
    del data
    pre_settings = settings.model_copy(
        update={"batch_size": p.batch_size, "learning_rate": p.learning_rate, "weighting": "equal"}
    )
    options = backbone_options(config)
    objective_options = {
        "masked_beats": {"mask_fraction": p.mask_fraction},
        "contrastive": {"temperature": p.temperature},
    }
    e = args.epochs
    out: dict = {
        "batch_size": p.batch_size,
        "learning_rate": p.learning_rate,
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "epochs": e,
        "pretrain_epochs": p.epochs,
    }
    print(
        f"[pretrain] {len(x)} windows ({len(train_idx)} train, {len(val_idx)} validation), "
        f"batch {p.batch_size}",
        flush=True,
    )
    fits: dict[str, list[float]] = {name: [] for name in OBJECTIVES}
    epochs: dict[str, list[float]] = {name: [] for name in OBJECTIVES}
    for rep in range(args.reps):
        shift = rep % len(OBJECTIVES)
        for name in OBJECTIVES[shift:] + OBJECTIVES[:shift]:
            gc.collect()
            torch.manual_seed(settings.seed)
            backbone = ECGSLBackbone(n, k, **options)
            objective = build_objective(name, backbone, **objective_options[name])
            marks = [now(device)]
            fit(
                backbone,
                x,
                {},
                train_idx,
                val_idx,
                pre_settings,
                objective=objective,
                on_epoch=lambda row, marks=marks: marks.append(now(device)),
            )
            fits[name].append(now(device) - marks[0])
            epochs[name] += list(np.diff(marks))
        print(
            f"  rep {rep + 1}/{args.reps}: "
            + ", ".join(f"{name} {fits[name][-1]:.2f} s" for name in OBJECTIVES),
            flush=True,
        )
    scale = demo_scale(args)
    for name in OBJECTIVES:
        fit_s = median(fits[name])
        out[name] = {
            "fit_s": fit_s,
            "epoch_s": fit_s / e,
            "epoch_s_each": [float(v) for v in epochs[name]],
            "windows_per_s": len(train_idx) * e / fit_s,
            "pretrain_epochs_s": p.epochs * fit_s / e * scale,
        }
    out["backbone_parameters"] = sum(q.numel() for q in backbone.parameters())
    out["pretrain_epochs_scaled"] = scale != 1.0
    return out


def demo_scale(args) -> float:
    """Demo cohort recording-seconds over this run's: extrapolates an epoch's time."""
    return (DEMO_SUBJECTS * DEMO_DURATION_S) / (args.subjects * args.duration_s)


# Figures of the first model kept at the top level of the results, as before there were two
# (readers of older JSON files find DT4ECG's there).
LEGACY_KEYS = (
    "n_windows",
    "n_train",
    "n_val",
    "n_samples",
    "heads",
    "parameters",
    "full",
    "bare",
    "ratio_full_vs_bare",
    "ratio_fit_vs_bare",
    "gradnorm_ms",
    "equal_ms",
    "gradnorm_overhead_ms",
    "gradnorm_overhead",
    "breakdown",
    "inference",
    "memory",
    "fifty_epochs_s",
    "fifty_epochs_scaled",
    "pass_ratio",
    "pass_fifty",
)


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    config = _config(args.config)
    settings = config.with_overrides(
        {
            "training.epochs": args.epochs,
            "training.device": device.type,
            "training.cpu_threads": args.threads or None,
        }
    ).training
    res: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "epochs": args.epochs,
        "reps": args.reps,
        "batch_size": settings.batch_size,
        "weighting": settings.weighting,
        "subjects": args.subjects,
        "duration_s": args.duration_s,
    }
    res["cpu_busy_before"] = cpu_busy()
    print(
        f"device {res['device_type']} ({res['device']}), torch {res['torch']}, "
        f"{res['threads']} threads (interop {res['interop_threads']}), {res['cpu_count']} CPUs, "
        f"CPUs {res['cpu_busy_before']:.0%} busy before the run"
    )
    if res["cpu_busy_before"] > 0.25:
        print(
            "warning: other processes are using the CPUs; timings (several threads especially) "
            "will be off"
        )

    with tempfile.TemporaryDirectory(prefix="ecg-bench-train-") as tmp:
        root = Path(tmp)
        print(
            f"building the store: {args.subjects} subjects x "
            f"{len(config.dataset.conditions)} conditions "
            f"x {args.duration_s:g} s ...",
            flush=True,
        )
        res["store"] = build_store_in_child(root, args.config, args.subjects, args.duration_s)
        store = WindowStore(root / "windows", config.dataset.name)
        res["models"] = {}
        for name in args.models:
            res["models"][name] = measure_model(
                model_config(config, name), settings, store, device, args
            )
            res[f"cpu_busy_after_{name}"] = cpu_busy(0.5)
        if not args.no_pretrain:
            res["pretrain"] = measure_pretrain(config, settings, store, device, args)
    if "dt4ecg" in res["models"]:
        res.update({k: res["models"]["dt4ecg"][k] for k in LEGACY_KEYS})
    return res


def report(res: dict) -> None:
    ok = {True: "PASS", False: "MISS"}
    models = res["models"]
    names = list(models)

    def line(label: str, unit: str, values) -> str:
        return f"{label:38}{unit:>8}" + "".join(f"{v:>15}" for v in values)

    def each(fmt: str, get) -> list[str]:
        out = []
        for m in (models[n] for n in names):
            try:
                value = get(m)
            except KeyError:
                value = None
            out.append("-" if value is None else format(value, fmt))
        return out

    def verdicts(key: str, passed: str, fmt: str) -> list[str]:
        return [f"{models[n][key]:{fmt}} {ok[models[n][passed]]}" for n in names]

    bd = lambda key: lambda m: m["breakdown"][key]  # noqa: E731
    lines = [
        "",
        (
            f"{res['epochs']} epochs per run, batch {res['batch_size']}, {res['weighting']}; "
            f"median of {res['reps']} interleaved runs; {res['threads']} torch threads"
        ),
        line("", "", names),
        line(
            "input per window", "", [" x ".join(map(str, models[n]["input_shape"])) for n in names]
        ),
        line("parameters", "", each(",", lambda m: m["parameters"])),
        line(
            "training / validation windows",
            "",
            [f"{models[n]['n_train']} / {models[n]['n_val']}" for n in names],
        ),
        line(
            "real beats per training window", "mean", each(".1f", lambda m: m["beats_per_window"])
        ),
        line("(1) full: store load + fit", "s/epoch", each(".2f", lambda m: m["full"]["epoch_s"])),
        line("", "win/s", each(".0f", lambda m: m["full"]["windows_per_s"])),
        line("    store load (once per run)", "s", each(".3f", lambda m: m["full"]["load_s"])),
        line(
            "    fit alone (incl. validation)",
            "s/epoch",
            each(".2f", lambda m: m["full"]["fit_epoch_s"]),
        ),
        line("", "win/s", each(".0f", lambda m: m["n_train"] / m["full"]["fit_epoch_s"])),
        line(
            "(2) bare loop, in-memory tensors",
            "s/epoch",
            each(".2f", lambda m: m["bare"]["epoch_s"]),
        ),
        line("", "win/s", each(".0f", lambda m: m["bare"]["windows_per_s"])),
        line("    per 2,000 windows", "s", each(".2f", lambda m: m["bare"]["epoch_s_per_2000"])),
        line(
            f"ratio full / bare, target <= {TARGET_FULL_VS_BARE}",
            "",
            verdicts("ratio_full_vs_bare", "pass_ratio", ".3f"),
        ),
        line("    fit alone / bare", "", each(".3f", lambda m: m["ratio_fit_vs_bare"])),
        line("(3) step: GradNorm", "ms", each(".2f", lambda m: m["gradnorm_ms"])),
        line("    equal weights", "ms", each(".2f", lambda m: m["equal_ms"])),
        line(
            "    GradNorm overhead",
            "ms",
            [
                f"{models[n]['gradnorm_overhead_ms']:+.2f} ({models[n]['gradnorm_overhead']:+.0%})"
                for n in names
            ],
        ),
        line("    shared_grad_norms alone", "ms", each(".2f", bd("shared_grad_norms_ms"))),
        line("    fit's inner step as written", "ms", each(".2f", bd("fit_step_ms"))),
        line(
            "    bare, no deterministic algorithms",
            "ms",
            each(".2f", bd("bare_step_nondeterministic_ms")),
        ),
    ]
    threads = sorted(
        {t for m in models.values() for t in m["breakdown"].get("bare_step_ms_by_threads", {})}
    )
    for t in threads:
        lines.append(
            line(
                f"    bare at {t} torch thread{'s' if t > 1 else ''}",
                "ms",
                each(".2f", lambda m, t=t: m["breakdown"]["bare_step_ms_by_threads"][t]),
            )
        )
    lines += [
        line("    validation pass (fit's batch 256)", "ms", each(".0f", bd("val_pass_ms"))),
        line("    validation pass at batch 128", "ms", each(".0f", bd("val_pass_ms_batch128"))),
        line("    best-weights copy", "ms", each(".1f", bd("best_copy_ms"))),
        line("    steps per epoch", "", each("d", bd("steps_per_epoch"))),
        line("    modelled fit epoch", "s", each(".2f", bd("modelled_fit_epoch_s"))),
        "    (steps x fit's step + validation pass + copy; compare fit alone in (1))",
        line(
            "(4) inference (eval, no_grad), batch 1",
            "win/s",
            each(".0f", lambda m: m["inference"]["1"]),
        ),
        line("    batch 256", "win/s", each(".0f", lambda m: m["inference"]["256"])),
        line("(5) store load: input array", "MiB", each(".1f", lambda m: m["memory"]["x_mib"])),
        line(
            "    tracemalloc peak",
            "MiB",
            each(".1f", lambda m: m["memory"]["load_tracemalloc_peak_mib"]),
        ),
        line(
            "    Arrow pool peak (process so far)",
            "MiB",
            each(".1f", lambda m: m["memory"]["arrow_pool_peak_mib"]),
        ),
        line(
            "    maxrss before the load",
            "MiB",
            each(".0f", lambda m: m["memory"]["maxrss_before_load_mib"]),
        ),
        line(
            "    maxrss after (1)-(2)",
            "MiB",
            each(".0f", lambda m: m["memory"]["maxrss_after_train_mib"]),
        ),
    ]
    if any(m["memory"]["cuda_peak_train_mib"] for m in models.values()):
        lines.append(
            line(
                "    CUDA max allocated in (1)-(2)",
                "MiB",
                each(".1f", lambda m: m["memory"]["cuda_peak_train_mib"]),
            )
        )
    scaled = any(m["fifty_epochs_scaled"] for m in models.values())
    lines += [
        line(
            f"(6) 50 epochs, demo cohort, < {TARGET_50_EPOCHS_S:.0f} s",
            "s",
            verdicts("fifty_epochs_s", "pass_fifty", ".0f"),
        ),
        (
            "    (store load + 50 x fit epoch"
            + (", scaled to 15 subjects x 180 s" if scaled else "")
            + "; DT4ECG the paper's schedule, ECG-SL fine-tuning with the same settings)"
        ),
    ]
    if min(m["n_train"] for m in models.values()) < 1000:
        lines.append(
            "    (under 1,000 training windows are too few steps for the verdicts to mean much; "
            "run without --quick)"
        )
    busy = [f"{n} {res[f'cpu_busy_after_{n}']:.0%}" for n in names if f"cpu_busy_after_{n}" in res]
    lines.append(
        f"    CPUs busy before the run {res['cpu_busy_before']:.0%}; after " + ", ".join(busy)
    )

    pre = res.get("pretrain")
    if pre:
        objs = [o for o in OBJECTIVES if o in pre]
        lines += [
            "",
            (
                f"(7) ECG-SL pre-training through fit: batch {pre['batch_size']}, Adam "
                f"{pre['learning_rate']:g}, equal weighting; {pre['n_train']} training / "
                f"{pre['n_val']} validation windows; median of {res['reps']} interleaved runs"
            ),
            line("", "", objs),
            line("fit (incl. validation)", "s/epoch", [f"{pre[o]['epoch_s']:.2f}" for o in objs]),
            line("", "win/s", [f"{pre[o]['windows_per_s']:.0f}" for o in objs]),
            line(
                f"{pre['pretrain_epochs']} epochs ([pretrain]), demo cohort",
                "s",
                [f"{pre[o]['pretrain_epochs_s']:.0f}" for o in objs],
            ),
        ]
    st = res["store"]
    lines.append(
        f"\n(store built once, not timed above: {st['files']} files written in "
        f"{st['write_s']:.1f} s, ingested in {st['ingest_s']:.1f} s; {st['windows']} windows)"
    )
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="5 subjects x 60 s, 2 epochs, 1 rep (smoke run, ~2 min on a quiet machine)",
    )
    p.add_argument("--epochs", type=int, help="epochs per timed fit and bare run (default 2)")
    p.add_argument("--reps", type=int, help="interleaved repetitions (default 3; quick 1)")
    p.add_argument("--steps", type=int, help="steps per per-step timing (default 60; quick 25)")
    p.add_argument("--subjects", type=int, help="demo subjects (default 15; quick 5)")
    p.add_argument("--duration-s", type=float, help="demo recording length (default 180; quick 60)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    p.add_argument(
        "--device", choices=("auto", "cpu"), default="auto", help="cuda when available unless cpu"
    )
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="study configuration TOML")
    p.add_argument(
        "--no-thread-sweep", action="store_true", help="skip the bare step at 1..N threads (CPU)"
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=list(MODELS),
        help="model families to measure (default: both)",
    )
    p.add_argument("--no-pretrain", action="store_true", help="skip (7), ECG-SL pre-training")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--_build-store", dest="build_store", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    for name, full, quick in (
        ("epochs", 2, 2),
        ("reps", 3, 1),
        ("steps", 60, 25),
        ("subjects", DEMO_SUBJECTS, 5),
        ("duration_s", DEMO_DURATION_S, 60.0),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)
    args.min_infer_s = 0.5 if q else 1.5
    if args.build_store is not None:
        print(
            json.dumps(build_store(args.build_store, args.config, args.subjects, args.duration_s))
        )
        return 0
    if args.epochs < 1 or args.reps < 1 or args.steps < 1:
        p.error("--epochs, --reps and --steps must be >= 1")
    t0 = time.perf_counter()
    res = run(args)
    report(res)
    res["bench_wall_s"] = time.perf_counter() - t0
    print(f"\nbench wall time {res['bench_wall_s']:.0f} s")
    if args.json:
        write_figures(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
