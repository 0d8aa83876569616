"""A real training process killed with SIGKILL mid-way resumes with `train --resume RUN_DIR`
and ends exactly where an uninterrupted run of the same seed ends (CPU, one thread)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch  # imported before the training starts: its first import takes seconds

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
EPOCHS = 12


def _train(cfg: Path, out: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ecg_pipeline", "train", "--config", str(cfg), "--seeds", "0",
        "--epochs", str(EPOCHS), "--name", name, "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def test_a_killed_training_resumes_to_the_uninterrupted_result(tmp_path):
    cfg = tmp_path / "small.toml"
    cfg.write_text(
        "[demo]\nn_subjects = 4\nduration_s = 60.0\n"
        f'inbox = "{tmp_path / "inbox"}"\n[store]\nroot = "{tmp_path / "store"}"\n'
        "[discovery]\nsettle_s = 0.0\n[training]\ncpu_threads = 1\n"
    )
    demo = [sys.executable, "-m", "ecg_pipeline", "demo", "--config", str(cfg), "--no-progress"]
    assert subprocess.run(demo, cwd=REPO, capture_output=True, timeout=300).returncode == 0
    out = tmp_path / "results"

    # Killed once its third epoch's state is on disk.
    proc = subprocess.Popen(_train(cfg, out, "killed"), cwd=REPO, stderr=subprocess.PIPE)
    state = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        found = list((out / "killed" / "seed0").glob("*/resume.pt"))
        if found:
            try:
                state = torch.load(found[0], weights_only=True)
            except Exception:  # caught mid-rename on a slow disk: look again
                state = None
            if state is not None and state["epoch"] >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the training ended before it could be killed"
    assert not (out / "killed" / "seed0" / "results.json").exists()
    stopped_at = state["epoch"]
    assert 3 <= stopped_at < EPOCHS

    resumed = subprocess.run(
        _train(cfg, out, "ignored", "--resume", str(out / "killed" / "seed0")),
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "seed 0: training" in resumed.stderr  # no finished result: trained on from its state
    assert not list((out / "killed" / "seed0").glob("*/resume.pt"))  # removed once finished

    whole = subprocess.run(_train(cfg, out, "whole"), cwd=REPO, capture_output=True, timeout=900)
    assert whole.returncode == 0, whole.stderr[-3000:]
    a = json.loads((out / "killed" / "seed0" / "results.json").read_text())
    b = json.loads((out / "whole" / "seed0" / "results.json").read_text())
    for fa, fb in zip(a["folds"], b["folds"], strict=True):
        assert len(fa["history"]) == EPOCHS
        assert fa["history"] == fb["history"]  # every epoch's losses, accuracies and weights
        assert fa["best_epoch"] == fb["best_epoch"] and fa["metrics"] == fb["metrics"]
