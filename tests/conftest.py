"""Shared fixtures: the real files in ../shared, and small .acq files written for a test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ecg_pipeline.config import StudyConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ECG_SHARED_DIR", REPO.parent / "shared"))

# While the embedded stack runs, the repository's prefect.toml sends Prefect commands to it; the
# tests' flows use a temporary server of their own (or the one a test starts) instead.
os.environ.setdefault("PREFECT_API_URL", "")


@pytest.fixture(scope="session")
def acq_dir() -> Path:
    path = SHARED / "acq"
    if not path.is_dir():
        pytest.skip(f"real .acq files not found at {path} (set ECG_SHARED_DIR)")
    return path


@pytest.fixture
def config(tmp_path) -> StudyConfig:
    """The demo study's configuration with the store in tmp_path and no settle time."""
    return StudyConfig().with_overrides(
        {"store.root": tmp_path / "store", "discovery.settle_s": 0.0}
    )
