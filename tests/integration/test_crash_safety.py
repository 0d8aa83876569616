"""An ingest killed with SIGKILL at any moment leaves a store that reads, and a re-run ends it.

Each trial starts an ingest in a child process, kills it at a random moment of its run (the
moments spread uniformly over an uninterrupted run's duration, measured first), then checks
that every Parquet and CSV file a reader can see parses, re-runs the ingest to the end and
compares the store with an uninterrupted run's: the same windows, row for row, no recording
twice, no temporary file left. Half the trials start from a store that holds older versions of
two of the recordings, so that kills also land between writing a replacement and removing what
it replaces. Real bioread, real store, no mocks.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ecg_pipeline.cohort.demo import write_demo_recording
from ecg_pipeline.config import StudyConfig
from ecg_pipeline.ingest import ingest_folder, open_store
from ecg_pipeline.io.atomic import TEMP_MARKER

pytestmark = pytest.mark.integration

KILLS = 50
SUBJECTS = (1, 2, 3, 4, 5, 6)


def _config(store_root: Path) -> StudyConfig:
    # NeuroKit2's quality scores off: they would stretch the reading part of the run, and this
    # test is about where kills land among the writes.
    return StudyConfig().with_overrides(
        {
            "store.root": store_root,
            "discovery.settle_s": 0.0,
            "ingest.quality.neurokit_methods": [],
        }
    )


def _store_contents(config: StudyConfig) -> tuple[np.ndarray, pd.DataFrame]:
    x, meta = open_store(config).read_windows(normalisation="none")
    order = np.lexsort((meta["window_index"].to_numpy(), meta["recording_id"].to_numpy()))
    meta = meta.iloc[order].reset_index(drop=True)
    # Each trial ingests its own copy of the inbox: compare file names, not folders.
    meta["source_path"] = meta["source_path"].map(lambda p: Path(p).name)
    return x[order], meta


def _visible_files_parse(store_path: Path) -> int:
    """Every file a reader can see reads; returns how many Parquet files there were."""
    n = 0
    for f in store_path.rglob("*"):
        if not f.is_file() or f.name.startswith("."):
            continue  # temp files and locks are dot-files, invisible to the store's readers
        if f.suffix == ".parquet":
            pq.read_table(f)
            n += 1
        elif f.suffix == ".csv":
            pd.read_csv(f)
    return n


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("crash")
    inbox, older = root / "inbox", root / "older"
    for s in SUBJECTS:
        write_demo_recording(inbox, s, "rest", duration_s=30.0)
    # Older versions of two recordings (other bytes, same names): the ingest of `inbox`
    # replaces them.
    for s in (1, 2):
        write_demo_recording(older, s, "rest", duration_s=30.0, seed=1)
    return {"root": root, "inbox": inbox, "older": older}


def _trial_inbox(folders: dict[str, Path], trial: int, replacing: bool) -> tuple[Path, Path]:
    """A copy of the inbox and a store for one trial; when ``replacing``, the store already
    holds older versions of two of the inbox's recordings, ingested from the same paths."""
    inbox = folders["root"] / f"inbox{trial}"
    store_root = folders["root"] / f"store{trial}"
    shutil.copytree(folders["inbox"], inbox)
    if replacing:
        for s in (1, 2):
            name = f"S{s:02d}_rest.acq"
            shutil.copy2(folders["older"] / name, inbox / name)
        ingest_folder(inbox, _config(store_root))
        for s in (1, 2):
            name = f"S{s:02d}_rest.acq"
            shutil.copy2(folders["inbox"] / name, inbox / name)
    return inbox, store_root


def _ingest_in_child(inbox: Path, store_root: Path) -> multiprocessing.Process:
    context = multiprocessing.get_context("fork")
    child = context.Process(target=ingest_folder, args=(inbox, _config(store_root)))
    child.start()
    return child


def test_sigkill_at_any_moment_leaves_a_readable_store_that_a_rerun_completes(folders):
    reference_root = folders["root"] / "reference"
    report = ingest_folder(folders["inbox"], _config(reference_root))
    assert [r.status for r in report.results] == ["written"] * len(SUBJECTS)
    x_ref, meta_ref = _store_contents(_config(reference_root))

    # How long an uninterrupted ingest takes, from a fresh store and from the older one.
    durations = {}
    for replacing in (False, True):
        inbox, store_root = _trial_inbox(folders, 1000 + replacing, replacing)
        started = time.monotonic()
        child = _ingest_in_child(inbox, store_root)
        child.join(120)
        durations[replacing] = time.monotonic() - started
        assert child.exitcode == 0

    rng = random.Random(0)
    kills, trial = 0, 0
    states: set[int] = set()  # recordings visible when a fresh ingest was killed
    while kills < KILLS:
        trial += 1
        assert trial < 3 * KILLS, "too few trials were killed before they finished"
        replacing = trial % 2 == 0
        inbox, store_root = _trial_inbox(folders, trial, replacing)
        child = _ingest_in_child(inbox, store_root)
        time.sleep(rng.uniform(0, durations[replacing]))
        killed = child.is_alive()
        if killed:
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        child.join(60)
        store_path = store_root / "demo"

        stored = _visible_files_parse(store_path)  # whatever the moment, what is visible reads
        if not replacing and killed:
            states.add(stored)

        config = _config(store_root)
        rerun = ingest_folder(inbox, config)
        assert {r.status for r in rerun.results} <= {"written", "replaced", "unchanged"}, [
            (r.path, r.status, r.error) for r in rerun.results
        ]
        x, meta = _store_contents(config)
        catalog = open_store(config).catalog()
        assert catalog[["subject", "condition"]].duplicated().sum() == 0, catalog
        assert not meta[["recording_id", "window_index"]].duplicated().any()
        pd.testing.assert_frame_equal(meta, meta_ref)
        np.testing.assert_array_equal(x, x_ref)
        assert not [f for f in store_path.rglob("*") if TEMP_MARKER in f.name]
        shutil.rmtree(store_root)
        shutil.rmtree(inbox)
    # The kills landed all over the run: before the first write, between writes, near the end.
    assert 0 in states and len(states) >= 3, states
