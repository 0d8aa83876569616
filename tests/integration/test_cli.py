"""The command line, run as a user runs it (a subprocess of the installed entry point)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import demo_ecg, write_ecg_file

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def run(*args, cwd=REPO, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "ecg_pipeline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_imports_nothing_heavy():
    code = (
        "import sys, time; t = time.perf_counter(); from ecg_pipeline import cli\n"
        "try:\n    cli.main(['ingest', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('numpy', 'scipy', 'pandas', 'pyarrow', 'pandera', 'bioread', "
        "'torch', 'prefect', 'mlflow') if m in sys.modules]\n"
        "print('HEAVY', heavy, time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    line = [x for x in out.stdout.splitlines() if x.startswith("HEAVY")][0]
    assert "HEAVY []" in line, line
    assert "DIR" in out.stdout and "--manifest" in out.stdout and "--out" in out.stdout


def test_ingest_command_prints_the_store_counts_and_rejections(tmp_path):
    inbox = tmp_path / "in"
    write_ecg_file(inbox / "S01_rest.acq", demo_ecg(duration_s=9.0)[0])
    (inbox / "S02_rest.acq").write_bytes(b"not a recording")
    old = time.time() - 60
    for p in inbox.iterdir():
        os.utime(p, (old, old))
    out = run("ingest", str(inbox), "--out", str(tmp_path / "store"), "--no-progress")
    assert out.returncode == 3, out.stderr  # some refused, some stored
    assert f"windows in {tmp_path / 'store' / 'demo'}" in out.stdout
    assert "1 written" in out.stdout and "1 rejected" in out.stdout
    assert "S01" in out.stdout and "total: 3 windows from 1 recordings" in out.stdout
    assert "S02_rest.acq: not an AcqKnowledge file" in out.stdout


def test_ingest_takes_a_recipe_and_overrides_like_train(tmp_path):
    """The 100-Hz ECG-SL rows' store is ingested with the recipe their commands need."""
    from ecg_pipeline.config import load_config

    inbox = tmp_path / "in"
    write_ecg_file(inbox / "S01_rest.acq", demo_ecg(duration_s=9.0)[0])
    os.utime(inbox / "S01_rest.acq", (time.time() - 60,) * 2)
    recipe = REPO / "configs" / "recipes" / "segments-100hz.toml"
    out = run(
        "ingest",
        str(inbox),
        "--recipe",
        str(recipe),
        "--set",
        "ingest.windows.hop_s=1.5",
        "--out",
        str(tmp_path / "store"),
        "--no-progress",
    )
    assert out.returncode == 0, out.stderr
    wanted = load_config(None, recipes=[recipe], overrides=["ingest.windows.hop_s=1.5"])
    assert wanted.ingest.beats.segment_fs_hz == 100.0
    assert f"[ingest] hash {wanted.ingest_hash()}" in out.stdout
    assert "total: 5 windows from 1 recordings" in out.stdout  # 9 s, 3-s windows every 1.5 s


def test_all_refused_exits_1_and_bad_config_exits_2(tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "S01_rest.acq").write_bytes(b"")
    os.utime(inbox / "S01_rest.acq", (time.time() - 60,) * 2)
    assert run("ingest", str(inbox), "--out", str(tmp_path / "s")).returncode == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("[ingest]\nwindowz = 1\n")
    out = run("ingest", str(inbox), "--config", str(bad))
    assert out.returncode == 2 and "bad.toml" in out.stderr and "windowz" in out.stderr
    out = run("ingest", str(tmp_path / "missing"))
    assert out.returncode == 2 and "recordings folder not found" in out.stderr


