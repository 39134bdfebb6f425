"""What ``serve`` answers with, apart from HTTP.

``Service``: the run's model loaded once; a request's rows parsed and checked as
``predict`` checks them, answered in micro-batches by one worker thread, and the model
reloaded when the run's changes. ``serve`` puts it behind FastAPI.
"""

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.errors import DataError
from bigmodel_cli.features.registry import NUMBER
from bigmodel_cli.inference.predict import Words, output_table


@dataclass
class Service:
    """The loaded run: what predict would use, ready for requests."""

    spec: Any  # spec.PredictSpec
    infer: Any  # model inputs -> outputs
    engine: str
    metadata: dict[str, Any]
    batch_rows: int = 4096
    max_wait_ms: float = 2.0
    max_queue: int = 256
    queue: asyncio.Queue | None = None
    stats: dict[str, int] = field(
        default_factory=lambda: {"requests": 0, "rows": 0, "batches": 0, "rejected": 0}
    )
    metrics: Any = None  # observe.Metrics
    example: list[dict[str, Any]] = field(default_factory=list)  # training rows, for the docs
    source: tuple[str, str, int] = (
        "",
        "auto",
        1,
    )  # (RUN as given, --engine, threads): what a reload opens again
    cfg: Any = None  # the run's config (explain reads it)
    cheap: bool | None = None  # see cheap_call; None: not measured yet
    reloads: int = 0
    explainer: Any = None  # (the spec, baselines, their source) of POST /explain
    _reloading: Any = None  # asyncio.Lock: one reload at a time

    @classmethod
    def open(cls, run: "str | Path", engine: str = "auto", **options: Any) -> "Service":
        threads = options.pop("threads", 1)
        spec, infer, used, meta, cfg = _load(run, engine, threads)
        service = cls(spec, infer, used, meta, cfg=cfg, **options)
        service.source = (str(run), engine, threads)
        from bigmodel_cli.inference.observe import Metrics, example_rows
        from bigmodel_cli.model.saved import run_base_dir

        service.metrics = Metrics(service.engine)
        service.example = example_rows(
            service.cfg,
            run_base_dir(Path(service.metadata["run"])),
            list(service.spec.features),
            list(service.spec.id_columns),
        )
        return service

    # ---- reload without downtime (SIGHUP or POST /admin/reload)
    def model(self) -> "Model":
        """What a request uses from its parsing to its answer: a reload replaces
        ``self``'s fields, never a Model a request holds, so requests in flight
        finish on the model they started with."""
        return Model(self.spec, self.infer, self.cheap, self.cfg, self.metadata["run"], self.engine)

    def explain_rows(self, body: bytes, content_type: str, model: "Model") -> dict[str, Any]:
        """POST /explain: each row's attributions, as ``bigmodel explain --rows``
        computes them (the same baselines, kept in the run)."""
        import pyarrow as pa

        from bigmodel_cli.features import registry
        from bigmodel_cli.inference import explain as X
        from bigmodel_cli.inference.predict import model_inputs

        spec, batch = self.parse(body, content_type, False, model, arrow=True)
        if batch.num_rows > MAX_EXPLAIN_ROWS:
            raise BadRequest(
                f"{batch.num_rows:,} rows: /explain takes up to {MAX_EXPLAIN_ROWS} rows a "
                "request (each costs a model call per column)"
            )
        cfg = model.cfg
        shape = cfg.data.image_shape
        if shape:
            per_row = X.image_saliency(
                model.infer,
                model_inputs(batch, spec, 0, "request", HTTP_WORDS),
                list(shape),
                cfg.data.classes,
                cfg.task,
                spec.threshold,
            )
            for doc in per_row:
                doc.pop("image")
            return {"rows": per_row, "engine": model.engine, "method": "occlusion saliency"}
        table = pa.Table.from_batches([batch])
        cached = self.explainer
        if cached is None or cached[0] is not model.spec:
            base, source = X.baselines(model.spec, cfg, Path(model.run_dir), table)
            cached = self.explainer = (model.spec, base, source)
        texts = set(registry.columns_of(cfg.data.columns, spec.features, registry.TEXT))
        per_row = X.row_attributions(
            model.infer,
            spec,
            table,
            table.num_rows,
            self.batch_rows,
            lambda b: model_inputs(b, spec, 0, "request", HTTP_WORDS),
            texts,
            cached[1],
        )
        return {
            "rows": per_row,
            "baseline": cached[1],
            "baseline_source": cached[2],
            "engine": model.engine,
            "method": "occlusion",
        }

    async def reload(self) -> dict[str, Any]:
        """Open RUN again (an experiment folder: its newest run; a run folder: its
        newest model.keras and inference copy) off the event loop, then swap it in.
        On failure the old model keeps serving and the error is raised."""
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            t = time.perf_counter()
            before = self.metadata["model_sha256"]
            run, engine, threads = self.source
            loop = asyncio.get_running_loop()
            spec, infer, used, meta, cfg = await loop.run_in_executor(
                None, _load, run, engine, threads
            )
            cheap = await loop.run_in_executor(None, cheap_call, spec, infer)
            # one assignment after another with no await between: no request sees half of it
            self.spec, self.infer, self.engine, self.metadata, self.cfg, self.cheap = (
                spec,
                infer,
                used,
                meta,
                cfg,
                cheap,
            )
            self.reloads += 1
            self.explainer = None
            if self.metrics:
                self.metrics.reloads.inc()
            return {
                "run": meta["run"],
                "model_sha256_before": before,
                "model_sha256": meta["model_sha256"],
                "changed": before != meta["model_sha256"],
                "engine": used,
                "seconds": round(time.perf_counter() - t, 3),
            }

    # ---- parsing: request bodies -> pyarrow batches, as predict reads files
    def parse(
        self,
        body: bytes,
        content_type: str,
        probabilities: bool,
        model: "Model | None" = None,
        arrow: bool = False,
    ) -> Any:
        """(spec, batch) of a request body: an Arrow batch, or :class:`Rows` for JSON
        rows of plain numbers (``arrow``: always the Arrow batch)."""
        import dataclasses

        import pyarrow as pa

        from bigmodel_cli.inference.reader import cast_features, check_input_columns, open_blocks

        base = (model or self.model()).spec  # shared by every request: never changed, only replaced
        spec = dataclasses.replace(base, probabilities=probabilities and base.task != "regression")
        if "csv" in content_type:
            spec, blocks = open_blocks("request body", spec, "csv", data=body)
            batches = list(blocks)
            table = pa.Table.from_batches(batches) if batches else None
            if table is None or table.num_rows == 0:
                raise BadRequest("the CSV body has a header but no rows")
            return spec, table.combine_chunks().to_batches()[0] if table.num_rows else None
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadRequest(f"the body is not valid JSON: {e}") from None
        rows = doc.get("rows") if isinstance(doc, dict) else None
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise BadRequest(
                'send {"rows": [{"column": value, ...}, ...]} with at least one row, or a '
                "CSV body with Content-Type: text/csv"
            )
        names = list(dict.fromkeys(spec.features + spec.id_columns))
        spec = check_input_columns(list({k for r in rows for k in r}), spec, "request")
        for i, r in enumerate(rows):
            absent = [c for c in spec.features if c not in r]
            if absent:
                raise DataError(f"request: row {i + 1} has no value for feature '{absent[0]}'")
        spec = dataclasses.replace(
            spec, sent_ids={c: [r.get(c) for r in rows] for c in spec.id_columns}
        )  # JSON answers echo them as sent
        x = None if arrow else plain_numbers(rows, spec)
        if x is not None:  # only numbers and nulls: the matrix at once, no Arrow table (issue 24)
            return spec, Rows(len(rows), x)
        columns = {}
        for c in names:
            values = [r.get(c) for r in rows]
            nested = next((i for i, v in enumerate(values) if isinstance(v, (list, dict))), None)
            if nested is not None and c in spec.features:
                raise DataError(
                    f"request: row {nested + 1}, column '{c}' holds a "
                    f"{type(values[nested]).__name__}, not one value: "
                    f"{json.dumps(values[nested])[:40]}"
                )
            if c in spec.numeric and spec.missing != "impute":
                columns[c] = pa.array(
                    [_number(v, i, c) for i, v in enumerate(values)], pa.float32()
                )
            else:
                columns[c] = pa.array([None if v is None else str(v) for v in values], pa.string())
        batch = pa.RecordBatch.from_pydict(columns)
        return spec, cast_features(batch, spec, "request", 0)

    def parse_inputs(
        self, body: bytes, content_type: str, probabilities: bool, model: "Model | None" = None
    ) -> tuple[Any, Any, Any]:
        """:meth:`parse`, then the model's inputs: the CPU work of a request, off the event loop."""
        from bigmodel_cli.inference.predict import model_inputs

        spec, batch = self.parse(body, content_type, probabilities, model)
        if isinstance(batch, Rows):
            return spec, batch, batch.x
        return spec, batch, model_inputs(batch, spec, 0, "request", HTTP_WORDS)

    async def predict(
        self, spec: Any, batch: Any, x: Any = None, model: "Model | None" = None
    ) -> Any:
        from bigmodel_cli.inference.predict import model_inputs

        model = model or self.model()
        if x is None:
            x = model_inputs(batch, spec, 0, "request", HTTP_WORDS)
        assert self.queue is not None
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((x, fut, model))
        except asyncio.QueueFull:
            self.stats["rejected"] += 1
            if self.metrics:
                self.metrics.rejected.inc()
            raise Overloaded() from None
        probs = await fut
        self.stats["requests"] += 1
        self.stats["rows"] += batch.num_rows
        if self.metrics:
            self.metrics.rows.inc(batch.num_rows)
        if isinstance(batch, Rows):
            return Answer(np.asarray(probs))
        return output_table(batch, np.asarray(probs), spec)

    async def batcher(self) -> None:
        """Collects waiting requests into one inference call at a time: requests of
        the same model, whatever their column types (text ids of different widths
        are padded to the widest, as predict pads a block)."""
        from concurrent.futures import ThreadPoolExecutor

        assert self.queue is not None
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bigmodel-infer")
        loop = asyncio.get_running_loop()
        if self.cheap is None:
            self.cheap = cheap_call(self.spec, self.infer)
        # a request of another model (after a reload) or input kind: the next call's first
        carry = None
        while True:
            first = carry if carry is not None else await self.queue.get()
            carry = None
            model, kind = first[2], _kind(first[0])
            cheap = bool(self.cheap if model.infer is self.infer else model.cheap)
            items, rows = [first], _length(first[0])
            deadline = loop.time() + (0.0 if cheap else self.max_wait_ms / 1000)
            while rows < self.batch_rows:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                if (
                    item[2].infer is not model.infer or _kind(item[0]) != kind
                ):  # another model (a reload) or input
                    carry = item
                    break
                items.append(item)
                rows += _length(item[0])
            x = _stack([i[0] for i in items])
            if self.metrics:
                self.metrics.batch_rows.observe(rows)
                self.metrics.queue_depth.set(self.queue.qsize())
            try:
                # A call of a few rows to a small model takes microseconds: run it here,
                # since handing it to a thread and back costs more than the call.
                out = (
                    model.infer(x)
                    if cheap and rows <= INLINE_ROWS
                    else await loop.run_in_executor(pool, model.infer, x)
                )
            except Exception as e:  # noqa: BLE001  (each waiting request gets the error)
                for _, fut, _ in items:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.stats["batches"] += 1
            at = 0
            for xi, fut, _ in items:
                n = _length(xi)
                if not fut.done():
                    fut.set_result(out[at : at + n])
                at += n


