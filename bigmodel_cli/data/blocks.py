"""Streaming tables: converted once into float32 block files, read back in a seeded order.

**Conversion** (``bigmodel prepare``, or the first streamed ``train``) reads
the training files chunk by chunk (CSV/TSV/Parquet/JSONL, ``.gz`` allowed),
checks every value as the in-memory path does (file and line of a bad value),
and writes each training row as float32 ``[numbers..., category codes..., date
parts..., text ids..., target]`` (dates and text ids through the one road; a
table with text is read twice, the first pass fitting the vocabularies) into one
of :data:`PARTITIONS` canonical partitions: row r goes to
partition r % 12, and a partition is a series of block files of
``data.block_mb``. The same pass merges the column statistics (mean and
variance exactly, the median from a uniform sample of
:data:`SAMPLE_ROWS`), counts category values and labels, and holds out the
validation fraction by a hash of (seed, row). ``manifest.json`` records the
schema, the raw value codes, the statistics, the blocks and a key made of the
files' names, sizes and modification times and of the settings that change
the blocks; the cache folder is reused while the key matches.

Category values and labels are stored as first-seen codes; the maps to the
model's class indices and category ids are made when the cache is *read*
(:meth:`.block_reader.Prepared.remaps`), so a resumed run reuses its own encoders.

**Order.** Partition c of epoch e reads its blocks in the order
``rng([seed, e, pass, c]).permutation``, and shuffles rows within windows of
``data.shuffle_blocks`` blocks (``rng([seed, e, pass, c, window])``). Epoch
position p takes the next row of partition p % 12; so, with ``shuffle:
false``, the order is the files' order. Every position is a pure function of
(seed, epoch, position): resuming at step s skips s * batch positions
without reading them.

**Workers.** Worker i of W (W divides 12) owns the partitions c with
c % W == i, which hold exactly the positions p with p % W == i, its share of
every global batch (``pipeline.Streamed``). It reads only those blocks.

**Memory.** A reader holds one window per partition it owns: at most
12 / W * shuffle_blocks * block_mb, whatever the data size. Blocks are read
with plain reads into one buffer per window (:func:`.block_reader.read_block`), never
memory-mapped: mapped pages count as resident memory.

Example::

    prepared = block_cache.prepare(cfg, base_dir)  # converts once, then reuses
    split = prepared.split("train", remaps)  # a StreamedSplit for train.fit
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bigmodel_cli.config.experiment import ExperimentConfig
from bigmodel_cli.errors import DataError
from bigmodel_cli.features.number import ColumnStats, grid_quantiles
from bigmodel_cli.data.block_format import PARTITIONS, VERSION, Schema
from bigmodel_cli.features.date import PARTS as DATE_PARTS

# parts with these (year mean, std, days mean, std) keep the year and the days as they are
RAW_DATE_STATS = (0.0, 1.0, 0.0, 1.0)
TEXT_DIR = "text"  # the text columns' tokenisers, in the cache folder
SAMPLE_ROWS = 100_000  # training rows kept (a uniform sample) for medians
CHUNK_ROWS = 100_000  # rows read from a file at a time

Progress = Callable[[int, int, int], None]  # (bytes read, bytes in all, rows)


# ------------------------------------------------------------------ hashing


def mix64(seed: int, rows: np.ndarray) -> np.ndarray:
    """splitmix64 of (seed, row number): uniform uint64, the same on every machine."""
    z = rows.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def held_out(seed: int, rows: np.ndarray, fraction: float) -> np.ndarray:
    """Rows of the validation fraction: a hash of (seed, row) below fraction * 2**64."""
    with np.errstate(over="ignore"):
        return mix64(seed, rows) < np.uint64(min(int(fraction * 2.0**64), 2**64 - 1))


# ------------------------------------------------------------------ reading files


def read_chunks(
    path: Path, chunk_rows: int = CHUNK_ROWS, delimiter: str = "auto"
) -> Iterator[tuple[Any, int]]:
    """(DataFrame chunk, bytes of the file read so far); each chunk's index is
    its rows' positions in the file and ``attrs`` say where it came from."""
    from bigmodel_cli.data.reader import frame_chunks
    from bigmodel_cli.data.sources import file_delimiter, read_error, table_format

    fmt, compression = table_format(path)
    if fmt == "npz":
        raise DataError(
            f"{path}: an .npz file cannot be streamed",
            hint="use csv, tsv, parquet or jsonl shards, or data.stream: false",
        )
    if not path.is_file():
        raise DataError(
            f"{path} does not exist",
            hint="check the path (relative paths are from the experiment folder)",
        )
    if path.stat().st_size == 0:
        raise DataError(
            f"{path} is empty", hint="the file needs a header line and at least one row"
        )
    where = {"source": str(path), "line_offset": 2 if fmt in ("csv", "tsv") else 1}
    sep = file_delimiter(path, fmt, compression, delimiter) if fmt in ("csv", "tsv") else ","
    try:
        for df, at in frame_chunks(path, fmt, compression, sep, chunk_rows):
            df.attrs.update(where)
            yield df, at
    except (DataError, OSError, ValueError) as e:
        raise read_error(e, path, fmt) from None


