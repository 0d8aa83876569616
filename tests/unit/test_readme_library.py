"""The README's "Library" example runs as it stands.

In a temp folder laid out like a checkout (``configs/demo.toml``, ``data/inbox``), with a small
demo cohort, a model trained the way the README says (``ecg-pipeline train --name demo``, here
for one epoch) and one new recording, the README's code block is executed unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def library_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Library\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_library_example_is_ten_lines_or_so():
    lines = [line for line in library_example().splitlines() if line.strip()]
    assert len(lines) <= 10


def test_the_readme_library_example_runs(tmp_path, monkeypatch, capsys):
    from ecg_pipeline.cohort.demo import write_demo_cohort, write_demo_recording
    from ecg_pipeline.config import load_config
    from ecg_pipeline.ingest import ingest_folder
    from ecg_pipeline.training.experiment import run_seeds

    (tmp_path / "configs").mkdir()
    shutil.copy2(REPO / "configs" / "demo.toml", tmp_path / "configs" / "demo.toml")
    monkeypatch.chdir(tmp_path)
    files = write_demo_cohort("data/inbox", n_subjects=3, duration_s=30.0)
    new = write_demo_recording(Path("new-folder"), 2, "exercise", duration_s=15.0)
    shutil.move(new, "new.acq")
    past = time.time() - 3600  # settled long ago: nothing is deferred as still being copied
    for f in files:
        os.utime(f, (past, past))
    config = load_config("configs/demo.toml").with_overrides({"training.epochs": 1})
    ingest_folder("data/inbox", config)
    run_seeds(config, [0], name="demo")  # what `ecg-pipeline train --name demo` writes

    import ecg_pipeline.predict  # noqa: F401  (the subpackage must not shadow the function)

    namespace: dict = {}
    exec(compile(library_example(), "README.md (Library)", "exec"), namespace)
    exec(compile(library_example(), "README.md (Library), again", "exec"), namespace)

    predictions = namespace["predictions"]
    assert isinstance(predictions, pd.DataFrame) and predictions["file"].tolist() == ["new.acq"]
    assert predictions["activity"].iloc[0] in ("rest", "exercise", "deep_breathing")
    assert namespace["refused"] == []
    assert namespace["x"].shape[1] == 300 and len(namespace["meta"]) == len(namespace["x"])
    assert namespace["recording"].channel_name.startswith("ECG")
    assert namespace["model"].ingest_hash == config.ingest_hash()
    assert namespace["report"].count("unchanged") == 9  # ingested above: nothing twice
    assert "new.acq" in capsys.readouterr().out