def _length(x: Any) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _kind(x: Any) -> Any:
    """Inputs that can share one call: a matrix of the same width, or dicts of the same inputs."""
    return tuple(sorted(x)) if isinstance(x, dict) else x.shape[1:]


def _stack(xs: list[Any]) -> Any:
    """Requests' inputs as one call's: rows after rows; 2-D id matrices padded with 0
    (the padding id) to the widest."""
    if len(xs) == 1:
        return xs[0]
    if not isinstance(xs[0], dict):
        return np.concatenate(xs)
    out = {}
    for k in xs[0]:
        parts = [x[k] for x in xs]
        if parts[0].ndim == 2 and parts[0].dtype != object and len({p.shape[1] for p in parts}) > 1:
            w = max(p.shape[1] for p in parts)
            parts = [np.pad(p, ((0, 0), (0, w - p.shape[1]))) for p in parts]
        out[k] = np.concatenate(parts)
    return out


def cheap_call(spec: Any, infer: Any) -> bool:
    """Whether an INLINE_ROWS-row call of the model takes under CHEAP_CALL_S
    (the median of a few, after a warm-up): then the batcher runs small
    batches on the event loop and does not wait for more requests."""
    if spec.encoded_columns:
        return False
    x = np.zeros((INLINE_ROWS, len(spec.features)), np.float32)
    times = []
    try:
        for _ in range(6):
            t = time.perf_counter()
            infer(x)
            times.append(time.perf_counter() - t)
    except Exception:  # noqa: BLE001  (the first request will say what is wrong)
        return False
    return sorted(times[1:])[len(times[1:]) // 2] < CHEAP_CALL_S


def _load(
    run: "str | Path", engine: str, threads: int
) -> tuple[Any, Any, str, dict[str, Any], Any]:
    """(spec, infer, engine used, /metadata, config) of RUN, as predict opens it."""
    from bigmodel_cli.inference.engine import open_engine

    e = open_engine(run, engine, need_run="serve", threads=threads)
    ref, cfg, spec = e.ref, e.cfg, e.spec
    columns = cfg.data.columns or {}
    from bigmodel_cli.features import registry
    from bigmodel_cli.model.saved import run_tokenizers

    categories = set(registry.columns_of(columns, spec.features, registry.CATEGORY))
    encoders = (spec.tokenizers or run_tokenizers(ref.run_dir, cfg) or {}) if categories else {}
    meta = {
        "run": str(ref.run_dir),
        "task": cfg.task,
        "features": [
            {
                "name": c,
                "type": columns.get(c, NUMBER.name),
                **(_allowed(encoders.get(c)) if c in categories else {}),
            }
            for c in spec.features
        ],
        "id_columns": list(spec.id_columns),
        "classes": cfg.data.classes,
        "model_sha256": hashlib.sha256(Path(ref.model_path).read_bytes()).hexdigest(),
        "engine": e.name,
    }
    if cfg.task == "binary":
        meta.update(
            {"positive_class": (cfg.data.classes or [None, None])[1], "threshold": spec.threshold}
        )
    meta["conformal"] = spec.conformal is not None
    return spec, e.infer, e.name, meta, cfg


MAX_LISTED_VALUES = 1000  # /metadata lists a category column's values up to this many


def _allowed(encoder: Any) -> dict[str, Any]:
    """A category column's known values for /metadata (any other value is 'unseen',
    and an empty one missing), commonest first as the encoder keeps them."""
    vocabulary = (
        encoder.shown()
        if hasattr(encoder, "shown")
        else list(getattr(encoder, "vocabulary", None) or [])
    )
    if not vocabulary:
        return {}
    doc: dict[str, Any] = {
        "values": vocabulary[:MAX_LISTED_VALUES],
        "unseen": "any other value is read as unseen; an empty one as missing",
    }
    if len(vocabulary) > MAX_LISTED_VALUES:
        doc["values_total"] = len(vocabulary)
    return doc


@dataclass
class Model:
    """One loaded model, as a request holds it (see Service.model)."""

    spec: Any
    infer: Any
    cheap: bool | None
    cfg: Any
    run_dir: str
    engine: str


MAX_EXPLAIN_ROWS = 100


INLINE_ROWS = 256  # a batch this small of a cheap model runs on the event loop


CHEAP_CALL_S = 0.0005  # a model whose INLINE_ROWS-row call takes less is cheap (measured at start)


@dataclass
class Rows:
    """A JSON request of numbers only, parsed straight to the model's matrix."""

    num_rows: int
    x: np.ndarray


@dataclass
class Answer:
    """The model's outputs for a :class:`Rows` request (no Arrow table on this path)."""

    probs: np.ndarray


def plain_numbers(rows: list[dict], spec: Any) -> np.ndarray | None:
    """The feature matrix when every feature is a number column and every value
    a JSON number or null; None otherwise (the general path reads the rest:
    strings, booleans, text and category columns). Missing values are checked as
    predict checks them (check_missing)."""
    from bigmodel_cli.inference.predict import check_missing

    if spec.encoded_columns:
        return None
    feats = spec.features
    values = [[r[c] for c in feats] for r in rows]
    kinds = (int, float, type(None))
    if not all(type(v) in kinds for row in values for v in row):
        return None
    x = np.array(values, dtype=np.float32)  # null -> NaN: missing
    return check_missing(x, feats, spec, 0, "request", HTTP_WORDS)


MALFORMED = __import__("re").compile(
    r"cannot parse|not UTF-8|fields, the header has|is empty|no header"
)


# What a client of the HTTP API can do about a bad value (the CLI's hint names a flag)
HTTP_BAD_VALUE_HINT = (
    "fix the value; an empty cell (CSV) or null (JSON) is a missing value, which the "
    "model fills where it was trained to"
)


class BadRequest(Exception):
    pass


# predict's errors in the HTTP API's words: the request, and what a client can send
HTTP_WORDS = Words(
    block="request",
    bad_value=HTTP_BAD_VALUE_HINT,
    missing="send the value, or train with data.missing: impute or fill, which fill missing values",
)


class Overloaded(Exception):
    pass


def _number(v: Any, i: int, column: str) -> float | None:
    if v is None or isinstance(v, bool):
        return None if v is None else float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise DataError(
        f"request: row {i + 1}, column '{column}' is not a number: {str(v)[:40]!r}",
        hint=HTTP_BAD_VALUE_HINT,
    )
