"""Which columns drive a model: permutation importance over raw input columns, and
per-row occlusion attributions (per column, and per token for text).

Both run on the engine predict uses (onnxruntime or TensorFlow), on the model's
raw-column inputs, so a category or text column counts as one column whatever its
encoding, and the two engines give the same figures.

- **Global** (Breiman 2001; Fisher, Rudin & Dominici 2019): the run's monitored
  metric on the rows as they are, then with one column's values shuffled across
  the rows, ``repeats`` times per column. A column's importance is how much worse
  the metric gets (positive: the model uses it), with the spread over repeats.
- **Per row**: the change in the row's output (the predicted class's probability,
  the positive class's for a binary run, the value for a regression) when one
  column is set to a baseline (a number column's median, an empty category or
  text), and for text, when one token is left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bigmodel_cli.errors import DataError

MAX_TOKENS = 48  # a text's tokens scored per row


@dataclass
class Explanation:
    metric: str
    higher_is_better: bool
    baseline: float  # the metric on the rows as they are
    importance: dict[str, float]
    std: dict[str, float]
    repeats: int
    rows: int
    seconds: float
    engine: str
    per_row: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plot: Any = None  # plots/importance.png

    def to_json(self) -> dict[str, Any]:
        doc = {"importance": self.importance, "std": self.std, "metric": self.metric, "higher_is_better": self.higher_is_better, "baseline": self.baseline, "repeats": self.repeats, "rows": self.rows, "seconds": round(self.seconds, 3), "engine": self.engine}
        if self.per_row:
            doc["per_row"] = self.per_row
        return doc


def read_rows(path: str, spec: Any, target: str, max_rows: int, seed: int) -> tuple[Any, list[Any], list[str]]:
    """(pyarrow table of the features, raw targets, notes): predict's reader, with the target kept."""
    import copy

    import pyarrow as pa

    from bigmodel_cli.inference.predict import iter_blocks

    spec = copy.deepcopy(spec)
    spec.keep_columns = [target]
    spec.id_columns = []
    try:
        table = pa.Table.from_batches(list(iter_blocks(path, spec)))
    except DataError as e:
        if f"'{target}'" in e.message:
            raise DataError(f"{path} has no target column '{target}': explain measures the model against it", hint="pass labelled rows (the format of the run's test data)") from None
        raise
    notes = []
    y = table.column(target).to_pylist()
    keep = [i for i, v in enumerate(y) if v not in (None, "")]
    if len(keep) < len(y):
        notes.append(f"{len(y) - len(keep):,} row(s) without a '{target}' were left out")
    if len(keep) > max_rows:
        keep = sorted(np.random.default_rng(seed).choice(keep, max_rows, replace=False).tolist())
        notes.append(f"a sample of {max_rows:,} of the {len(y):,} rows was used (--max-rows)")
    if not keep:
        raise DataError(f"{path} has no row with a '{target}'")
    table = table.take(pa.array(keep))
    return table.drop_columns([target]), [y[i] for i in keep], notes


def column_slots(spec: Any, x: Any) -> dict[str, tuple[str | None, int | None]]:
    """Each raw column -> where it is in the model's inputs: (dict key or None, matrix column or None)."""
    from bigmodel_cli.features.text import ids_name
    from bigmodel_cli.model.builders import raw_input_name

    slots: dict[str, tuple[str | None, int | None]] = {}
    numeric = spec.numeric
    for c in spec.features:
        if c in numeric:
            slots[c] = ("features" if isinstance(x, dict) else None, numeric.index(c))
        else:
            slots[c] = (ids_name(c) if spec.tokenizers is not None else raw_input_name(c), None)
    return slots


def _permuted(x: Any, slot: tuple[str | None, int | None], order: np.ndarray) -> Any:
    key, j = slot
    if key is None:  # a plain matrix: its column j
        out = x.copy()
        out[:, j] = x[order, j]
        return out
    out = dict(x)
    if j is None:
        out[key] = x[key][order]
    else:
        m = x[key].copy()
        m[:, j] = x[key][order, j]
        out[key] = m
    return out


