"""The consoles (stderr for progress and tables, stdout for results only), JSON mode, and
the number and duration formats every table shares."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

_err: Console | None = None
_out: Console | None = None


LOG_WIDTH = 4096  # without a terminal: wide enough that no path or value is ever cut


def _console(stderr: bool) -> Console:
    """One message = one line (soft wrap). Without a terminal (CI logs, pipes) and
    without COLUMNS, Rich would lay tables out at 80 columns and cut cells with an
    ellipsis, paths included; there the width is :data:`LOG_WIDTH`, so tables take
    the width of their contents and a path can be copied whole."""
    import os

    probe = Console(stderr=stderr)
    wide = not probe.is_terminal and not os.environ.get("COLUMNS")
    return Console(
        stderr=stderr, highlight=False, soft_wrap=True, width=LOG_WIDTH if wide else None
    )


def err_console() -> Console:
    global _err
    if _err is None:
        _err = _console(stderr=True)
    return _err


def out_console() -> Console:
    global _out
    if _out is None:
        _out = _console(stderr=False)
    return _out


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


def duration(s: float) -> str:
    """'420ms', '3.4s', then '0:12', '12:05', '1:02:03': a sub-second epoch is not 0:00."""
    if s < 0.9995:
        return f"{max(s, 0) * 1000:.0f}ms"
    if s < 9.95:
        return f"{s:.1f}s"
    s = int(round(s))
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


# ----------------------------------------------------------------- training


# ------------------------------------------------------------ runs and tune


def sized(p: Path | str) -> str:
    from bigmodel_cli.runs import human_size, path_size

    try:
        return f"{p} ({human_size(path_size(Path(p)))})"
    except OSError:
        return str(p)


def params_cell(params: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if not isinstance(v, float):
            return str(v)
        return fmt(v) if abs(v) >= 1e-3 else f"{v:.3g}"

    return " · ".join(f"{k.rsplit('.', 1)[-1]} {value(v)}" for k, v in params.items())


def print_table(con: Console, table: Any) -> None:
    """A table on ``con``; without a terminal its lines carry no trailing spaces (Rich pads
    every cell to its column's width, and a log, a diff or a grep reads them as written)."""
    if con.is_terminal:
        con.print(table)
        return
    with con.capture() as captured:
        con.print(table)
    lines = [line.rstrip() for line in captured.get().split("\n")]
    con.file.write("\n".join(lines))
    con.file.flush()
