"""Reading a prepared block cache: the partitions' blocks streamed in a shuffled window, each
worker its own share, as the batches streamed training takes; what was prepared, said in one
line; and whether a table should stream at all (its estimated size against the memory
budget).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bigmodel_cli.data.block_format import DATE_PARTS, MANIFEST, VERSION, Schema
from bigmodel_cli.errors import ConfigError, DataError
from bigmodel_cli.features.number import ColumnStats


class Prepared:
    """A converted cache: its manifest, and the splits read from it."""

    def __init__(self, folder: Path, manifest: dict[str, Any]):
        self.folder, self.m = folder, manifest
        self.converted = False

    @classmethod
    def open(cls, folder: Path, key: str | None = None) -> "Prepared | None":
        """The cache in ``folder`` if it is whole (and has ``key``), else None."""
        try:
            m = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if m.get("version") != VERSION or (key is not None and m.get("key") != key):
            return None
        width = m["layout"]["width"]
        blocks = [b for part in m["train"]["blocks"] for b in part] + (
            m["validation"]["blocks"] if m["validation"] else []
        )
        for name, rows in blocks:
            p = folder / name
            if not p.is_file() or p.stat().st_size != rows * width * 4:
                return None
        return cls(folder, m)

    @property
    def schema(self) -> Schema:
        return Schema(self.m["features"], self.m["types"], self.m["target"], self.m["task"])

    def label_values(self) -> list[Any]:
        return list(self.m["labels"]["values"]) if self.m["labels"] else []

    def label_counts(self) -> list[int]:
        """Rows read of each of :meth:`label_values` (training and validation together)."""
        return [int(n) for n in self.m["labels"]["counts"]] if self.m["labels"] else []

    def encoders(self, max_values: int) -> dict[str, Any]:
        """A CategoryEncoder per category column, from the training counts, and a
        DateEncoder per date column, from the training rows' statistics."""
        from collections import Counter

        from bigmodel_cli.features.category import CategoryEncoder, canonical
        from bigmodel_cli.features.date import DateEncoder

        out = {}
        for c, info in self.m["categories"].items():
            counts: Counter[str] = Counter()
            for k, n in zip(info["values"], info["counts"]):
                key = canonical(k, info["boolean"])
                if key is not None and n:
                    counts[key] += n
            out[c] = CategoryEncoder.from_counts(counts, max_values, boolean=info["boolean"])
        for c, info in self.m.get("dates", {}).items():
            out[c] = DateEncoder(info["format"], info["stats"])
        return {**out, **self.text_tokenizers()}

    @functools.cached_property
    def _text_tokenizers(self) -> dict[str, Any]:
        return self._load_text_tokenizers()

    def text_tokenizers(self) -> dict[str, Any]:
        """The tokenisers whose ids the blocks hold (fitted on the training rows), read
        from the cache folder once (encoders and remaps both ask)."""
        return dict(self._text_tokenizers)

    def _load_text_tokenizers(self) -> dict[str, Any]:
        info = self.m.get("text")
        if not info:
            return {}
        from bigmodel_cli.features.registry import load_tokenizers

        toks = load_tokenizers(self.folder / info["folder"])
        for c, chosen in info.get("chosen", {}).items():
            toks[c].chosen = list(chosen)
        return toks

    def remaps(
        self, classes: list[Any] | None, encoders: dict[str, Any]
    ) -> dict[str, np.ndarray | None]:
        """Code -> model value: class index for the target, category id per column; for a
        date column, its encoder's (year mean, std, days mean, std) that standardise the
        parts on disk; for a text column, the blocks' ids -> the run's (a resumed run's
        encoders are its own, not the cache's)."""
        from bigmodel_cli.data.sources import _key
        from bigmodel_cli.features.category import MISSING, UNSEEN, canonical

        out: dict[str, np.ndarray | None] = {}
        if self.m["labels"] is not None:
            index = {_key(c): i for i, c in enumerate(classes or [])}
            values = self.m["labels"]["values"]
            missing = [v for v in values if _key(v) not in index]
            if missing:
                raise DataError(
                    f"{self.m['target']} value {missing[0]!r} (in the training or "
                    "validation files) is not one of the model's classes",
                    hint=f"classes are {list(classes or [])[:20]}",
                )
            out["__target__"] = np.asarray([index[_key(v)] for v in values], np.int32)
        for c, info in self.m["categories"].items():
            enc = encoders[c]
            ids = [MISSING] + [
                enc.index.get(canonical(k, enc.boolean) or "", UNSEEN) for k in info["values"]
            ]
            out[c] = np.asarray(ids, np.int32)
        for c in self.m["layout"].get("dates", []):
            out[c] = np.asarray(encoders[c].stats, np.float64)
        cached = self.text_tokenizers()
        for c in self.m["layout"].get("texts", []):
            out[c] = _id_map(cached[c], encoders[c])
        return out

    def split(
        self, role: str, remaps: dict[str, np.ndarray | None], source: str, window: int = 2
    ) -> "StreamedTable | None":
        part = self.m[role]
        if part is None:
            return None
        blocks = part["blocks"] if role == "train" else [part["blocks"]]
        return StreamedTable(self.folder, blocks, self.m, remaps, source, window)