def test_ingest_waits_for_files_copied_a_moment_ago_and_says_so(tmp_path):
    """An explicit command has no next run to defer to: it waits (bounded), then ingests."""
    inbox = tmp_path / "in"
    write_ecg_file(inbox / "S01_rest.acq", demo_ecg(duration_s=9.0)[0])  # modified just now
    cfg = tmp_path / "study.toml"
    # Settle time well above the command's start-up, even on a loaded machine.
    cfg.write_text("[discovery]\nsettle_s = 8.0\ncommand_wait_s = 30.0\n")
    started = time.monotonic()
    out = run("ingest", str(inbox), "--config", str(cfg), "--out", str(tmp_path / "s"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "waiting for 1 file(s)" in out.stderr and "at most 30 s" in out.stderr
    assert "1 written" in out.stdout and time.monotonic() - started < 30

    # With no wait allowed, the same kind of file is deferred and the exit status says so.
    write_ecg_file(inbox / "S02_rest.acq", demo_ecg(duration_s=9.0)[0])
    cfg.write_text("[discovery]\nsettle_s = 60.0\ncommand_wait_s = 0\n")
    out = run("ingest", str(inbox), "--config", str(cfg), "--out", str(tmp_path / "s"))
    assert out.returncode == 4, out.stdout + out.stderr
    assert "waiting" not in out.stderr and "deferred" in out.stdout


def test_demo_writes_a_cohort_of_real_acq_files_and_ingests_it(tmp_path):
    cfg = tmp_path / "small.toml"
    cfg.write_text(
        "[demo]\nn_subjects = 2\nduration_s = 12.0\n"
        f'inbox = "{tmp_path / "inbox"}"\n[store]\nroot = "{tmp_path / "store"}"\n'
        "[discovery]\nsettle_s = 0.0\n"
    )
    out = run("demo", "--config", str(cfg), "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "wrote 6 synthetic .acq recordings" in out.stdout
    assert "6 written" in out.stdout and "total: 24 windows from 6 recordings" in out.stdout
    again = run("demo", "--config", str(cfg), "--no-progress")
    assert "already holds recordings" in again.stdout and "6 unchanged" in again.stdout


def test_demo_writes_one_file_per_subject_with_markers_and_splits_it(tmp_path):
    # The lab's configuration (its marker map), smaller and in tmp_path.
    cfg = tmp_path / "small.toml"
    text = (Path(__file__).parents[2] / "configs" / "demo.toml").read_text()
    text = text.replace("n_subjects = 15", "n_subjects = 2")
    text = text.replace("duration_s = 180.0", "duration_s = 12.0")
    text = text.replace('inbox = "data/inbox"', f'inbox = "{tmp_path / "inbox"}"')
    text = text.replace('root = "data/windows"', f'root = "{tmp_path / "store"}"')
    cfg.write_text(text + "\n[discovery]\nsettle_s = 0.0\n")
    out = run("demo", "--config", str(cfg), "--layout", "one_file_with_markers", "--no-progress")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "wrote 2 synthetic .acq recordings" in out.stdout
    assert "6 written" in out.stdout and "total: 24 windows from 6 recordings" in out.stdout
    assert "(2 file(s) split at their event markers into 6 phases)" in out.stdout
    assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == ["S01.acq", "S02.acq"]


def test_a_malformed_manifest_is_a_clear_error_not_a_traceback(tmp_path):
    inbox = tmp_path / "in"
    write_ecg_file(inbox / "S01_rest.acq", demo_ecg(duration_s=9.0)[0])
    bad = tmp_path / "m.csv"
    bad.write_text("file;subject;condition\nS01_rest.acq;S01;rest\n")
    out = run("ingest", str(inbox), "--manifest", str(bad), "--out", str(tmp_path / "s"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "m.csv: manifest lacks column(s)" in out.stderr
    out = run("ingest", str(inbox), "--manifest", str(tmp_path / "nope.csv"))
    assert out.returncode == 2 and "nope.csv" in out.stderr and "Traceback" not in out.stderr


def test_train_with_seeds_recipe_and_overrides_then_the_table(tmp_path):
    cfg = tmp_path / "small.toml"
    cfg.write_text(
        "[demo]\nn_subjects = 3\nduration_s = 30.0\n"
        f'inbox = "{tmp_path / "inbox"}"\n[store]\nroot = "{tmp_path / "store"}"\n'
        "[discovery]\nsettle_s = 0.0\n[training]\ncpu_threads = 1\n"
    )
    assert run("demo", "--config", str(cfg), "--no-progress").returncode == 0
    out = run(
        "train",
        "--config",
        str(cfg),
        "--recipe",
        str(REPO / "configs/recipes/tuned.toml"),
        "--set",
        "training.epochs=1",
        "--set",
        "model.name=resnet1d",
        "--seeds",
        "0",
        "1",
        "--name",
        "row",
        "--out",
        str(tmp_path / "results"),
        "--no-progress",
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "over 2 seeds x 1 fold(s):" in out.stdout and "identity" in out.stdout
    assert (tmp_path / "results/row/seed1/time_block/model.json").is_file()
    table = run("table", str(tmp_path / "results"), "--commands")
    assert table.returncode == 0, table.stderr
    row = [line for line in table.stdout.splitlines() if line.startswith("| row | demo |")][0]
    assert "| resnet1d |" in row and "| tuned | 2 |" in row and "time_block (1)" in row
    assert "--set training.epochs=1" in table.stdout  # the command that made the row
    bad = run("train", "--config", str(cfg), "--set", "training.epochz=1")
    assert bad.returncode == 2 and "epochz" in bad.stderr
    bad = run("train", "--config", str(cfg), "--epochs", "0")
    assert bad.returncode == 2 and "training.epochs" in bad.stderr
    bad = run("train", "--config", str(cfg), "--seed", "1", "--seeds", "0", "2")
    assert bad.returncode == 2 and "not both" in bad.stderr
    assert run("table", str(tmp_path / "nothing")).returncode == 1


def test_servers_start_reuse_and_stop_by_pid(tmp_path):
    from ecg_pipeline.stack.servers import free_port

    cfg = tmp_path / "servers.toml"
    cfg.write_text(
        f"[servers]\nprefect_port = {free_port()}\nmlflow_port = {free_port()}\n"
        f'state_dir = "{tmp_path / "state"}"\nmlflow_dir = "{tmp_path / "mlflow"}"\n'
        "prefect_toml = false\n"  # the repository's own file is the lab's stack's to write
        f'[store]\nroot = "{tmp_path / "store"}"\n'
    )
    try:
        out = run("servers", "start", "--config", str(cfg), timeout=180)
        assert out.returncode == 0, out.stderr
        assert "prefect started: http://127.0.0.1:" in out.stdout
        assert "mlflow started: http://127.0.0.1:" in out.stdout
        again = run("servers", "start", "--config", str(cfg), timeout=60)
        assert again.stdout.count("already running") == 2
        status = run("status", "--config", str(cfg))
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert any(
            x.split()[:2] == ["prefect", "running"] and "http://127.0.0.1:" in x for x in lines
        )
        assert any(x.split()[:2] == ["mlflow", "running"] for x in lines)
        assert any(x.split()[:3] == ["watch", "not", "running"] for x in lines)
        assert "empty (nothing ingested yet)" in status.stdout
    finally:
        stopped = run("servers", "stop", "--config", str(cfg))
    assert stopped.returncode == 0 and "prefect" in stopped.stdout and "mlflow" in stopped.stdout
    assert not list((tmp_path / "state").glob("*.pid"))
    assert "nothing was running" in run("servers", "stop", "--config", str(cfg)).stdout
    after = run("status", "--config", str(cfg)).stdout.splitlines()
    assert any(x.split()[:3] == ["prefect", "not", "running"] for x in after)
