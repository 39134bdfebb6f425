"""Where predictions go: one Writer for CSV/TSV, Parquet and JSON Lines files (local,
remote or stdout), written block by block under a temporary name, renamed at the end."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from bigmodel_cli.data.sources import table_format
from bigmodel_cli.errors import PathError


class Writer:
    """Writes output blocks in order to a temporary file, renamed on close."""

    def __init__(self, output: str, force: bool):
        self.output = output
        self.tmp: str | None = None
        if output == "-":
            self.fmt, self.comp = "csv", None
            self.sink: Any = sys.stdout.buffer
        else:
            out = Path(output)
            if out.exists() and not force:
                raise PathError(
                    f"output {out} exists already",
                    hint="pass --force to overwrite it, or choose another path",
                )
            if not out.parent.is_dir():
                raise PathError(
                    f"output folder {out.parent} does not exist",
                    hint=f"create it first: mkdir -p {out.parent}",
                )
            self.fmt, self.comp = table_format(out)
            if self.fmt == "npz":
                raise PathError(f"{out}: predictions are written as csv, tsv, parquet or jsonl")
            import tempfile

            fd, self.tmp = tempfile.mkstemp(
                prefix=f".{out.name}.", suffix=".partial", dir=out.parent
            )
            os.close(fd)
            self.sink = None
        self._w: Any = None

    @property
    def empty(self) -> bool:
        """Nothing written yet (not even a header)."""
        return self._w is None

    def _open(self, schema: Any) -> None:
        import pyarrow as pa

        target = (
            self.sink if self.tmp is None else pa.output_stream(self.tmp, compression=self.comp)
        )
        self._stream = target
        if self.fmt in ("csv", "tsv"):
            import pyarrow.csv as pc

            delim = "\t" if self.fmt == "tsv" else ","
            plain = not any(ch in name for name in schema.names for ch in (delim, '"', "\n", "\r"))
            self._w = pc.CSVWriter(
                target,
                schema,
                write_options=pc.WriteOptions(
                    delimiter=delim,
                    quoting_style="needed",
                    quoting_header="none" if plain else "needed",
                ),
            )
        elif self.fmt == "parquet":
            import pyarrow.parquet as pq

            self._w = pq.ParquetWriter(target, schema)
        else:
            self._w = "jsonl"

    def write(self, table: Any) -> None:
        if self._w is None:
            self._open(table.schema)
        if self._w == "jsonl":
            import json

            names = table.schema.names
            cols = [table.column(n).to_pylist() for n in names]
            lines = "".join(
                json.dumps(dict(zip(names, vals)), allow_nan=False) + "\n" for vals in zip(*cols)
            )
            self._stream.write(lines.encode())
        else:
            self._w.write_table(table) if hasattr(self._w, "write_table") else self._w.write(table)

    def close(self, ok: bool) -> None:
        try:
            if self._w not in (None, "jsonl"):
                self._w.close()
            if self._w is not None and self.tmp is not None:
                self._stream.close()
            elif self._w is not None and self.tmp is None:
                self.sink.flush()
        finally:
            if self.tmp is not None:
                if ok:
                    if self._w is None:  # no rows: still write a valid empty file
                        Path(self.tmp).write_bytes(b"")
                    from bigmodel_cli.runs import plain_mode

                    plain_mode(Path(self.tmp))
                    os.replace(self.tmp, self.output)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(self.tmp)
