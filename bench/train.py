"""Training speed and memory: the full training step against a bare loop, GradNorm, inference.

Measured in one run on a synthetic demo cohort ingested into a fresh store in a temp folder:

(1) full    ``load_window_data(store)`` + ``split_windows`` + ``fit(...)`` for E epochs with the
            paper's settings (Adam 1e-3, batch 16, GradNorm alpha 2): data loading from the Parquet
            store, forward, GradNorm, backward, optimiser, plus fit's own bookkeeping, its
            per-epoch validation pass and its copy of the best weights;
(2) bare    the same model (same seed), the same GradNorm weighting and the same batch order
            (``_batches`` with the same seeded generator), on in-memory tensors of the training
            set's shape made directly on the device: no store, no bookkeeping, no validation.

Reported: training windows per second of each, the ratio full/bare per epoch (target <= 1.15),
GradNorm's cost per step against equal weights, a breakdown of what fit adds to a bare step,
inference windows per second at batch 1 and 256, the parameter count, peak memory (tracemalloc
and the Arrow pool for the store load; CUDA max_memory_allocated on a GPU, else the process's
maxrss) and 50 paper epochs on the demo cohort extrapolated from (1) (target < 4 min).

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
from ecg_pipeline.training.data import load_window_data
from ecg_pipeline.training.loop import _batches, fit, predict_logits, seed_everything
from ecg_pipeline.training.run import configured_splits, model_spec
from ecg_pipeline.training.weighting import build_weighting, shared_grad_norms

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "demo.toml"
TARGET_FULL_VS_BARE = 1.15
TARGET_50_EPOCHS_S = 240.0
PAPER_EPOCHS = 50
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


def new_model(spec: dict, seed: int, device: torch.device) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(
        spec["name"],
        in_channels=1,
        n_samples=spec["n_samples"],
        heads=spec["heads"],
        attention=spec["attention"],
        **spec["options"],
    )
    return model.to(device)


def synthetic_data(n: int, n_samples: int, heads: dict[str, int], device: torch.device, seed: int):
    """In-memory training tensors of the real training set's shape, made directly on the device."""
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, 1, n_samples, generator=g).to(device)
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
    model: nn.Module, n_samples: int, batch: int, device: torch.device, min_s: float
) -> float:
    model.eval()
    x = torch.rand(batch, 1, n_samples, device=device)
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
        rss_before = maxrss_mib()

        # Store-load memory, untimed (tracemalloc slows numpy and pandas down).
        tracemalloc.start()
        data = load_window_data(store, settings.tasks, config.store.normalisation)
        _, tm_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        x_bytes = data.x.nbytes
        del data
        gc.collect()

        # Warm the process (allocator, kernels, thread pool) before anything is timed.
        data = load_window_data(store, settings.tasks, config.store.normalisation)
        split = configured_splits(data.meta, settings)[0]
        spec = model_spec(config, data.heads, data.classes, data.x.shape[-1])
        n_train, n_val, n_samples = len(split.train), len(split.val), data.x.shape[-1]
        xb, yb = synthetic_data(n_train, n_samples, spec["heads"], device, settings.seed)
        # fit turns deterministic algorithms on for the process; the bare loop runs under them too.
        seed_everything(settings.seed)
        Bare(spec, settings, device).timed_steps(xb, yb, 10)

        model = new_model(spec, settings.seed, device)
        res.update(
            n_windows=len(data.x),
            n_train=n_train,
            n_val=n_val,
            n_samples=n_samples,
            heads=spec["heads"],
            parameters=sum(p.numel() for p in model.parameters()),
        )
        del data, model
        print(
            f"{res['n_windows']} windows: {n_train} train, {n_val} validation; "
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
                        data = load_window_data(store, settings.tasks, config.store.normalisation)
                    split = configured_splits(data.meta, settings)[0]
                    t1 = now(device)
                    torch.manual_seed(settings.seed)
                    model = build_model(
                        spec["name"],
                        in_channels=1,
                        n_samples=spec["n_samples"],
                        heads=spec["heads"],
                        attention=spec["attention"],
                        **spec["options"],
                    )
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
        peak_train = (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        )
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
        xs_all = torch.rand(n_train + n_val, 1, n_samples, device=device)
        ys_all = {
            t: torch.randint(0, k, (n_train + n_val,), device=device)
            for t, k in spec["heads"].items()
        }
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
                lambda: fit_like_steps(
                    Bare(spec, settings, device), xs_all, ys_all, train_idx, steps
                )
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
        for key, bs in (("val_pass_ms", 512), ("val_pass_ms_batch128", 128)):
            predict_logits(trained, x_val, batch_size=bs)
            t0 = now(device)
            for _ in range(3):
                predict_logits(trained, x_val, batch_size=bs)
            bd[key] = (now(device) - t0) / 3 * 1e3
        t0 = now(device)
        for _ in range(3):
            copy.deepcopy({k: v.detach().cpu() for k, v in trained.state_dict().items()})
        bd["best_copy_ms"] = (now(device) - t0) / 3 * 1e3
        steps_per_epoch = sum(
            1 for b in _batches(n_train, settings.batch_size, None) if len(b) >= 2
        )
        bd["steps_per_epoch"] = steps_per_epoch
        bd["modelled_fit_epoch_s"] = (
            steps_per_epoch * bd["fit_step_ms"] + bd["val_pass_ms"] + bd["best_copy_ms"]
        ) / 1e3
        if any(k.startswith("threads_") for k in ms):
            sweep = {default_threads: ms["gradnorm"]}
            sweep.update(
                {int(k.split("_")[1]): v for k, v in ms.items() if k.startswith("threads_")}
            )
            bd["bare_step_ms_by_threads"] = dict(sorted(sweep.items()))
        res["breakdown"] = bd

        # (4) inference.
        res["inference"] = {
            str(b): inference_rate(trained, n_samples, b, device, args.min_infer_s)
            for b in (1, 256)
        }

        # (5) memory.
        res["memory"] = {
            "x_mib": x_bytes / 2**20,
            "load_tracemalloc_peak_mib": tm_peak / 2**20,
            "arrow_pool_peak_mib": pa.default_memory_pool().max_memory() / 2**20,
            "maxrss_before_load_mib": rss_before,
            "maxrss_after_train_mib": rss_train,
            "maxrss_mib": maxrss_mib(),
            "cuda_peak_train_mib": peak_train,
        }

    # (6) 50 paper epochs on the demo cohort, from the full path's per-epoch time.
    scale = (DEMO_SUBJECTS * DEMO_DURATION_S) / (args.subjects * args.duration_s)
    res["fifty_epochs_s"] = (
        res["full"]["load_s"] + PAPER_EPOCHS * res["full"]["fit_epoch_s"]
    ) * scale
    res["fifty_epochs_scaled"] = scale != 1.0
    res["pass_ratio"] = res["ratio_full_vs_bare"] <= TARGET_FULL_VS_BARE
    res["pass_fifty"] = res["fifty_epochs_s"] < TARGET_50_EPOCHS_S
    return res


def report(res: dict) -> None:
    f, b, bd, m = res["full"], res["bare"], res["breakdown"], res["memory"]
    ok = {True: "PASS", False: "MISS"}
    n_train, n_val = res["n_train"], res["n_val"]
    lines = [
        "",
        (
            f"training set {n_train} windows (validation {n_val}), {res['epochs']} epochs per run, "
            f"batch {res['batch_size']}, {res['weighting']}; "
            f"median of {res['reps']} interleaved runs"
        ),
        f"{'':36}{'s/epoch':>8}{'win/s':>8}",
        f"{'(1) full: store load + fit':36}{f['epoch_s']:8.2f}{f['windows_per_s']:8.0f}",
        f"{'    store load (once per run)':36}{f['load_s']:8.3f}",
        (
            f"{'    fit alone (incl. validation)':36}{f['fit_epoch_s']:8.2f}"
            f"{n_train / f['fit_epoch_s']:8.0f}"
        ),
        (
            f"{'(2) bare loop, in-memory tensors':36}{b['epoch_s']:8.2f}{b['windows_per_s']:8.0f}"
            f"  ({b['epoch_s_per_2000']:.2f} s per 2,000 windows)"
        ),
        (
            f"{'ratio full / bare':36}{res['ratio_full_vs_bare']:8.3f}  target <= "
            f"{TARGET_FULL_VS_BARE}  {ok[res['pass_ratio']]}"
        ),
        (
            f"    fit alone / bare {res['ratio_fit_vs_bare']:.3f}; fit's per-epoch validation pass "
            "counts as part of the full step"
        ),
        "",
        (
            f"(3) ms per step: GradNorm {res['gradnorm_ms']:.2f}, equal {res['equal_ms']:.2f}, "
            f"overhead {res['gradnorm_overhead_ms']:+.2f} ms ({res['gradnorm_overhead']:+.1%}); "
            f"shared_grad_norms alone {bd['shared_grad_norms_ms']:.2f}"
        ),
        (
            f"    fit's inner step as written {bd['fit_step_ms']:.2f} "
            f"vs bare {bd['bare_step_ms']:.2f} "
            f"({bd['fit_step_ms'] / bd['bare_step_ms'] - 1:+.1%}); without deterministic "
            f"algorithms {bd['bare_step_nondeterministic_ms']:.2f}"
        ),
        (
            f"    per epoch: validation pass {bd['val_pass_ms']:.0f} ms "
            f"({n_val} windows, batch 512; "
            f"{bd['val_pass_ms_batch128']:.0f} ms at batch 128), best-weights copy "
            f"{bd['best_copy_ms']:.1f} ms"
        ),
        (
            f"    modelled fit epoch {bd['steps_per_epoch']} x step + validation + copy = "
            f"{bd['modelled_fit_epoch_s']:.2f} s (measured {f['fit_epoch_s']:.2f} s)"
        ),
    ]
    if "bare_step_ms_by_threads" in bd:
        lines.append(
            "    bare step by torch threads: "
            + ", ".join(f"{n}: {v:.2f} ms" for n, v in bd["bare_step_ms_by_threads"].items())
        )
    inf = res["inference"]
    lines.append(
        f"(4) inference windows/s (eval, no_grad): batch 1 {inf['1']:.0f}, "
        f"batch 256 {inf['256']:.0f}"
    )
    lines.append(
        f"(5) {res['parameters']:,} parameters; store load: windows {m['x_mib']:.1f} MiB, "
        f"tracemalloc peak {m['load_tracemalloc_peak_mib']:.1f} MiB, Arrow pool peak "
        f"{m['arrow_pool_peak_mib']:.1f} MiB"
    )
    lines.append(
        f"    maxrss {m['maxrss_before_load_mib']:.0f} MiB before the load, "
        f"{m['maxrss_after_train_mib']:.0f} MiB after (1)-(2), {m['maxrss_mib']:.0f} MiB at the end"
    )
    if m["cuda_peak_train_mib"]:
        lines.append(
            f"    CUDA max_memory_allocated during (1)-(2) {m['cuda_peak_train_mib']:.1f} MiB"
        )
    scaled = " (scaled to 15 subjects x 180 s)" if res["fifty_epochs_scaled"] else ""
    lines.append(
        f"(6) 50 paper epochs on the demo cohort: {res['fifty_epochs_s']:.0f} s{scaled}  "
        f"target < {TARGET_50_EPOCHS_S:.0f} s  {ok[res['pass_fifty']]}"
    )
    if n_train < 1000:
        lines.append(
            f"    ({n_train} training windows are too few steps for the verdicts to mean much; "
            "run without --quick)"
        )
    st = res["store"]
    lines.append(
        f"    (store built once, not timed above: {st['files']} files written in "
        f"{st['write_s']:.1f} s, ingested in {st['ingest_s']:.1f} s)"
    )
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="5 subjects x 60 s, 2 epochs, 1 rep (~20 s)"
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