# ------------------------------------------------------------------ writing blocks


class BlockWriter:
    """Rows -> block files of ``block_rows`` rows, dealt to ``parts`` partitions by row number."""

    def __init__(self, folder: Path, prefix: str, width: int, block_rows: int, parts: int):
        self.folder, self.prefix, self.width, self.block_rows, self.parts = (
            folder,
            prefix,
            width,
            block_rows,
            parts,
        )
        self.buffers = [np.empty((block_rows, width), np.float32) for _ in range(parts)]
        self.filled = [0] * parts
        self.blocks: list[list[list[Any]]] = [
            [] for _ in range(parts)
        ]  # per partition: [file, rows]
        self.rows = 0

    def add(self, rows: np.ndarray) -> None:
        for c in range(self.parts):
            mine = rows[(c - self.rows) % self.parts :: self.parts]
            while len(mine):
                room = self.block_rows - self.filled[c]
                take = mine[:room]
                self.buffers[c][self.filled[c] : self.filled[c] + len(take)] = take
                self.filled[c] += len(take)
                mine = mine[room:]
                if self.filled[c] == self.block_rows:
                    self._flush(c)
        self.rows += len(rows)

    def _flush(self, c: int) -> None:
        if not self.filled[c]:
            return
        name = f"{self.prefix}-p{c:02d}-{len(self.blocks[c]):06d}.f32"
        self.buffers[c][: self.filled[c]].tofile(self.folder / name)
        self.blocks[c].append([name, self.filled[c]])
        self.filled[c] = 0

    def close(self) -> list[list[list[Any]]]:
        for c in range(self.parts):
            self._flush(c)
        self.buffers = []
        return self.blocks


# ------------------------------------------------------------------ the conversion


@dataclass
class Codes:
    """First-seen codes of a column's values (0: missing; k + 1: the k-th value seen)."""

    keys: list[Any] = field(default_factory=list)  # the value (labels: as read, for sorting)
    index: dict[str, int] = field(default_factory=dict)  # its canonical key -> k
    counts: list[int] = field(default_factory=list)  # training rows holding it

    def encode(
        self, values: np.ndarray, key: Callable[[Any], str | None], keep_value: bool = False
    ) -> np.ndarray:
        """Codes of ``values`` (0 for a missing one), new values appended."""
        import pandas as pd

        codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
        mapped = np.zeros(len(uniques) + 1, np.float32)  # slot 0: pandas' NA (-1 + 1)
        for j, u in enumerate(uniques):
            k = key(u)
            if k is None:
                continue
            if k not in self.index:
                self.index[k] = len(self.keys)
                self.keys.append(_plain(u) if keep_value else k)
                self.counts.append(0)
            mapped[j + 1] = self.index[k] + 1
        return mapped[codes + 1]

    def count(self, codes: np.ndarray) -> None:
        found = np.bincount(codes.astype(np.int64), minlength=len(self.keys) + 1)[1:]
        for k, n in enumerate(found.tolist()):
            self.counts[k] += n


