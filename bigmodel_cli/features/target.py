"""The target column as read from a file at eval time: raw cells -> labels.

Training reads the target through pandas (its values may be numbers or booleans);
``eval`` reads it through predict's reader, where every cell is text. :class:`Target`
maps both spellings of a class to the same index (``1`` and ``1.0``, ``True`` and
``true``), so a file scores the same whichever reader read it. A cell that is no
class of the run, or no number for a regression, is the same one-line error as a
bad feature value; an empty cell is a missing target and its row is not scored.

Example::

    t = Target("classification", ["cat", "dog"], "animal")
    codes, missing = t.codes(["dog", "", "cat"])   # [1, -1, 0], [False, True, False]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bigmodel_cli.features.category import NA_SPELLINGS


def _spellings(c: Any) -> set[str]:
    """The texts a class may be written as in a file."""
    out = {str(c)}
    if isinstance(c, bool) or isinstance(c, np.bool_):
        out |= {str(bool(c)).lower(), str(bool(c)).upper(), str(int(bool(c)))}
    elif isinstance(c, (int, np.integer)):
        out |= {f"{int(c)}.0"}
    elif isinstance(c, (float, np.floating)) and math.isfinite(float(c)) and float(c).is_integer():
        out |= {str(int(c))}
    return out


@dataclass(frozen=True)
class Target:
    task: str  # regression | binary | classification
    classes: list[Any] | None
    name: str

    def _index(self) -> dict[str, int]:
        index: dict[str, int] = {}
        for i, c in enumerate(self.classes or []):
            for s in _spellings(c):
                index.setdefault(s, i)
        return index

    def codes(self, cells: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(class indices, -1 where missing; the missing mask). Raises ValueError with
        (row, cell) for a value that is no class of the run."""
        index = self._index()
        out = np.full(len(cells), -1, np.int64)
        missing = np.zeros(len(cells), bool)
        for i, v in enumerate(cells):
            text = "" if v is None else str(v).strip()
            if text == "" or text in NA_SPELLINGS:
                missing[i] = True
                continue
            code = index.get(text)
            if code is None:
                code = index.get(_number_text(text) or "\0")
            if code is None:
                raise LabelError(i, text)
            out[i] = code
        return out, missing

    def values(self, cells: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """A regression's (float64 values, missing mask); a cell that
        is no number raises LabelError."""
        out = np.full(len(cells), np.nan)
        missing = np.zeros(len(cells), bool)
        for i, v in enumerate(cells):
            text = "" if v is None else str(v).strip()
            if text == "" or text in NA_SPELLINGS:
                missing[i] = True
                continue
            try:
                out[i] = float(text)
            except ValueError:
                raise LabelError(i, text) from None
            if not math.isfinite(out[i]):
                missing[i] = True
        return out, missing


class LabelError(ValueError):
    """A target cell that the run cannot score: (its 0-based row in the block, its text)."""

    def __init__(self, row: int, text: str):
        super().__init__(row, text)
        self.row, self.text = row, text


def _number_text(text: str) -> str | None:
    try:
        f = float(text)
    except ValueError:
        return None
    return str(int(f)) if math.isfinite(f) and f.is_integer() else str(f)
