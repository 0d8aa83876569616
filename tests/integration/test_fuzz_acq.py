"""Fuzzed recordings: 2,000 mutated copies of the real .acq files never crash, hang or bloat ingest.

Mutants (``bench/acq_mutations.py``, seeded): truncations, header bytes and integers, sample
counts that claim gigabytes, data bytes and compressed streams, marker and journal bytes,
shifted and spliced blocks, zeroed blocks, appended garbage; of the seven real files in
``../shared/acq`` and one synthetic ECG file. ``bench/fuzz_acq.py`` runs the same generator
over 20,000 files. Real bioread, real store; the per-file time limit is the product's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ecg_pipeline.cohort.demo import write_demo_recording
from ecg_pipeline.config import StudyConfig
from ecg_pipeline.errors import IngestError, UnexpectedIngestError
from ecg_pipeline.ingest import ingest_folder, open_store

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from acq_mutations import load_source, mutants  # noqa: E402

pytestmark = pytest.mark.integration

N_MUTANTS = 2000
TIME_LIMIT_S = 10.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, acq_dir) -> list[tuple[str, str, bytes]]:
    work = tmp_path_factory.mktemp("sources")
    demo = write_demo_recording(work, 1, "rest", duration_s=30.0)
    sources = [load_source(p) for p in sorted(acq_dir.glob("*.acq")) + [demo]]
    return list(mutants(sources, N_MUTANTS, seed=0))


@pytest.fixture
def config(tmp_path) -> StudyConfig:
    return StudyConfig().with_overrides(
        {
            "store.root": tmp_path / "store",
            "discovery.settle_s": 0.0,
            "limits.file_time_s": TIME_LIMIT_S,
        }
    )


def test_the_corpus_is_what_it_claims(corpus):
    kinds = {kind for _, kind, _ in corpus}
    assert len(corpus) == N_MUTANTS and len(kinds) == 10
    # Mostly distinct (a header integer can be overwritten with its own value, and the batch
    # then refuses the copy as a duplicate, which is right too).
    assert len({data for _, _, data in corpus}) > 0.9 * N_MUTANTS


def test_a_batch_of_mutants_is_ingested_or_refused_by_name(tmp_path, config, corpus):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i, (_, _, data) in enumerate(corpus):
        (inbox / f"F{i:04d}_rest.acq").write_bytes(data)

    started = time.perf_counter()
    report = ingest_folder(inbox, config)
    elapsed = time.perf_counter() - started

    by_status: dict[str, int] = {}
    for result in report.results:
        by_status[result.status] = by_status.get(result.status, 0) + 1
        if result.status == "rejected":
            assert isinstance(result.error, IngestError)
            assert not isinstance(result.error, UnexpectedIngestError), result.error
            assert result.error.path and result.error.reason
    assert len(report.results) == N_MUTANTS  # every file accounted for, none missed
    assert set(by_status) <= {"written", "rejected"}
    # Plenty of both: the mutants reach the signal path, and the readers do refuse.
    assert by_status["written"] > 0.3 * N_MUTANTS and by_status["rejected"] > 0.2 * N_MUTANTS
    assert elapsed < N_MUTANTS * TIME_LIMIT_S  # trivially; the per-file check is below

    x, meta = open_store(config).read_windows(normalisation="none")
    assert np.isfinite(x).all()
    assert meta["source_path"].nunique() == by_status["written"]


def test_each_mutant_is_bounded_in_time_and_memory(tmp_path):
    # The benchmark's own run, on the first 500 mutants (every mutation of every source file,
    # six times over): each file read in a forked child of a lean process, which measures its
    # time and peak memory; the benchmark calls any crash, unnamed error, non-finite window or
    # file over the time or memory bound a defect.
    out = tmp_path / "fuzz.json"
    command = [
        sys.executable,
        str(REPO / "bench" / "fuzz_acq.py"),
        "--n",
        "500",
        "--seed",
        "0",
        "--time-limit-s",
        str(TIME_LIMIT_S),
        "--json",
        str(out),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    figures = json.loads(out.read_text())
    assert run.returncode == 0 and figures["defects"] == [], run.stdout[-3000:] + run.stderr[-3000:]
    assert sum(figures["counts"].values()) == 500
    assert figures["counts"]["windows"] > 150
    assert figures["max_seconds"] < TIME_LIMIT_S


def test_a_file_over_the_time_limit_is_refused_and_the_batch_goes_on(tmp_path):
    inbox = tmp_path / "inbox"
    long = write_demo_recording(inbox, 1, "rest", duration_s=3600.0)  # about a second's work
    short = write_demo_recording(inbox, 2, "rest", duration_s=9.0)  # a few milliseconds
    config = StudyConfig().with_overrides(
        {
            "store.root": tmp_path / "store",
            "discovery.settle_s": 0.0,
            "limits.file_time_s": 0.25,
        }
    )
    report = ingest_folder(inbox, config)
    results = {Path(r.path).name: r for r in report.results}
    refused = results[long.name]
    assert refused.status == "rejected"
    assert type(refused.error).__name__ == "FileTimeLimitError"
    assert "longer than 0.25 s ([limits] file_time_s)" in refused.error.reason
    assert results[short.name].status == "written"
