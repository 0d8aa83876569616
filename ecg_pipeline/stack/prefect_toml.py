"""The embedded Prefect server's address in the repository's ``prefect.toml``.

Prefect 3 reads ``[api] url`` from a ``prefect.toml`` in the working folder, so with this file
written ``prefect deployment run ingest-train/default`` typed in a new shell in the repository
reaches the embedded server with nothing exported. The file is written when the stack starts
(from ``[servers]``, so it always names the port the server was started on) and removed when the
stack stops; while no stack runs there is none, and Prefect commands and tests fall back to
their usual behaviour. A ``prefect.toml`` the lab wrote itself is never overwritten or removed:
we only warn when it names another server.

Only the standard library is imported here (the command line imports this module).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

__all__ = ["PREFECT_TOML", "repository_root", "write_prefect_toml", "remove_prefect_toml"]

PREFECT_TOML = "prefect.toml"
_MARK = "# Written by ecg-pipeline"


def repository_root() -> Path | None:
    """The source checkout this package runs from (it holds ``flows/``), or None if installed."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "flows").is_dir() and (root / "pyproject.toml").is_file() else None


def write_prefect_toml(api_url: str, folder: str | os.PathLike | None = None) -> str | None:
    """Write ``[api] url = api_url`` to ``folder/prefect.toml`` (default: the repository).

    Returns
    -------
    str or None
        A warning to show when the folder holds a ``prefect.toml`` of the lab's own that names
        another URL (left as it is); None otherwise, and when there is no repository.
    """
    folder = Path(folder) if folder is not None else repository_root()
    if folder is None:
        return None
    path = folder / PREFECT_TOML
    if path.is_file() and not _ours(path):
        theirs = _api_url(path)
        if theirs not in (None, api_url):
            return (
                f"{path} (not written by ecg-pipeline) sends Prefect commands run in "
                f"{folder} to {theirs}, not to the embedded server at {api_url}"
            )
        return None
    text = (
        f"{_MARK} when the embedded servers started; removed when they stop.\n"
        "# Prefect commands run in this folder reach the embedded server through it.\n"
        f'[api]\nurl = "{api_url}"\n'
    )
    tmp = path.with_name(f".{PREFECT_TOML}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return None


def remove_prefect_toml(folder: str | os.PathLike | None = None) -> bool:
    """Remove ``folder/prefect.toml`` if ecg-pipeline wrote it; whether it did."""
    folder = Path(folder) if folder is not None else repository_root()
    if folder is None:
        return False
    path = folder / PREFECT_TOML
    if path.is_file() and _ours(path):
        path.unlink(missing_ok=True)
        return True
    return False


def _ours(path: Path) -> bool:
    try:
        return path.read_text(encoding="utf-8").startswith(_MARK)
    except (OSError, UnicodeDecodeError):
        return False


def _api_url(path: Path) -> str | None:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")).get("api", {}).get("url")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