def outputs(infer: Callable[[Any], np.ndarray], x: Any, batch: int) -> np.ndarray:
    from bigmodel_cli.inference.predict import _rows

    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    return np.concatenate([np.asarray(infer(_rows(x, s, s + batch))) for s in range(0, n, batch)])


def permutation_importance(infer, spec: Any, x: Any, score: Callable[[np.ndarray], float], higher: bool, repeats: int, seed: int, batch: int) -> tuple[float, dict[str, float], dict[str, float]]:
    base = score(outputs(infer, x, batch))
    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    rng = np.random.default_rng(seed)
    importance, std = {}, {}
    for column, slot in column_slots(spec, x).items():
        drops = []
        for _ in range(repeats):
            value = score(outputs(infer, _permuted(x, slot, rng.permutation(n)), batch))
            drops.append(base - value if higher else value - base)
        importance[column], std[column] = float(np.mean(drops)), float(np.std(drops))
    ranked = sorted(importance, key=lambda c: -importance[c])
    return base, {c: importance[c] for c in ranked}, {c: std[c] for c in ranked}


def _target(task: str, out: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(the output attributed, the predicted class or None) per row."""
    if task == "regression":
        return out[:, 0], np.zeros(len(out), np.int64)
    if task == "binary":
        return out[:, 0], (out[:, 0] > threshold).astype(np.int64)
    k = out.argmax(axis=1)
    return out[np.arange(len(out)), k], k


def tokens_of(text: str) -> list[str]:
    parts = text.split()
    return parts if len(parts) > 1 or not text or " " in text.strip() else list(text.strip())


def row_attributions(infer, spec: Any, table: Any, rows: int, batch: int, model_inputs: Callable[[Any], Any], texts: set[str]) -> list[dict[str, Any]]:
    """Occlusion per column (and per token of each of the ``texts`` columns) of the first ``rows`` rows."""
    import pyarrow as pa

    baseline = {}
    for c in spec.features:
        col = table.column(c)
        if c in spec.numeric and pa.types.is_floating(col.type):
            values = np.asarray(col.to_numpy(zero_copy_only=False), np.float64)
            baseline[c] = float(np.nanmedian(values)) if np.isfinite(values).any() else 0.0
        else:
            baseline[c] = "" if c not in spec.date_formats else _mode(col.to_pylist())
    out = []
    for r in range(min(rows, table.num_rows)):
        row = {c: table.column(c)[r].as_py() for c in table.column_names}
        variants = [row] + [{**row, c: baseline[c]} for c in spec.features]
        token_lists = {c: tokens_of(str(row[c] or ""))[:MAX_TOKENS] for c in spec.features if c in texts}
        for c, toks in token_lists.items():
            variants += [{**row, c: " ".join(toks[:i] + toks[i + 1:]) if " " in str(row[c]) else "".join(toks[:i] + toks[i + 1:])} for i in range(len(toks))]
        batch_table = pa.Table.from_pylist(variants, schema=table.schema)
        y = outputs(infer, model_inputs(batch_table.combine_chunks().to_batches()[0]), batch)
        value, predicted = _target(spec.task, y, spec.threshold)
        v0 = float(value[0])
        doc: dict[str, Any] = {"row": r + 1, "output": v0, "attributions": {c: float(v0 - value[1 + i]) for i, c in enumerate(spec.features)}}
        if spec.task == "classification":  # the predicted class's probability, kept fixed across the variants
            k = int(predicted[0])
            full = y[:, k]
            doc["output"] = float(full[0])
            doc["attributions"] = {c: float(full[0] - full[1 + i]) for i, c in enumerate(spec.features)}
            doc["class"] = (spec.classes or [])[k] if spec.classes else k
            value = full
        at = 1 + len(spec.features)
        for c, toks in token_lists.items():
            doc.setdefault("tokens", {})[c] = [[t, float(value[0] - value[at + i])] for i, t in enumerate(toks)]
            at += len(toks)
        out.append(doc)
    return out


def _mode(values: list[Any]) -> Any:
    from collections import Counter

    present = [v for v in values if v not in (None, "")]
    return Counter(present).most_common(1)[0][0] if present else ""
