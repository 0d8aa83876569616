"""Two ingests started at once on one store: never two recordings for one key, never a broken
file, 20 times over. Real processes (forked), real bioread, real Parquet store."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import demo_ecg, write_ecg_file

from ecg_pipeline.config import StudyConfig
from ecg_pipeline.ingest import ingest_folder
from ecg_pipeline.io.store import WindowStore

pytestmark = pytest.mark.integration
TRIALS = 20


def _settle(folder: Path) -> None:
    old = time.time() - 3600
    for f in folder.rglob("*.acq"):
        os.utime(f, (old, old))


def _ingest_at(barrier, folder: str, config: StudyConfig, out) -> None:
    barrier.wait()
    report = ingest_folder(folder, config)
    out.put({Path(r.path).name + "@" + Path(folder).name: r.status for r in report.results})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Folder a and b: different bytes for S01 rest, the same bytes for S02 rest, and each a
    recording of its own."""
    root = tmp_path_factory.mktemp("concurrent")
    same = demo_ecg(duration_s=9.0, subject=2)[0]
    for name, subject_one_seed, own in (("a", 1, 3), ("b", 5, 4)):
        write_ecg_file(
            root / name / "S01_rest.acq", demo_ecg(duration_s=9.0, subject=subject_one_seed)[0]
        )
        write_ecg_file(root / name / "S02_rest.acq", same)
        write_ecg_file(root / name / f"S0{own}_rest.acq", demo_ecg(duration_s=9.0, subject=own)[0])
        _settle(root / name)
    return root


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_ingests_at_once_never_store_a_key_twice(folders, tmp_path):
    ctx = mp.get_context("fork")
    outcomes = []
    for trial in range(TRIALS):
        config = StudyConfig().with_overrides(
            {"store.root": tmp_path / f"store{trial}", "discovery.settle_s": 0.0}
        )
        barrier, out = ctx.Barrier(2), ctx.Queue()
        workers = [
            ctx.Process(target=_ingest_at, args=(barrier, str(folders / n), config, out))
            for n in ("a", "b")
        ]
        for w in workers:
            w.start()
        results = {**out.get(timeout=120), **out.get(timeout=120)}
        for w in workers:
            w.join(timeout=60)
            assert w.exitcode == 0
        store = WindowStore(config.store.root, config.dataset.name)
        catalog = store.catalog()
        keys = list(zip(catalog["subject"], catalog["condition"], strict=True))
        assert sorted(keys) == [("S01", "rest"), ("S02", "rest"), ("S03", "rest"), ("S04", "rest")]
        for f in store.recording_files():
            assert pq.read_table(f).num_rows > 0  # every visible file reads whole
        s01 = sorted(results[f"S01_rest.acq@{n}"] for n in ("a", "b"))
        assert s01 == ["rejected", "written"], results
        s02 = sorted(results[f"S02_rest.acq@{n}"] for n in ("a", "b"))
        assert s02[1] == "written" and s02[0] in ("rejected", "unchanged"), results
        outcomes.append(tuple(s02))
    assert len(outcomes) == TRIALS
