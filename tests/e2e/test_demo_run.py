"""`make run`'s entry (`python -m flows.demo`) on a fresh state: servers, cohort, one run, addresses.

A small cohort and one epoch on free ports; the servers it leaves running are stopped by pid.
"""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ecg_pipeline.stack.servers import free_port

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_demo_run_end_to_end_then_nothing_new(tmp_path):
    mlflow_port = free_port()
    cfg = tmp_path / "demo.toml"
    cfg.write_text(
        f'[demo]\nn_subjects = 3\nduration_s = 20.0\ninbox = "{tmp_path / "inbox"}"\n'
        f'[store]\nroot = "{tmp_path / "store"}"\n[discovery]\nsettle_s = 0.0\n'
        f'[training]\ncpu_threads = 1\nout_dir = "{tmp_path / "runs"}"\n'
        f"[servers]\nprefect_port = {free_port()}\nmlflow_port = {mlflow_port}\n"
        f'state_dir = "{tmp_path / "state"}"\nmlflow_dir = "{tmp_path / "mlflow"}"\n'
        "prefect_toml = false\n"  # the repository's own file is the lab's stack's to write
    )
    demo = [sys.executable, "-m", "flows.demo", "--config", str(cfg), "--epochs", "1"]
    try:
        out = subprocess.run(demo, cwd=REPO, capture_output=True, text=True, timeout=400)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "wrote 9 synthetic .acq recordings" in out.stdout
        assert f"files in {tmp_path / 'inbox'}: 9 written" in out.stdout
        flow_line = [
            x
            for x in out.stdout.splitlines()
            if x.startswith("Prefect flow run: http://127.0.0.1:")
        ]
        run_line = [x for x in out.stdout.splitlines() if x.startswith("MLflow run:")]
        assert flow_line and run_line and "identity  test accuracy" in out.stdout
        run_id = run_line[0].rsplit("/", 1)[1]
        url = f"http://127.0.0.1:{mlflow_port}/api/2.0/mlflow/runs/get?run_id={run_id}"
        run = json.load(urllib.request.urlopen(url, timeout=10))["run"]
        assert run["info"]["status"] == "FINISHED"
        assert any(m["key"] == "heldout_score" for m in run["data"]["metrics"])
        again = subprocess.run(demo, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "already running" in again.stdout and "training skipped" in again.stdout
    finally:
        subprocess.run(
            [sys.executable, "-m", "ecg_pipeline", "servers", "stop", "--config", str(cfg)],
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )
    assert not list((tmp_path / "state").glob("*.pid"))