def _id_map(cached: Any, run: Any) -> np.ndarray | None:
    """The blocks' text ids -> the run's: None where the run's tokeniser is the cache's
    (the ids are read as they are); for a resumed run with a vocabulary of its own, an
    n-gram it does not know is its out-of-vocabulary id."""
    from bigmodel_cli.features.text import OOV, PAD

    if list(cached.vocabulary) == list(run.vocabulary):
        return None
    ids = np.arange(len(cached.vocabulary) + 2, dtype=np.int32)
    ids[2:] = [run.index.get(g, OOV) for g in cached.vocabulary]
    ids[PAD], ids[OOV] = PAD, OOV
    return ids


def read_block(path: Path, out: np.ndarray) -> None:
    """A block file into ``out`` with plain reads (not mmap: mapped
    pages count as resident memory)."""
    view = memoryview(out).cast("B")
    with open(path, "rb", buffering=0) as f:
        got = 0
        while got < len(view):
            n = f.readinto(view[got:])
            if not n:
                raise DataError(
                    f"{path} is shorter than its manifest says",
                    hint="delete the cache folder (or run bigmodel prepare --rebuild)",
                )
            got += n


class PartitionStream:
    """One partition's rows in an epoch's order: blocks permuted, rows shuffled
    within windows of ``window`` blocks; ``seek`` and ``take`` move through it."""

    def __init__(
        self,
        folder: Path,
        blocks: list[list[Any]],
        width: int,
        key: list[int],
        shuffle: bool,
        window: int,
    ):
        self.folder, self.blocks, self.width, self.key, self.shuffle = (
            folder,
            blocks,
            width,
            key,
            shuffle,
        )
        order = (
            np.random.default_rng(key).permutation(len(blocks))
            if shuffle
            else np.arange(len(blocks))
        )
        self.windows = [order[w : w + window] for w in range(0, len(blocks), window)]
        self.ends = np.cumsum([sum(blocks[b][1] for b in win) for win in self.windows])
        self.w, self.data, self.off, self.perm = -1, np.zeros((0, width), np.float32), 0, None

    def _load(self, w: int) -> None:
        """Read window w straight into one buffer; its shuffle is an index
        (rows are gathered as they are taken, so the window is never copied)."""
        wins = self.windows[w]
        data = np.empty((sum(self.blocks[b][1] for b in wins), self.width), np.float32)
        at = 0
        for b in wins:
            name, rows = self.blocks[b]
            read_block(self.folder / name, data[at : at + rows])
            at += rows
        self.perm = (
            np.random.default_rng([*self.key, w]).permutation(len(data)) if self.shuffle else None
        )
        self.w, self.data = w, data

    def seek(self, row: int) -> None:
        w = int(np.searchsorted(self.ends, row, side="right"))
        if w >= len(self.windows):
            self.w, self.data, self.off = (
                len(self.windows),
                np.zeros((0, self.width), np.float32),
                0,
            )
            return
        self._load(w)
        self.off = row - (int(self.ends[w - 1]) if w else 0)

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            if self.off >= len(self.data):
                if self.w + 1 >= len(self.windows):
                    raise RuntimeError(
                        "a partition ran out of rows: the manifest does not match the blocks"
                    )
                self._load(self.w + 1)
                self.off = 0
            got = (
                self.data[self.perm[self.off : self.off + k]]
                if self.perm is not None
                else self.data[self.off : self.off + k]
            )
            self.off += len(got)
            k -= len(got)
            out.append(got)
        return out[0] if len(out) == 1 else np.concatenate(out)

    def release(self) -> None:
        self.data = np.zeros((0, self.width), np.float32)


