"""The import contract of ``design.md``: imports go downhill only.

Every import statement of every module (top level and inside functions alike) is read with
``ast`` and checked against the layer its module sits in. A new upward import fails here with
the file, the line and the rule it breaks.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Layers, bottom up (design.md). A module may import project modules of its own layer and of the
# layers listed as allowed for it; nothing else of the project.
GROUND = {"ecg_pipeline.config", "ecg_pipeline.errors", "ecg_pipeline.instrument"}
LAYERS: dict[str, set[str]] = {
    # layer: the layers it may import besides its own
    "ground": set(),
    "signal": set(),  # numpy and scipy only: not even the configuration
    "io": {"ground", "signal"},
    "cohort": {"ground", "signal", "io"},  # cohort/ and data_contracts/
    "ingest": {"ground", "signal", "io", "cohort"},
    "models": {"ground"},  # torch, plus config for settings types at most
    "training": {"ground", "signal", "io", "models"},
    "predict": {"ground", "signal", "io", "cohort", "ingest", "models", "training"},
    "tracking": {"ground", "signal", "io", "cohort", "models", "training", "predict"},
    "stack": {"ground", "signal", "io", "cohort", "ingest"},
    "top": {
        "ground",
        "signal",
        "io",
        "cohort",
        "ingest",
        "models",
        "training",
        "predict",
        "tracking",
        "stack",
    },
}
# Third-party packages only some layers may import.
ONLY_IN = {
    "mlflow": {"tracking", "top"},
    "prefect": {"stack", "top"},
    "torch": {"models", "training", "predict", "tracking", "top"},
    "matplotlib": {"tracking", "top"},
}
SIGNAL_THIRD_PARTY = {"numpy", "scipy"}
# NeuroKit2 is a signal library over arrays too; its R-peak detectors are used in one module
# (signal/beats.py), its quality indices in another (signal/sqi.py), and nowhere else in signal/.
SIGNAL_EXCEPTIONS = {
    ("ecg_pipeline.signal.beats", "neurokit2"),
    ("ecg_pipeline.signal.sqi", "neurokit2"),
}


def layer_of(module: str) -> str:
    """The layer of a dotted module name of this repository."""
    if module in GROUND:
        return "ground"
    parts = module.split(".")
    if parts[0] == "data_contracts":
        return "cohort"
    if parts[0] in ("flows", "bench", "tests"):
        return "top"
    if parts[0] != "ecg_pipeline":
        raise ValueError(module)
    if module in (
        "ecg_pipeline",
        "ecg_pipeline.cli",
        "ecg_pipeline.__main__",
        "ecg_pipeline.report",
    ):
        return "top"  # the public API (lazy), the command line and its rendering
    sub = parts[1]
    if sub in (
        "signal",
        "io",
        "cohort",
        "ingest",
        "models",
        "training",
        "predict",
        "tracking",
        "stack",
    ):
        return sub
    raise AssertionError(f"{module}: no layer assigned; add it to design.md and this test")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, me: str | None = None) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = me or module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # ``from ecg_pipeline import servers`` imports a module, not a name: check both.
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if base == "ecg_pipeline"]
    return out


def library_files() -> list[Path]:
    files = []
    for folder in ("ecg_pipeline", "data_contracts", "flows"):
        files += sorted((REPO / folder).rglob("*.py"))
    return files


def project_module(name: str) -> str | None:
    """The project module ``name`` refers to (a package, or a module of one), or None."""
    root = name.split(".")[0]
    if root not in ("ecg_pipeline", "data_contracts", "flows", "tests"):
        return None
    parts = name.split(".")
    while parts:
        candidate = REPO.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts = parts[:-1]
    return None


def violations(path: Path, me: str | None = None) -> list[str]:
    """Broken rules in one file (``me``: its module name, when it lies outside the repository)."""
    me = me or module_name(path)
    mine = layer_of(me)
    allowed = LAYERS[mine] | {mine}
    out = []
    for line, name in imports_of(path, me):
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
        where = f"{shown}:{line}"
        root = name.split(".")[0]
        target = project_module(name)
        if target is not None:
            theirs = layer_of(target)
            if root in ("flows", "tests") and not me.startswith(root):
                out.append(f"{where}: imports {name} (nothing in the library imports {root}/)")
            elif theirs not in allowed:
                out.append(f"{where}: {mine} module {me} imports {theirs} module {target}")
            continue
        if root in ONLY_IN and mine not in ONLY_IN[root]:
            out.append(f"{where}: {me} imports {root} (only {sorted(ONLY_IN[root])} may)")
        if (
            mine == "signal"
            and root not in SIGNAL_THIRD_PARTY | set(sys.stdlib_module_names)
            and (me, root) not in SIGNAL_EXCEPTIONS
        ):
            out.append(f"{where}: signal/ imports {name} (numpy and scipy only)")
    return out


def test_every_library_module_has_a_layer():
    for path in library_files():
        layer_of(module_name(path))


def test_imports_go_downhill_only():
    problems = [v for path in library_files() for v in violations(path)]
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_bench_does_not_import_tests():
    problems = []
    for path in sorted((REPO / "bench").glob("*.py")):
        for line, name in imports_of(path):
            if name.split(".")[0] in ("tests", "conftest", "helpers", "e2e_support"):
                problems.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
    assert not problems, "\n".join(problems)


def test_nothing_patches_pythonpath_to_start_the_flows():
    # flows/ is installed with the package: processes start it by module name, unpatched.
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "ecg_pipeline").rglob("*.py")
        if '"PYTHONPATH"' in p.read_text(encoding="utf-8")
    ]
    assert not offenders


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ecg_pipeline.ingest import ingest_folder\n", "signal module"),
        ("import mlflow\n", "only ['top', 'tracking']"),
        ("from ecg_pipeline.config import StudyConfig\n", "signal module"),
        ("import pandas\n", "numpy and scipy only"),
    ],
)
def test_the_checker_catches_an_upward_import(tmp_path, source, expected):
    # A signal/ module that breaks a rule: the checker must name it.
    probe = tmp_path / "probe.py"
    probe.write_text(source, encoding="utf-8")
    found = violations(probe, "ecg_pipeline.signal.probe")
    assert any(expected in v for v in found), found


def test_the_checker_catches_a_library_module_importing_flows(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from flows.serve import serve\n", encoding="utf-8")
    found = violations(probe, "ecg_pipeline.stack.probe")
    assert any("nothing in the library imports flows/" in v for v in found), found
