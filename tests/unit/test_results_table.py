"""The README's evaluation table is what `ecg-pipeline table results --commands` rebuilds from the
stored results files, to the character: no figure in it is typed by hand."""

from __future__ import annotations

from pathlib import Path

from ecg_pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_readme_table_is_rebuilt_from_the_stored_results(capsys):
    assert main(["table", str(REPO / "results"), "--commands"]) == 0
    table, _, commands = capsys.readouterr().out.strip().partition("\n\n")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert table in readme
    for line in commands.splitlines():
        assert line in readme, line


def test_readme_selection_table_is_rebuilt_from_the_stored_validation_scores(capsys):
    assert main(["table", str(REPO / "results" / "selection"), "--validation"]) == 0
    table = capsys.readouterr().out.strip()
    assert "| ecg-id-segment-rate/100hz |" in table
    assert table in (REPO / "README.md").read_text(encoding="utf-8")
