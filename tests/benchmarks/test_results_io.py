"""benchmarks/results_io.py: the JSON + markdown pair a benchmark writes, written atomically, and
the markdown tables; and that the benchmarks built on it still write their committed reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import contrastive_methods, geometry_probe
from benchmarks.results_io import markdown_table, write_results, write_text_atomic

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def test_write_results_writes_the_json_and_the_text_side_by_side(tmp_path):
    out = tmp_path / "new" / "folder"
    result = {"machine": "test", "rows": [{"p50_ms": 1.5}]}
    json_path, md_path = write_results(out, "bench-test", result, "# title\n")
    assert (json_path, md_path) == (out / "bench-test.json", out / "bench-test.md")
    assert json.loads(json_path.read_text()) == result
    assert json_path.read_text().endswith("}\n")
    assert md_path.read_text() == "# title\n"
    assert sorted(p.name for p in out.iterdir()) == ["bench-test.json", "bench-test.md"]
    assert md_path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old report\n")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "half \ud800 written")  # a lone surrogate cannot be encoded
    assert path.read_text() == "old report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_markdown_table_aligns_numbers_right_from_the_column_given():
    assert markdown_table(["a", "b", "c"], [["x", "1", "2"]], numeric_from=1) == [
        "| a | b | c |", "|---|---:|---:|", "| x | 1 | 2 |"]
    assert markdown_table(["a", "b"], [], numeric_from=None) == ["| a | b |", "|---|---|"]
    assert markdown_table(["a", "b"], [["1", "2"], ["3", "4"]], numeric_from=0)[1:] == [
        "|---:|---:|", "| 1 | 2 |", "| 3 | 4 |"]


@pytest.mark.parametrize("module, stem", [
    (geometry_probe, "geometry_probe-recipe-default-cpu"),
    (contrastive_methods, "contrastive_methods-cpu2-x86_64"),
])
def test_the_committed_reports_are_what_their_markdown_writes(module, stem):
    result = json.loads((RESULTS / f"{stem}.json").read_text())
    assert module.markdown(result) == (RESULTS / f"{stem}.md").read_text()
