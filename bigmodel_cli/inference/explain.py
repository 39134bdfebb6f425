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
  column is set to the run's baseline (:func:`baselines`: a number column's
  training median, a date column's commonest training date, an empty category or
  text), and for text, when one token is left out. Occlusion rather than
  integrated gradients: it needs no gradient, so the ONNX fast path (which has
  none) and TensorFlow give the same figures, and a one-hot category (no
  embedding to integrate along) is scored like any other column.
- **Images** (``data.image_shape``): a column is a region of a grid over the image
  (permutation importance shuffles the region's pixels across images), and each
  row's saliency map is the drop in the predicted class's probability when a
  sliding patch is blanked (Zeiler & Fergus, 2014), drawn over the image.

The CLI (``bigmodel explain``) and ``serve``'s ``POST /explain`` call the same
functions with the same baselines, so they give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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
        doc = {
            "importance": self.importance,
            "std": self.std,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "baseline": self.baseline,
            "repeats": self.repeats,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "engine": self.engine,
        }
        if self.per_row:
            doc["per_row"] = self.per_row
        return doc


def read_rows(
    path: str, spec: Any, target: str, max_rows: int, seed: int
) -> tuple[Any, list[Any], list[str], Any]:
    """(pyarrow table of the features, raw targets, notes, model inputs): predict's
    reader and checks, block by block, so a bad value is the error predict gives
    (the same line); then up to ``max_rows`` rows with a target."""
    import dataclasses

    import pyarrow as pa

    from bigmodel_cli.inference.predict import model_inputs
    from bigmodel_cli.inference.reader import open_blocks

    spec = dataclasses.replace(spec, target=target, id_columns=[], keep_columns=[])
    try:
        spec, blocks = open_blocks(path, spec)
    except DataError as e:
        if f"'{target}'" in e.message:
            raise DataError(
                f"{path} has no target column '{target}': explain measures the model against it",
                hint="pass labelled rows (the format of the run's test data)",
            ) from None
        raise
    batches, xs, first = [], [], 0
    for b in blocks:
        xs.append(model_inputs(b, spec, first, path))
        batches.append(b)
        first += b.num_rows
    if not batches or not first:
        raise DataError(
            f"{path}: no row to explain (the file has a header and no rows)",
            hint="pass labelled rows",
        )
    table = pa.Table.from_batches(batches)
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
    return (
        table.drop_columns([target]),
        [y[i] for i in keep],
        notes,
        _take(_concat(xs), np.asarray(keep)),
    )


def _concat(xs: list[Any]) -> Any:
    """Blocks' model inputs as one (id matrices padded to the widest block)."""
    if not isinstance(xs[0], dict):
        return np.concatenate(xs)
    out = {}
    for k in xs[0]:
        parts = [x[k] for x in xs]
        width = max(p.shape[1] for p in parts) if parts[0].ndim == 2 else None
        if width is not None and parts[0].dtype != object:
            parts = [np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p in parts]
        out[k] = np.concatenate(parts)
    return out


def _take(x: Any, rows: np.ndarray) -> Any:
    return {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]


def regions(shape: list[int], grid: int = 4) -> dict[str, np.ndarray]:
    """An image's ``grid`` x ``grid`` regions -> the flat pixel columns each holds
    (all channels), named by their rows and columns of pixels."""
    h, w = int(shape[0]), int(shape[1])
    ch = int(shape[2]) if len(shape) == 3 else 1
    flat = np.arange(h * w * ch).reshape(h, w, ch)
    out = {}
    for a, (r0, r1) in enumerate(_cuts(h, grid)):
        for b, (c0, c1) in enumerate(_cuts(w, grid)):
            out[f"region {a + 1},{b + 1} (rows {r0}-{r1 - 1}, cols {c0}-{c1 - 1})"] = flat[
                r0:r1, c0:c1
            ].reshape(-1)
    return out


def _cuts(n: int, parts: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, min(parts, n) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def column_slots(
    spec: Any, x: Any, image_shape: list[int] | None = None
) -> dict[str, tuple[str | None, Any]]:
    """Each raw column -> where it is in the model's inputs: (dict key or None,
    matrix column(s) or None). An image's columns are its regions."""
    from bigmodel_cli.features.text import ids_name
    from bigmodel_cli.features.text import raw_input_name

    if image_shape:
        return {name: (None, cols) for name, cols in regions(image_shape).items()}
    slots: dict[str, tuple[str | None, Any]] = {}
    numeric = spec.numeric
    for c in spec.features:
        if c in numeric:
            slots[c] = ("features" if isinstance(x, dict) else None, numeric.index(c))
        else:
            slots[c] = (ids_name(c) if spec.tokenizers is not None else raw_input_name(c), None)
    return slots


def _permuted(x: Any, slot: tuple[str | None, int | None], order: np.ndarray) -> Any:
    key, j = slot
    if key is None:  # a plain matrix: its column j (or columns: an image's region)
        out = x.copy()
        out[:, j] = x[np.ix_(order, j)] if isinstance(j, np.ndarray) else x[order, j]
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
    from bigmodel_cli.inference.predict import row_slice

    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    return np.concatenate(
        [np.asarray(infer(row_slice(x, s, s + batch))) for s in range(0, n, batch)]
    )


def permutation_importance(
    infer,
    spec: Any,
    x: Any,
    score: Callable[[np.ndarray], float],
    higher: bool,
    repeats: int,
    seed: int,
    batch: int,
    image_shape: list[int] | None = None,
) -> tuple[float, dict[str, float], dict[str, float]]:
    base = score(outputs(infer, x, batch))
    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    rng = np.random.default_rng(seed)
    importance, std = {}, {}
    for column, slot in column_slots(spec, x, image_shape).items():
        drops = []
        for _ in range(repeats):
            value = score(outputs(infer, _permuted(x, slot, rng.permutation(n)), batch))
            drops.append(base - value if higher else value - base)
        importance[column], std[column] = float(np.mean(drops)), float(np.std(drops))
    ranked = sorted(importance, key=lambda c: -importance[c])
    return base, {c: importance[c] for c in ranked}, {c: std[c] for c in ranked}


def _target(task: str, out: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(the output attributed, the predicted class or None) per row."""
    from bigmodel_cli.model.decide import labels

    if task == "regression":
        return out[:, 0], np.zeros(len(out), np.int64)
    k = labels(task, out, threshold)
    if task == "binary":
        return out[:, 0], k
    return out[np.arange(len(out)), k], k


def tokens_of(text: str) -> list[str]:
    parts = text.split()
    return parts if len(parts) > 1 or not text or " " in text.strip() else list(text.strip())


def baselines(
    spec: Any, cfg: Any, run_dir: Any, fallback: Any = None
) -> tuple[dict[str, Any], str]:
    """(column -> the value a per-row attribution sets it to, where they come from).

    A number column: its median over the training rows; a date column: its commonest
    training date; a category or text column: empty (its missing id, or no tokens).
    Read once from up to BASELINE_ROWS training rows and kept in the run
    (``preprocessing/explain_baseline.json``), so ``explain`` and ``serve`` use the
    same values; where the training data cannot be read, ``fallback`` (the rows
    being explained) gives them."""
    import json

    from bigmodel_cli.features.text import PREPROCESSING_DIR

    path = Path(run_dir) / PREPROCESSING_DIR / BASELINE_FILE if run_dir is not None else None
    if path is not None and path.is_file():
        try:
            doc = json.loads(path.read_text())
            if set(doc["values"]) >= set(spec.features):
                return doc["values"], doc["source"]
        except (OSError, ValueError, KeyError):
            pass
    values, source = (
        _training_baselines(spec, cfg, run_dir),
        f"the training rows (up to {BASELINE_ROWS:,})",
    )
    if values is None:
        if fallback is None:
            raise DataError(
                "no baseline for the attributions: the run's training data cannot be read",
                hint="explain with bigmodel explain --data FILE, whose rows then give the baseline",
            )
        return _frame_baselines(
            fallback.to_pandas(), spec
        ), "the rows explained (the training data could not be read)"
    if path is not None:
        from bigmodel_cli.runs import atomic_write_json

        try:
            atomic_write_json(path, {"source": source, "values": values})
        except OSError:  # a read-only run folder: computed again next time
            pass
    return values, source


BASELINE_FILE = "explain_baseline.json"
BASELINE_ROWS = 20_000


def _training_baselines(spec: Any, cfg: Any, run_dir: Any) -> dict[str, Any] | None:
    try:
        from bigmodel_cli.data.tables import read_table
        from bigmodel_cli.model.saved import run_base_dir

        df = read_table(
            cfg.data.train, run_base_dir(Path(run_dir)), "train", nrows=BASELINE_ROWS, cfg=cfg
        )
    except Exception:  # noqa: BLE001  (moved, remote or deleted data: the caller falls back)
        return None
    if any(c not in df.columns for c in spec.features):
        return None
    return _frame_baselines(df, spec)


def _frame_baselines(df: Any, spec: Any) -> dict[str, Any]:
    import pandas as pd

    out: dict[str, Any] = {}
    for c in spec.features:
        if c in spec.numeric:
            values = pd.to_numeric(df[c], errors="coerce")
            out[c] = float(values.median()) if values.notna().any() else 0.0
        elif c in spec.date_formats:
            out[c] = _mode(df[c].astype(object).where(df[c].notna(), None).tolist())
            out[c] = "" if out[c] is None else str(out[c])
        else:
            out[c] = ""
    return out


def _typed(value: Any, arrow_type: Any) -> Any:
    """A baseline value as a cell of a column of ``arrow_type`` (numbers
    read as text under data.missing: impute)."""
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return (
            ""
            if value is None
            else (repr(float(value)) if isinstance(value, float) else str(value))
        )
    return value


def row_attributions(
    infer,
    spec: Any,
    table: Any,
    rows: int,
    batch: int,
    model_inputs: Callable[[Any], Any],
    texts: set[str],
    baseline: dict[str, Any],
) -> list[dict[str, Any]]:
    """Occlusion per column (and per token of each of the ``texts``
    columns) of the first ``rows`` rows."""
    import pyarrow as pa

    baseline = {c: _typed(baseline[c], table.schema.field(c).type) for c in spec.features}
    out = []
    for r in range(min(rows, table.num_rows)):
        row = {c: table.column(c)[r].as_py() for c in table.column_names}
        variants = [row] + [{**row, c: baseline[c]} for c in spec.features]
        token_lists = {
            c: tokens_of(str(row[c] or ""))[:MAX_TOKENS] for c in spec.features if c in texts
        }
        for c, toks in token_lists.items():
            variants += [
                {
                    **row,
                    c: " ".join(toks[:i] + toks[i + 1 :])
                    if " " in str(row[c])
                    else "".join(toks[:i] + toks[i + 1 :]),
                }
                for i in range(len(toks))
            ]
        batch_table = pa.Table.from_pylist(variants, schema=table.schema)
        y = outputs(infer, model_inputs(batch_table.combine_chunks().to_batches()[0]), batch)
        value, predicted = _target(spec.task, y, spec.threshold)
        v0 = float(value[0])
        doc: dict[str, Any] = {
            "row": r + 1,
            "output": v0,
            "attributions": {c: float(v0 - value[1 + i]) for i, c in enumerate(spec.features)},
        }
        if (
            spec.task == "classification"
        ):  # the predicted class's probability, kept fixed across the variants
            k = int(predicted[0])
            full = y[:, k]
            doc["output"] = float(full[0])
            doc["attributions"] = {
                c: float(full[0] - full[1 + i]) for i, c in enumerate(spec.features)
            }
            doc["class"] = (spec.classes or [])[k] if spec.classes else k
            value = full
        at = 1 + len(spec.features)
        for c, toks in token_lists.items():
            doc.setdefault("tokens", {})[c] = [
                [t, float(value[0] - value[at + i])] for i, t in enumerate(toks)
            ]
            at += len(toks)
        out.append(doc)
    return out


def _mode(values: list[Any]) -> Any:
    from collections import Counter

    present = [v for v in values if v not in (None, "")]
    return Counter(present).most_common(1)[0][0] if present else ""


# ------------------------------------------------------------------ images


def image_saliency(
    infer,
    pixels: np.ndarray,
    shape: list[int],
    classes: list[Any] | None,
    task: str,
    threshold: float,
) -> list[dict[str, Any]]:
    """Occlusion saliency of each image (a row of flat 0..255 pixels): a patch of
    about a seventh of the image, moved by half its size, is set to 0; a pixel's
    saliency is the mean drop, over the patches that cover it, of the probability
    of the class the model predicts for the whole image (the value, for a regression)."""
    h, w = int(shape[0]), int(shape[1])
    ch = int(shape[2]) if len(shape) == 3 else 1
    p = max(1, round(min(h, w) / 7))
    step = max(1, p // 2)
    starts = [(r, c) for r in _positions(h, p, step) for c in _positions(w, p, step)]
    cover = np.zeros((h, w))
    for r, c in starts:
        cover[r : r + p, c : c + p] += 1
    out = []
    for i, row in enumerate(pixels):
        image = row.reshape(h, w, ch)
        variants = np.repeat(row[None, :], len(starts) + 1, axis=0).reshape(-1, h, w, ch)
        for k, (r, c) in enumerate(starts):
            variants[k + 1, r : r + p, c : c + p, :] = 0.0
        y = np.asarray(infer(variants.reshape(len(variants), -1).astype(np.float32)), np.float64)
        value, predicted = _target(task, y, threshold)
        if task == "classification":
            value = y[:, int(predicted[0])]
        drops = value[0] - value[1:]
        heat = np.zeros((h, w))
        for k, (r, c) in enumerate(starts):
            heat[r : r + p, c : c + p] += drops[k]
        heat /= np.maximum(cover, 1)
        doc: dict[str, Any] = {
            "row": i + 1,
            "output": float(value[0]),
            "patch": p,
            "saliency": heat.round(6).tolist(),
            "image": image,
        }
        if task != "regression":
            k = int(predicted[0])
            doc["class"] = (classes or [])[k] if classes else k
        out.append(doc)
    return out


def _positions(n: int, p: int, step: int) -> list[int]:
    last = max(0, n - p)
    pos = list(range(0, last + 1, step))
    return pos if pos[-1] == last else pos + [last]
