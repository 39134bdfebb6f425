"""The one reader of table files (bigmodel_cli.data.reader): training's frames are typed
as pandas.read_csv types them, alike whole, in part or in chunks, and a bad file is one
error naming its line, in training as in predict."""

from __future__ import annotations

import gzip
import lzma

import numpy as np
import pandas as pd
import pytest

from bigmodel_cli.data import reader
from bigmodel_cli.errors import DataError

# One column per way a cell can be spelled; each is typed by pandas as noted.
CELLS = {
    "ints": [" 5", "7 ", "8", "9"],  # int64 (trimmed)
    "gapped_ints": ["1", "", "3", "NA"],  # float64
    "floats": ["1e5", "inf", "-inf", "2.5"],  # float64
    "truth": ["True", "false", "TRUE", "False"],  # bool
    "gapped_truth": ["True", "", "false", "true"],  # object
    "hex": ["0x10", "0x11", "3", "4"],  # text (pyarrow alone reads 16)
    "dates": ["2020-01-05", "2020-02-01", "2021-03-04", ""],  # text (pyarrow alone: date32)
    "stamps": ["2020-01-05 10:00", "2020-01-05 11:00:00", "2020-01-05T12:00:00Z", "2020-01-05"],
    "words": ["a", "b", " c", ""],  # text, as written
    "empty": ["", "", "NA", ""],  # float64, all missing
    "mixed": ["1", "0", "true", "0"],  # text
    "blank": ["1", " ", "3", "4"],  # text
    "": ["x", "y", "z", "w"],  # no name: 'Unnamed: 12'
    "words2": ["p", "q", "r", "s"],
}


def _csv(rows: int = 4) -> str:
    names = list(CELLS) + ["words2"]  # a repeated name: 'words2.1'
    lines = [",".join(names)]
    for i in range(rows):
        lines.append(",".join(CELLS[c][i % 4] for c in CELLS) + f",{i}")
    return "\n".join(lines) + "\n"


def _values(s: pd.Series) -> list:
    return s.astype(object).where(s.notna(), None).tolist()


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b) > 0
    for c in a.columns:
        assert str(a[c].dtype) == str(b[c].dtype), (c, a[c].dtype, b[c].dtype)
        assert _values(a[c]) == _values(b[c]), c


def test_a_table_reads_as_pandas_reads_it(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(_csv())
    ours = reader.read_frame(p, "csv", None, ",")
    _same(pd.read_csv(p), ours)
    assert ours["hex"].tolist()[:2] == ["0x10", "0x11"] and ours["ints"].dtype == np.int64
    assert ours["dates"].iloc[0] == "2020-01-05"  # a date stays as written
    assert "Unnamed: 12" in ours.columns and "words2.1" in ours.columns


def test_whole_first_rows_and_chunks_type_alike(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(_csv(rows=3000))
    whole = reader.read_frame(p, "csv", None, ",")
    _same(pd.read_csv(p), whole)
    first = reader.read_frame(p, "csv", None, ",", nrows=100)
    _same(whole.head(100), first)
    chunks = list(reader.frame_chunks(p, "csv", None, ",", chunk_rows=700))
    assert [len(c) for c, _ in chunks] == [700, 700, 700, 700, 200]
    for c, _ in chunks:
        assert c.dtypes.astype(str).tolist() == whole.dtypes.astype(str).tolist()
    _same(whole, pd.concat([c for c, _ in chunks]))
    assert chunks[-1][0].index[0] == 2800  # each chunk knows its rows' places
    offsets = [at for _, at in chunks]
    assert offsets == sorted(offsets) and offsets[-1] == p.stat().st_size


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".xz", lzma.open)])
def test_compressed_tables_read_as_the_plain_one(tmp_path, suffix, opener):
    plain = tmp_path / "t.csv"
    plain.write_text(_csv(rows=50))
    packed = tmp_path / f"t.csv{suffix}"
    with opener(packed, "wt") as f:
        f.write(_csv(rows=50))
    comp = {".gz": "gzip", ".xz": "xz"}[suffix]
    _same(reader.read_frame(plain, "csv", None, ","), reader.read_frame(packed, "csv", comp, ","))


def test_a_bad_row_is_one_error_naming_its_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,2\n3,4\n5,6,7\n8,9\n")
    for read in (
        lambda: reader.read_frame(p, "csv", None, ","),
        lambda: list(reader.frame_chunks(p, "csv", None, ",", chunk_rows=1)),
    ):
        with pytest.raises(DataError, match="line 4 has 3 fields, the header has 2"):
            read()
    p.write_bytes("a,b\n1,x\n2,y\n3,".encode() + "caf\xe9".encode("latin-1") + b"\n")
    with pytest.raises(DataError, match="line 4 is not UTF-8"):
        reader.read_frame(p, "csv", None, ",")


def test_typed_files_keep_their_types(tmp_path):
    """Parquet and JSON Lines carry types: their text is not retyped; a JSON timestamp
    stays text, as a CSV date does."""
    df = pd.DataFrame({"code": ["1", "2", "3"], "n": [1.5, 2.0, None]})
    df.to_parquet(tmp_path / "t.parquet")
    got = reader.read_frame(tmp_path / "t.parquet", "parquet", None, ",")
    assert got["code"].tolist() == ["1", "2", "3"] and got["n"].isna().tolist()[2]
    (tmp_path / "t.jsonl").write_text(
        '{"when": "2020-01-05T10:00:00", "n": 1}\n{"when": "2020-01-06T11:00:00", "n": 2}\n'
    )
    got = reader.read_frame(tmp_path / "t.jsonl", "jsonl", None, ",")
    assert got["when"].tolist() == ["2020-01-05 10:00:00", "2020-01-06 11:00:00"]
    assert got["n"].tolist() == [1, 2]


def test_pandas_missing_spellings_are_missing_and_a_header_alone_has_no_rows(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b\nNA,x\nnull,None\n<NA>,n/a\n4,y\n")
    got = reader.read_frame(p, "csv", None, ",")
    _same(pd.read_csv(p), got)
    assert got["a"].isna().sum() == 3 and got["b"].isna().sum() == 2
    p.write_text("a,b\n")
    empty = reader.read_frame(p, "csv", None, ",")
    assert list(empty.columns) == ["a", "b"] and len(empty) == 0


def test_header_and_lines_of_a_buffer():
    raw = b'a,b\n1,"two\nlines"\n3,4\n'
    import pyarrow as pa

    factory = lambda: pa.BufferReader(raw)  # noqa: E731
    assert reader.header(factory, ",") == ["a", "b"]
    line_of = reader.line_finder(factory, ",")
    assert [line_of(0), line_of(1)] == [2, 4]


def test_a_hex_cell_far_down_keeps_its_column_text(tmp_path):
    """pyarrow's integer cast reads 0x1F as 31; pandas keeps such a column as text, and
    so do we, even where the first cells (the ones looked at first) are plain integers."""
    p = tmp_path / "t.csv"
    cells = [str(i) for i in range(200)]
    cells[150] = "0x1F"
    p.write_text("n\n" + "\n".join(cells) + "\n")
    got = reader.read_frame(p, "csv", None, ",")
    _same(pd.read_csv(p), got)
    assert got["n"].iloc[150] == "0x1F"