def _plain(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    return int(v) if isinstance(v, float) and v.is_integer() else v


class Sample:
    """The training rows with the SAMPLE_ROWS smallest hashes: a uniform
    sample, the same whatever the chunking."""

    def __init__(self, seed: int, columns: int):
        self.seed = seed
        self.keys = np.zeros(0, np.uint64)
        self.values = np.zeros((0, columns), np.float32)

    def add(self, rows: np.ndarray, x: np.ndarray) -> None:
        keys = np.concatenate([self.keys, mix64(self.seed + 1, rows)])
        values = np.concatenate([self.values, x])
        if len(keys) > SAMPLE_ROWS:
            keep = np.argpartition(keys, SAMPLE_ROWS)[:SAMPLE_ROWS]
            keys, values = keys[keep], values[keep]
        self.keys, self.values = keys, values

    def medians(self) -> np.ndarray:
        """Of the finite values: the same computation as the in-memory statistics."""
        return ColumnStats.of(self.values).median


class Converter:
    """One pass over the files: checks, codes, statistics and block files."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        schema: Schema,
        folder: Path,
        progress: Progress | None,
        total_bytes: int,
        texts: dict[str, Any] | None = None,
    ):
        """``texts``: each text column's fitted tokeniser; a table with text columns and
        none is converted twice: this first pass fits them (:meth:`text_fit`) and writes
        nothing."""
        from bigmodel_cli.features.text_type import TextFitter

        self.cfg, self.schema, self.folder = cfg, schema, folder
        self.texts = texts or {}
        self.fitting = bool(schema.texts) and texts is None
        self.fitters = {c: TextFitter(c, cfg) for c in schema.texts} if self.fitting else {}
        width = schema.width
        self.block_rows = max(1, int(cfg.data.block_mb * 2**20) // (4 * width))
        self.train = BlockWriter(folder, "train", width, self.block_rows, PARTITIONS)
        self.valid = BlockWriter(folder, "valid", width, self.block_rows, 1)
        self.labels = Codes()
        self.cats = {c: Codes() for c in schema.categories}
        self.boolean: dict[str, bool] = {}
        n_num = len(schema.numeric)
        self.stats = ColumnStats.empty(n_num)
        self.y_stats = ColumnStats.empty(1)
        self.sample = Sample(cfg.seed, n_num)
        # a date's year and days since 1970, over the training rows: its standardisation
        self.date_stats = {c: ColumnStats.empty(2) for c in schema.dates}
        self.rows_read = 0  # every data row of every training file: the row number hashed
        self.dropped: dict[str, int] = {}
        self.progress, self.total_bytes, self.done_bytes = progress, total_bytes, 0
        self.columns: list[str] | None = None

    def add_file(self, path: Path, role: str) -> None:
        from bigmodel_cli.data import tables as D
        from bigmodel_cli.data.sources import _key
        from bigmodel_cli.features.category import canonical, is_boolean

        s, cfg = self.schema, self.cfg
        lenient = cfg.data.missing == "impute"
        first = True
        base_bytes = self.done_bytes
        for df, at in read_chunks(path, delimiter=cfg.data.delimiter):
            if first:
                if self.columns is not None and list(df.columns) != self.columns:
                    raise DataError(
                        f"data.{role}: {path} has columns {list(df.columns)[:8]}, but the "
                        f"first file has {self.columns[:8]}",
                        hint="every shard needs the same header",
                    )
                self.columns = self.columns or list(df.columns)
                D.check_columns(df, s.features, "feature")
                D.check_columns(df, [s.target], "target")
                for c in s.categories:
                    self.boolean.setdefault(c, is_boolean(df[c].to_numpy(dtype=object)))
                first = False
            x = (
                D.numeric_matrix(df, s.numeric, lenient=lenient)
                if s.numeric
                else np.zeros((len(df), 0), np.float32)
            )
            cat = [
                self.cats[c].encode(
                    df[c].to_numpy(dtype=object), lambda v, b=self.boolean[c]: canonical(v, b)
                )
                for c in s.categories
            ]
            dates = self._date_parts(df, lenient)
            if s.task == "regression":
                y = D.numeric_matrix(df, [s.target])[:, 0]
            else:
                y = self.labels.encode(df[s.target].to_numpy(dtype=object), _key, keep_value=True)
                y = np.where(y == 0, np.nan, y - 1).astype(np.float32)  # NaN: a missing label
            x, y, keep, no_target = D.handle_missing(df, x, y, s.numeric, cfg, True)
            if no_target:
                src = df.attrs.get("source", "data")
                self.dropped[src] = self.dropped.get(src, 0) + no_target
            rows = np.arange(self.rows_read, self.rows_read + len(df), dtype=np.int64)
            if keep is not None:
                rows, cat, dates = rows[keep], [c[keep] for c in cat], dates[keep]
            if self.fitting:  # the first pass: the text columns' vocabularies, nothing written
                self._fit_texts(df, keep, role, rows)
                if role == "train":
                    self.rows_read += len(df)
                self.done_bytes = base_bytes + at
                if self.progress:
                    self.progress(self.done_bytes, self.total_bytes, 0)
                continue
            ids = self._text_ids(df, lenient)
            if keep is not None:
                ids = ids[keep]
            if role == "train":
                self.rows_read += len(df)
            block = np.concatenate(
                [
                    x,
                    np.stack(cat, axis=1) if cat else np.zeros((len(x), 0), np.float32),
                    dates,
                    ids,
                    y[:, None],
                ],
                axis=1,
            ).astype(np.float32)
            val = self._validation_rows(rows, role)
            if role == "validation":
                self.valid.add(block)
            else:
                tr = ~val if val is not None else slice(None)
                if val is not None and val.any():
                    self.valid.add(block[val])
                self._learn(block[tr], x[tr], y[tr], rows[tr], [c[tr] for c in cat], dates[tr])
                self.train.add(block[tr])
            self.done_bytes = base_bytes + at
            if self.progress:
                self.progress(self.done_bytes, self.total_bytes, self.train.rows + self.valid.rows)
        self.done_bytes = base_bytes + path.stat().st_size

    def _learn(
        self,
        block: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        rows: np.ndarray,
        cat: list[np.ndarray],
        dates: np.ndarray,
    ) -> None:
        """Statistics, counts and the median sample, from training rows only."""
        if not len(block):
            return
        if x.shape[1]:
            self.stats = self.stats.merge(ColumnStats.of(x))
            self.sample.add(rows, x)
        if self.schema.task == "regression":
            self.y_stats = self.y_stats.merge(ColumnStats.of(y[:, None]))
        else:
            self.labels.count(y + 1)
        for c, codes in zip(self.schema.categories, cat):
            self.cats[c].count(codes)
        for j, c in enumerate(self.schema.dates):
            part = dates[:, j * DATE_PARTS : (j + 1) * DATE_PARTS]
            self.date_stats[c] = self.date_stats[c].merge(ColumnStats.of(part[:, [0, -1]]))

    def _validation_rows(self, rows: np.ndarray, role: str) -> np.ndarray | None:
        """Which of these training-file rows the validation fraction holds out."""
        cfg = self.cfg
        if role != "train" or not isinstance(cfg.data.validation, float) or not cfg.data.validation:
            return None
        return held_out(cfg.seed, rows, float(cfg.data.validation))

    def _fit_texts(self, df: Any, keep: np.ndarray | None, role: str, rows: np.ndarray) -> None:
        """Each text column's vocabulary from the training rows; its width from every row."""
        val = self._validation_rows(rows, role)
        for c, fitter in self.fitters.items():
            values = df[c].to_numpy(dtype=object)
            values = values[keep] if keep is not None else values
            fitter.measure(values)
            if role == "train":
                fitter.add(values[~val] if val is not None else values)

    def text_fit(self) -> tuple[dict[str, Any], dict[str, int]]:
        """(tokeniser, ids a row holds) of each text column, after the first pass."""
        toks = {c: f.finish() for c, f in self.fitters.items()}
        return toks, {c: f.width for c, f in self.fitters.items()}

    def _text_ids(self, df: Any, lenient: bool) -> np.ndarray:
        """float32 [rows, each text's width]: its ids through the one road, zero-padded
        (padding weighs nothing in the bag and is masked in the mean)."""
        from bigmodel_cli.data.tables import encode_inputs
        from bigmodel_cli.features.text import ids_name

        s = self.schema
        if not s.texts:
            return np.zeros((len(df), 0), np.float32)
        x, _ = encode_inputs(df, s.texts, s.columns, self.texts, lenient)
        out = np.zeros((len(df), sum(s.text_widths[c] for c in s.texts)), np.float32)
        at = 0
        for c in s.texts:
            ids = x[ids_name(c)][:, : s.text_widths[c]]
            out[:, at : at + ids.shape[1]] = ids
            at += s.text_widths[c]
        return out

    def _date_parts(self, df: Any, lenient: bool) -> np.ndarray:
        """float32 [rows, 8 a date column]: each date's parts through the one road (a value
        that is not a date is the error every command gives), its year and days since 1970
        left unstandardised until the training rows' statistics are known (the reader
        standardises them)."""
        from bigmodel_cli.data.tables import encode_inputs
        from bigmodel_cli.features.date import DateEncoder
        from bigmodel_cli.features.text import ids_name

        s = self.schema
        if not s.dates:
            return np.zeros((len(df), 0), np.float32)
        raw = {c: DateEncoder(s.columns[c], RAW_DATE_STATS) for c in s.dates}
        x, _ = encode_inputs(df, s.dates, s.columns, raw, lenient)
        return np.concatenate([x[ids_name(c)] for c in s.dates], axis=1).astype(np.float32)

    def _save_texts(self) -> dict[str, Any] | None:
        """The text columns' tokenisers beside the blocks (their ids are in
        them), and what ``auto`` chose for each."""
        if not self.texts:
            return None
        from bigmodel_cli.features.registry import save_tokenizers

        save_tokenizers(self.folder / TEXT_DIR, self.texts)
        return {"folder": TEXT_DIR, "chosen": {c: t.chosen for c, t in self.texts.items()}}

    def _date_encoders(self) -> dict[str, dict[str, Any]]:
        """Each date column's format and (year mean, std, days mean, std): what
        :meth:`DateEncoder.fit` finds on the same training rows."""
        out = {}
        for c, st in self.date_stats.items():
            if not st.count[0]:
                raise DataError(f"date column '{c}' has no readable date in the training rows")
            sd = [float(v) if v > 0 else 1.0 for v in st.std]
            stats = [float(st.mean[0]), sd[0], float(st.mean[1]), sd[1]]
            out[c] = {"format": self.schema.columns[c], "stats": stats}
        return out

    def finish(
        self, key: str, sources: dict[str, list[dict[str, Any]]], seconds: float
    ) -> dict[str, Any]:
        s = self.schema
        train_blocks, valid_blocks = self.train.close(), self.valid.close()[0]
        if self.train.rows == 0:
            raise DataError(
                f"data.train: no training rows are left of {self.rows_read:,} read",
                hint="check data.missing and data.validation",
            )
        self.stats.median = self.sample.medians()
        self.stats.quantiles = grid_quantiles(self.sample.values)
        return {
            "version": VERSION,
            "key": key,
            "sources": sources,
            "features": s.features,
            "types": s.columns,
            "target": s.target,
            "task": s.task,
            "layout": {
                "numeric": s.numeric,
                "categories": s.categories,
                "dates": s.dates,
                "texts": s.texts,
                "text_widths": s.text_widths,
                "width": s.width,
            },
            "text": self._save_texts(),
            "dates": self._date_encoders(),
            "block_rows": self.block_rows,
            "partitions": PARTITIONS,
            "train": {"rows": self.train.rows, "blocks": train_blocks},
            "validation": {"rows": self.valid.rows, "blocks": valid_blocks}
            if self.valid.rows
            else None,
            "labels": {"values": self.labels.keys, "counts": self.labels.counts}
            if s.task != "regression"
            else None,
            "categories": {
                c: {
                    "values": self.cats[c].keys,
                    "counts": self.cats[c].counts,
                    "boolean": self.boolean.get(c, False),
                }
                for c in s.categories
            },
            "stats": self.stats.to_json(),
            "target_stats": self.y_stats.to_json() if s.task == "regression" else None,
            "rows_read": self.rows_read,
            "dropped": sorted(self.dropped.items()),
            "bytes": (self.train.rows + self.valid.rows) * s.width * 4,
            "source_bytes": self.total_bytes,
            "seconds": round(seconds, 3),
        }


# ------------------------------------------------------------------ prepare: convert or reuse


# ------------------------------------------------------------------ reading blocks back