class StreamedTable:
    """A split of the block cache, read as training goes (``pipeline.Streamed``),
    or in file order for evaluation."""

    streamed = True

    def __init__(
        self,
        folder: Path,
        blocks: list[list[list[Any]]],
        manifest: dict[str, Any],
        remaps: dict[str, np.ndarray | None],
        source: str,
        window: int = 2,
    ):
        self.folder, self.parts, self.m, self.remaps, self.source = (
            folder,
            blocks,
            manifest,
            remaps,
            source,
        )
        self.width = manifest["layout"]["width"]
        layout = manifest["layout"]
        self.numeric, self.categories = layout["numeric"], layout["categories"]
        self.dates, self.texts = layout.get("dates", []), layout.get("texts", [])
        self.text_widths = layout.get("text_widths", {})
        self.n = sum(rows for part in blocks for _, rows in part)
        self.window = window
        self.regression = manifest["task"] == "regression"

    def __len__(self) -> int:
        return self.n

    # -- statistics the model is built from
    def numeric_stats(self):
        return ColumnStats.from_json(self.m["stats"])

    def target_stats(self):
        return ColumnStats.from_json(self.m["target_stats"]) if self.m.get("target_stats") else None

    # -- rows -> model inputs
    def structure(self, rows: np.ndarray) -> tuple[Any, np.ndarray]:
        from bigmodel_cli.features.text import ids_name

        n_num = len(self.numeric)
        numbers = np.ascontiguousarray(rows[:, :n_num])
        t = rows[:, -1]
        y = (
            t.astype(np.float32)
            if self.regression
            else self.remaps["__target__"][t.astype(np.int64)]
        )
        if not self.categories and not self.dates and not self.texts:
            return numbers, y
        x: dict[str, np.ndarray] = {"features": numbers} if n_num else {}
        for j, c in enumerate(self.categories):
            x[ids_name(c)] = self.remaps[c][rows[:, n_num + j].astype(np.int64)].reshape(-1, 1)
        at = n_num + len(self.categories)
        for j, c in enumerate(self.dates):
            parts = rows[:, at + j * DATE_PARTS : at + (j + 1) * DATE_PARTS].astype(np.float64)
            st = self.remaps[c]  # as DateEncoder.parts: standardised in float64, then float32
            parts[:, 0] = (parts[:, 0] - st[0]) / st[1]
            parts[:, -1] = (parts[:, -1] - st[2]) / st[3]
            x[ids_name(c)] = parts.astype(np.float32)
        at += DATE_PARTS * len(self.dates)
        for c in self.texts:
            w = self.text_widths[c]
            ids, to_run = rows[:, at : at + w], self.remaps[c]
            x[ids_name(c)] = (
                ids.astype(np.int32) if to_run is None else to_run[ids.astype(np.int64)]
            )
            at += w
        return x, y

    def worker_rows(
        self, key: list[int], start: int, stop: int, i: int, W: int, chunk: int, shuffle: bool
    ) -> Iterator[np.ndarray]:
        """Rows at positions start <= p < stop with p % W == i, in
        order, ``chunk`` positions at a time."""
        C = len(self.parts)
        if C % W:
            raise ConfigError(
                f"streamed data is read by 1, 2, 3, 4, 6 or 12 workers, not {W}",
                hint="change --workers, or set data.stream: false",
            )
        mine = [c for c in range(C) if c % W == i]
        streams = {
            c: PartitionStream(
                self.folder, self.parts[c], self.width, [*key, c], shuffle, self.window
            )
            for c in mine
        }
        for c in mine:
            streams[c].seek(len(range(c, start, C)))
        a = start
        try:
            while a < stop:
                b = min(a + chunk, stop)
                first = a + ((i - a) % W)
                out = np.empty((len(range(first, b, W)), self.width), np.float32)
                for c in mine:
                    p0 = a + ((c - a) % C)
                    k = len(range(p0, b, C))
                    if k:
                        out[(p0 - first) // W :: C // W][:k] = streams[c].take(k)
                a = b
                yield out
        finally:
            for s in streams.values():
                s.release()

    def batches(self, size: int) -> Iterator[tuple[Any, np.ndarray]]:
        """Every row once, in file order (evaluation)."""
        yield from (
            self.structure(r) for r in self.worker_rows([0], 0, self.n, 0, 1, size, shuffle=False)
        )

    def take(self, idx: np.ndarray) -> Any:
        """The rows at ``idx`` (a small sample: the run's ONNX parity
        check), as an in-memory Split."""
        from bigmodel_cli.data.sources import Split

        idx = np.asarray(idx, np.int64)
        end = int(idx.max()) + 1 if len(idx) else 0
        rows = np.concatenate(
            [
                np.zeros((0, self.width), np.float32),
                *self.worker_rows([0], 0, end, 0, 1, max(end, 1), shuffle=False),
            ]
        )
        x, y = self.structure(rows[idx])
        return Split(x, y, self.source)


def describe(prepared: Prepared) -> dict[str, Any]:
    """What ``bigmodel prepare`` prints; ``others`` are older caches beside it
    (other data or settings), kept: another run may read them."""
    m = prepared.m
    others = [
        p
        for p in prepared.folder.parent.iterdir()
        if p.is_dir() and p != prepared.folder and (p / MANIFEST).is_file()
    ]
    blocks = sum(len(p) for p in m["train"]["blocks"]) + (
        len(m["validation"]["blocks"]) if m["validation"] else 0
    )
    mb = m["source_bytes"] / 2**20
    return {
        "folder": str(prepared.folder),
        "converted": prepared.converted,
        "train_rows": m["train"]["rows"],
        "validation_rows": m["validation"]["rows"] if m["validation"] else 0,
        "blocks": blocks,
        "block_rows": m["block_rows"],
        "cache_mb": round(m["bytes"] / 2**20, 1),
        "source_mb": round(mb, 1),
        "seconds": m["seconds"],
        "mb_per_s": round(mb / max(m["seconds"], 1e-9), 1),
        "features": len(m["features"]),
        "dropped": m["dropped"],
        "others": [str(p) for p in others],
        "others_mb": round(sum(f.stat().st_size for p in others for f in p.iterdir()) / 2**20, 1),
    }


def estimated_bytes(paths: list[Path]) -> int:
    """About how much memory the in-memory path needs for these files."""
    from bigmodel_cli.data.sources import table_format

    total = 0
    for p in paths:
        size = p.stat().st_size if p.is_file() else 0
        try:
            fmt, comp = table_format(p)
        except DataError:
            fmt, comp = "csv", None
        total += size * (4 if comp else 1) * (3 if fmt == "parquet" else 1)
    return total * 2  # the DataFrame, then the float32 arrays and the tensors made of them


def memory_budget() -> int:
    """A quarter of this machine's RAM."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30
