"""What a run was trained on, in forms that are safe to publish to a tracking server.

A tracking server is read by more people than the lab's data folder, so what goes there names
subjects by their pseudonymous ids only: no recording dates, no ages or sexes from the file
headers, no absolute paths (which carry a person's home folder or name). The recordings'
sha256 ties a run to the exact files without revealing anything about the people in them.
No mlflow here: these are plain functions the logger calls.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable
from pathlib import Path, PurePath

import pandas as pd

__all__ = [
    "RECORDING_COLUMNS",
    "data_hash",
    "git_commit",
    "git_dirty",
    "recordings_table",
    "shareable_rejections",
]

# The only catalog columns published with a run.
RECORDING_COLUMNS = ("recording_id", "subject", "condition", "session", "sha256")

# Columns that can hold personal data (header-derived or dates); never published.
_PERSONAL_COLUMNS = frozenset(
    {
        "date",
        "datetime",
        "recorded_at",
        "age",
        "sex",
        "gender",
        "birth",
        "birth_date",
        "dob",
        "birthday",
        "name",
        "first_name",
        "last_name",
        "height",
        "weight",
        "bmi",
    }
)

_REPO = Path(__file__).resolve().parents[2]


def _git(*args: str, cwd: Path = _REPO) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git, not a checkout (an installed wheel), or git refused
    return done.stdout.strip()


def git_commit(repo: str | Path | None = None) -> str:
    """The checked-out commit of the project (``git rev-parse HEAD``), or ``"unknown"``.

    Parameters
    ----------
    repo : str or Path, optional
        A folder inside the repository; the project's own checkout by default.
    """
    out = _git("rev-parse", "HEAD", cwd=Path(repo) if repo else _REPO)
    return out or "unknown"


def git_dirty(repo: str | Path | None = None) -> str:
    """``"true"`` when tracked files differ from the commit, ``"false"``, or ``"unknown"``.

    A run from a modified checkout cannot be rebuilt from its commit alone; the tag says so.
    """
    out = _git("status", "--porcelain", "--untracked-files=no", cwd=Path(repo) if repo else _REPO)
    if out is None:
        return "unknown"
    return "true" if out else "false"


def recordings_table(catalog: pd.DataFrame) -> pd.DataFrame:
    """The recordings a run used, reduced to :data:`RECORDING_COLUMNS`, sorted by id.

    Parameters
    ----------
    catalog : pandas.DataFrame
        ``WindowStore.catalog()`` or any frame with at least ``recording_id`` and ``sha256``.

    Raises
    ------
    ValueError
        When ``recording_id`` or ``sha256`` is missing.
    """
    missing = [c for c in ("recording_id", "sha256") if c not in catalog.columns]
    if missing:
        raise ValueError(f"recordings lack column(s) {missing}; have {list(catalog.columns)}")
    columns = [c for c in RECORDING_COLUMNS if c in catalog.columns]
    return catalog.loc[:, columns].sort_values("recording_id").reset_index(drop=True)


def data_hash(sha256s: Iterable[str], ingest_hash: str) -> str:
    """sha256 over the sorted recording hashes and the ingest settings' hash.

    Two runs share it exactly when they saw the same source files processed the same way,
    whatever order the store listed them in.
    """
    h = hashlib.sha256()
    for sha in sorted(str(s) for s in sha256s):
        h.update(sha.encode())
        h.update(b"\n")
    h.update(f"ingest:{ingest_hash}".encode())
    return h.hexdigest()


def shareable_rejections(path: str | Path) -> pd.DataFrame:
    """The ingest's rejections CSV without personal columns and with file names only.

    The ``file`` column keeps the base name (enough to find the file in the inbox) and drops
    the folders, which can hold a person's name; so does any mention of them in ``reason``.
    """
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table = table.drop(columns=[c for c in table.columns if c.lower() in _PERSONAL_COLUMNS])
    if "reason" in table.columns and "file" in table.columns:
        # A reason may quote the file's whole path (an OS error message): keep its name only.
        table["reason"] = [
            reason.replace(f"{PurePath(f).parent}/", "")
            if f and PurePath(f).parent.name
            else reason
            for f, reason in zip(table["file"], table["reason"], strict=True)
        ]
    for column in ("file", "source_path", "path"):
        if column in table.columns:
            table[column] = [PurePath(p).name if p else p for p in table[column]]
    return table
