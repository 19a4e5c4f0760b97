"""How the benchmarks write what they measured: markdown tables, and one result as
`<stem>.json` and `<stem>.md` side by side, each file written atomically (a reader, or a run
interrupted half-way, never leaves half a file under the real name).

Use (from the repository root, so that `benchmarks` imports: `python -m benchmarks.NAME`):

    lines += markdown_table(["method", "ICC"], [["simclr", "0.21"]], numeric_from=1)
    write_results(Path("benchmarks/results"), "geometry_probe-cpu", result, "\n".join(lines))
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from rtau.contract import write_json_atomic

RESULT_FILE_MODE = 0o644  # results are committed and read by others; mkstemp makes 0600


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, RESULT_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(out_dir: Path, stem: str, result: dict, text: str) -> tuple[Path, Path]:
    """`out_dir/<stem>.json` (result, indented) and `out_dir/<stem>.md` (text, as given);
    out_dir is created if needed. Returns (json path, markdown path)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_json_atomic(json_path, result)
    write_text_atomic(md_path, text)
    return json_path, md_path


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]],
                   numeric_from: int | None = None) -> list[str]:
    """The lines of a markdown table: header, separator, one line per row of cells (strings,
    already formatted). Columns from index `numeric_from` on are right-aligned (numbers);
    None: every column left-aligned."""
    first_right = len(header) if numeric_from is None else numeric_from
    separator = "|" + "".join("---:|" if k >= first_right else "---|" for k in range(len(header)))
    return ["| " + " | ".join(header) + " |", separator,
            *("| " + " | ".join(cells) + " |" for cells in rows)]
