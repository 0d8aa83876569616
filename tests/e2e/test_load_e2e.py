"""Load: 100 recordings, good and bad mixed, dropped into the watched folder at once.

Every good file's windows are stored exactly once, every bad file is in the rejections history,
no file is missed. ``bench/load.py`` does the same with 500 files and prints the runs started
and the time to the last one's end. Real servers, the served deployment and the watcher.
Runs after ``test_flow_e2e.py`` (by name): it adds recordings that module's counts must not see.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from e2e_support import RUN_TIMEOUT_S, TERMINAL, flow_runs, wait_for

from ecg_pipeline.config import load_config
from ecg_pipeline.io.store import WindowStore
from ecg_pipeline.stack.processes import alive
from ecg_pipeline.stack.servers import start_watcher

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from load import check_outcome, drop, runs_settled, write_mixed_batch  # noqa: E402

pytestmark = pytest.mark.e2e

N_FILES = 100


def test_a_hundred_mixed_files_at_once_are_each_stored_once_or_refused(stack, trained_run):
    api, dep = stack["api"], stack["deployment_id"]
    watcher = start_watcher(stack["config"], stack["settings"])
    before = {r["id"] for r in flow_runs(api, dep)}
    kinds = write_mixed_batch(stack["root"] / "staging-load", N_FILES, first_subject=101)
    drop(stack["root"] / "staging-load", (stack["root"] / "inbox").resolve())

    runs = wait_for(
        lambda: runs_settled(flow_runs(api, dep), before, TERMINAL),
        3 * RUN_TIMEOUT_S,
        "the burst's runs",
        2.0,
    )
    assert all(r["state_type"] == "COMPLETED" for r in runs), stack["serve_log"].read_text()[-4000:]
    assert 1 <= len(runs) <= 3  # one burst: one run, or a few if the copy outlasts a debounce
    config = load_config(stack["config"])
    store = WindowStore(config.store.root, config.dataset.name)
    outcome = check_outcome(kinds, store.path, store.catalog())
    assert outcome["good"] == 70 and outcome["bad"] == 30
    assert outcome["good_stored_once"] == 70, outcome
    assert outcome["stored_twice"] == [] and outcome["good_missing"] == []
    assert outcome["bad_in_history"] == 30 and outcome["bad_missing"] == [], outcome
    assert outcome["bad_stored"] == []
    assert alive(watcher.pid)
