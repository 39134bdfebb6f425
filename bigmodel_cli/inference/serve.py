"""``bigmodel serve``: the run's model behind HTTP (FastAPI on uvicorn).

- ``GET /health``; ``GET /metadata`` (features and types, classes, the model's
  sha256, the engine); ``POST /predict`` with JSON ``{"rows": [{...}, ...]}`` or
  a CSV body (``Content-Type: text/csv``), answered as JSON
  ``{"predictions": [...]}`` (``?probabilities=true`` adds each class's
  probability) or as CSV (``Accept: text/csv``). The numbers are
  ``bigmodel predict``'s: the same input parsing, the same ONNX copy or
  TensorFlow model, the same output table; id columns are passed through.
- Engine: ``inference.onnx`` on onnxruntime while its sha256 matches
  ``model.keras`` (no TensorFlow import at startup), else TensorFlow.
- Concurrent requests are micro-batched: a request's rows wait at most
  ``max_wait_ms`` for others, up to ``batch_rows`` rows per inference call,
  which runs in one worker thread. The queue of waiting requests is bounded
  (``max_queue``): when it is full the server answers 503 at once.
- Errors: a body over ``max_body_mb`` is 413; malformed JSON or CSV is 400; a
  bad value is 422 naming the row and the column; nothing a client sends stops
  the server. SIGTERM stops accepting, lets requests in flight finish, exits 0.
- Security: 127.0.0.1 by default; ``--api-key`` (or ``BIGMODEL_API_KEY``)
  requires ``Authorization: Bearer <key>`` on /predict and /metadata; no
  endpoint touches a file a client names.

Example::

    app = make_app(Service.open("runs/mnist-cnn-1"))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

import asyncio
import hashlib
import os
import signal
import sys
import threading
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.errors import ConfigError, DataError
from bigmodel_cli.features.registry import NUMBER
from bigmodel_cli.inference.predict import _output_table


@dataclass
class Service:
    """The loaded run: what predict would use, ready for requests."""

    spec: Any  # predict.PredictSpec
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
                f"{batch.num_rows:,} rows: /explain takes up to {MAX_EXPLAIN_ROWS} rows a request (each costs a model call per column)"
            )
        cfg = model.cfg
        shape = cfg.data.image_shape
        if shape:
            per_row = X.image_saliency(
                model.infer,
                model_inputs(batch, spec, 0, "request"),
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
            lambda b: model_inputs(b, spec, 0, "request"),
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

        from bigmodel_cli.inference.predict import _cast_features, _check_input_columns, open_blocks

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
                'send {"rows": [{"column": value, ...}, ...]} with at least one row, or a CSV body with Content-Type: text/csv'
            )
        names = list(dict.fromkeys(spec.features + spec.id_columns))
        spec = _check_input_columns(list({k for r in rows for k in r}), spec, "request")
        for i, r in enumerate(rows):
            absent = [c for c in spec.features if c not in r]
            if absent:
                raise DataError(f"request: row {i + 1} has no value for feature '{absent[0]}'")
        spec = dataclasses.replace(
            spec, sent_ids={c: [r.get(c) for r in rows] for c in spec.id_columns}
        )  # JSON answers echo them as sent
        x = None if arrow else _plain_numbers(rows, spec)
        if x is not None:  # only numbers and nulls: the matrix at once, no Arrow table (issue 24)
            return spec, Rows(len(rows), x)
        columns = {}
        for c in names:
            values = [r.get(c) for r in rows]
            nested = next((i for i, v in enumerate(values) if isinstance(v, (list, dict))), None)
            if nested is not None and c in spec.features:
                raise DataError(
                    f"request: row {nested + 1}, column '{c}' holds a {type(values[nested]).__name__}, not one value: {json.dumps(values[nested])[:40]}"
                )
            if c in spec.numeric and spec.missing != "impute":
                columns[c] = pa.array(
                    [_number(v, i, c) for i, v in enumerate(values)], pa.float32()
                )
            else:
                columns[c] = pa.array([None if v is None else str(v) for v in values], pa.string())
        batch = pa.RecordBatch.from_pydict(columns)
        return spec, _cast_features(batch, spec, "request", 0)

    def parse_inputs(
        self, body: bytes, content_type: str, probabilities: bool, model: "Model | None" = None
    ) -> tuple[Any, Any, Any]:
        """:meth:`parse`, then the model's inputs: the CPU work of a request, off the event loop."""
        from bigmodel_cli.inference.predict import model_inputs

        spec, batch = self.parse(body, content_type, probabilities, model)
        if isinstance(batch, Rows):
            return spec, batch, batch.x
        return spec, batch, model_inputs(batch, spec, 0, "request")

    async def predict(
        self, spec: Any, batch: Any, x: Any = None, model: "Model | None" = None
    ) -> Any:
        from bigmodel_cli.inference.predict import model_inputs

        model = model or self.model()
        if x is None:
            x = model_inputs(batch, spec, 0, "request")
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
        return _output_table(batch, np.asarray(probs), spec)

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


def _plain_numbers(rows: list[dict], spec: Any) -> np.ndarray | None:
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
    return check_missing(x, feats, spec, 0, "request")


MALFORMED = __import__("re").compile(
    r"cannot parse|not UTF-8|fields, the header has|is empty|no header"
)


class BadRequest(Exception):
    pass


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
    raise DataError(f"request: row {i + 1}, column '{column}' is not a number: {str(v)[:40]!r}")


@dataclass
class Gate:
    """What every request passes: the API key, and the body's size limit."""

    api_key: str | None
    limit: int

    def denied(self, request: Any) -> Any:
        """The 401 answer to a request without the key, or None."""
        from fastapi.responses import JSONResponse

        if self.api_key and request.headers.get("authorization", "") != f"Bearer {self.api_key}":
            return JSONResponse(
                {"error": "a valid 'Authorization: Bearer <key>' header is required"},
                status_code=401,
            )
        return None

    async def body(self, request: Any) -> Any:
        """The request's body (bytes), or the answer that refuses it (key, size)."""
        from fastapi.responses import JSONResponse

        refused = self.denied(request)
        if refused is not None:
            return refused
        size = int(request.headers.get("content-length") or 0)
        if size > self.limit:
            return JSONResponse(
                {"error": f"the body is {size:,} bytes; the limit is {self.limit:,}"},
                status_code=413,
            )
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > self.limit:
                return JSONResponse(
                    {"error": f"the body is over the limit of {self.limit:,} bytes"},
                    status_code=413,
                )
        return bytes(body)


def make_app(
    service: Service,
    api_key: str | None = None,
    max_body_mb: float = 16.0,
    access_log: str = "json",
):
    """The ASGI app: FastAPI's routes inside the request-id, access-log and
    metrics middleware (observe.py)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    from bigmodel_cli.inference.observe import Metrics, Observed, offline_docs, predict_body

    if service.metrics is None:
        service.metrics = Metrics(service.engine)
    app = FastAPI(
        title="bigmodel",
        description=f"Predictions of {service.metadata['run']} ({service.metadata['task']})",
        lifespan=_lifespan(service),
        docs_url=None,
        redoc_url=None,
    )
    offline_docs(app)

    gate = Gate(api_key, int(max_body_mb * 2**20))
    denied, read_body = gate.denied, gate.body

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "engine": service.engine, "pid": os.getpid(), **service.stats}

    @app.get("/metadata")
    async def metadata(request: Request) -> Any:
        return denied(request) or service.metadata

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Any:
        service.metrics.queue_depth.set(service.queue.qsize() if service.queue else 0)
        return Response(
            service.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    body_doc = predict_body(
        service.metadata["features"], service.metadata["id_columns"], service.example or []
    )

    @app.post("/predict", openapi_extra={"requestBody": body_doc, "parameters": PREDICT_PARAMETERS})
    async def predict(request: Request) -> Any:
        """Rows as JSON {"rows": [...]} or a CSV body (Content-Type: text/csv).
        ``?probabilities=true``: each class's probability; ``?coverage=0.9``:
        conformal prediction sets (``&sets=lac|aps``) or intervals."""
        body = await read_body(request)
        if not isinstance(body, (bytes, bytearray)):
            return body
        try:
            # read here, not declared as FastAPI parameters: validating three of them
            # cost more than the rest of a one-row request (cProfile under load)
            probabilities, coverage, sets = predict_query(request.query_params)
            model = service.model()  # this request's, whatever a reload does meanwhile
            args = (bytes(body), request.headers.get("content-type", ""), probabilities, model)
            if len(body) <= INLINE_BODY:  # parsing a small body costs less than a thread handoff
                spec, batch, x = service.parse_inputs(*args)
            else:
                spec, batch, x = await asyncio.get_running_loop().run_in_executor(
                    None, service.parse_inputs, *args
                )
            if coverage is not None:
                from bigmodel_cli.inference.engine import with_coverage

                spec = with_coverage(spec, coverage, sets, "?coverage")
            table = await service.predict(spec, batch, x, model)
            request.scope.setdefault("state", {})["rows"] = batch.num_rows
        except (BadRequest, ConfigError, DataError) as e:
            return error_answer(e)
        except Overloaded:
            return JSONResponse(
                {"error": "the server is busy: too many requests are waiting; retry shortly"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return _answer(table, spec, "text/csv" in request.headers.get("accept", ""))

    _reload_and_explain_routes(app, service, denied, read_body)
    return Observed(app, service.metrics, access_log)


def _lifespan(service: Service) -> Any:
    """The app's start and stop: the batcher's queue and task, and SIGHUP's reload."""

    async def lifespan(app: Any):
        service.queue = asyncio.Queue(maxsize=service.max_queue)
        task = asyncio.create_task(service.batcher())
        loop = asyncio.get_running_loop()
        # SIGHUP reloads; under --workers uvicorn's supervisor takes it, and an app
        # run outside the main thread (a test client) cannot take signals at all
        if (
            hasattr(signal, "SIGHUP")
            and os.environ.get(WORKER_ENV) is None
            and threading.current_thread() is threading.main_thread()
        ):
            loop.add_signal_handler(
                signal.SIGHUP, lambda: loop.create_task(_reload_logged(service))
            )
        yield
        task.cancel()

    return lifespan


def _answer(table: Any, spec: Any, csv_wanted: bool) -> Any:
    """A /predict answer: JSON, or CSV when the client accepts text/csv."""
    from fastapi.responses import JSONResponse, Response

    if isinstance(table, Answer):
        if not csv_wanted:
            return JSONResponse(_json_answer(table.probs, spec))
        table = (
            _output_table(None, table.probs, spec)
            if not spec.id_columns
            else _with_ids(table.probs, spec)
        )
    if csv_wanted:
        import pyarrow.csv as pc

        buf = io.BytesIO()
        pc.write_csv(table, buf)
        return Response(buf.getvalue(), media_type="text/csv")
    return JSONResponse(_json_rows(table, spec))


def _reload_and_explain_routes(app: Any, service: Service, denied: Any, read_body: Any) -> None:
    """POST /admin/reload and POST /explain."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.post("/admin/reload")
    async def reload(request: Request) -> Any:
        """Load the run's newest model (an experiment folder: its newest run) and
        answer its sha256 before and after; requests in flight finish on the old one.
        Under --workers, every worker is replaced, one after another."""
        refused = denied(request)
        if refused is not None:
            return refused
        if os.environ.get(WORKER_ENV) is not None:
            os.kill(
                os.getppid(), signal.SIGHUP
            )  # uvicorn's supervisor starts new workers before it retires the old
            return JSONResponse(
                {
                    "reloading": "every worker, one after another (GET /metadata shows the new model_sha256)",
                    "model_sha256_before": service.metadata["model_sha256"],
                },
                status_code=202,
            )
        try:
            return await service.reload()
        except Exception as e:  # noqa: BLE001  (the old model keeps serving)
            return JSONResponse(
                {
                    "error": f"reload failed, still serving {service.metadata['run']}: {getattr(e, 'message', None) or e}"
                },
                status_code=409,
            )

    @app.post("/explain")
    async def explain(request: Request) -> Any:
        """Per-row attributions of the rows sent (as for /predict): how much each
        column moves the row's output when set to the run's baseline, and per token
        for text; the numbers `bigmodel explain --rows` gives."""
        body = await read_body(request)
        if not isinstance(body, (bytes, bytearray)):
            return body
        try:
            model = service.model()
            doc = await asyncio.get_running_loop().run_in_executor(
                None,
                service.explain_rows,
                bytes(body),
                request.headers.get("content-type", ""),
                model,
            )
        except (BadRequest, ConfigError, DataError) as e:
            return error_answer(e)
        request.scope.setdefault("state", {})["rows"] = len(doc["rows"])
        return JSONResponse(doc)


PREDICT_PARAMETERS = [
    {
        "name": "probabilities",
        "in": "query",
        "required": False,
        "schema": {"type": "boolean", "default": False},
        "description": "add each class's probability",
    },
    {
        "name": "coverage",
        "in": "query",
        "required": False,
        "schema": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "description": "conformal prediction sets (classifiers) or intervals (regressions) at this coverage, e.g. 0.9",
    },
    {
        "name": "sets",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["lac", "aps"], "default": "lac"},
        "description": "with coverage: lac (the smallest sets) or aps (adaptive prediction sets)",
    },
]
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def predict_query(q: Any) -> tuple[bool, float | None, str]:
    """(probabilities, coverage, sets) of /predict's query string; BadRequest names a bad one."""
    flag = (q.get("probabilities") or "").lower()
    if flag not in _TRUE and flag not in _FALSE:
        raise BadRequest(f"?probabilities={q.get('probabilities')} is not true or false")
    coverage = q.get("coverage")
    if coverage is not None:
        try:
            coverage = float(coverage)
        except ValueError:
            raise BadRequest(
                f"?coverage={coverage} is not a number: give a share such as 0.9"
            ) from None
    return flag in _TRUE, coverage, q.get("sets") or "lac"


def error_answer(e: Exception) -> Any:
    """The answer to a request whose body or values are wrong: 400 for its shape
    (or a query parameter), 422 for a row's values, naming them."""
    from fastapi.responses import JSONResponse

    if isinstance(e, BadRequest):
        return JSONResponse({"error": str(e)}, status_code=400)
    status = 422 if isinstance(e, DataError) and not MALFORMED.search(e.message) else 400
    return JSONResponse(
        {"error": e.message, **({"hint": e.hint} if e.hint else {})}, status_code=status
    )


INLINE_BODY = 64 * 1024  # bytes: a body up to this is parsed on the event loop


def _json_answer(probs: np.ndarray, spec: Any) -> dict[str, Any]:
    """What _json_rows answers, from the outputs directly (the :class:`Rows` path)."""
    from bigmodel_cli.inference.predict import decide

    idx, full = decide(probs, spec)
    if full is None:
        out: dict[str, Any] = {"predictions": idx.tolist()}
        if spec.coverage is not None:
            from bigmodel_cli.model.decide import intervals

            lower, upper = intervals(spec.conformal, idx, spec.coverage)
            out.update(
                {
                    "lower": lower.astype(np.float32).tolist(),
                    "upper": upper.astype(np.float32).tolist(),
                    "coverage": spec.coverage,
                }
            )
    else:
        classes = list(spec.classes or [])
        out = {"predictions": [classes[i] for i in idx.tolist()]}
        if spec.coverage is not None:
            from bigmodel_cli.inference.predict import prediction_sets

            out.update(
                {
                    "prediction_sets": prediction_sets(probs, spec, joined=False),
                    "coverage": spec.coverage,
                }
            )
        if spec.probabilities:
            out["classes"] = [str(c) for c in classes]
            out["probabilities"] = full.astype(np.float32, copy=False).tolist()
    ids = getattr(spec, "sent_ids", None) or {}
    if ids:
        out["ids"] = ids
    return out


def _with_ids(probs: np.ndarray, spec: Any) -> Any:
    """The output table of a :class:`Rows` request with its id columns, for a CSV answer."""
    import pyarrow as pa

    ids = {
        c: pa.array([None if v is None else str(v) for v in spec.sent_ids[c]], pa.string())
        for c in spec.id_columns
    }
    return _output_table(pa.RecordBatch.from_pydict(ids), probs, spec)


def _json_rows(table: Any, spec: Any) -> dict[str, Any]:
    cols = table.to_pydict()
    preds = cols.pop("prediction")
    out: dict[str, Any] = {"predictions": preds}
    probs = {k[5:]: v for k, v in cols.items() if k.startswith("prob_")}
    if probs:
        classes = list(probs)
        out["classes"] = classes
        out["probabilities"] = [[probs[c][i] for c in classes] for i in range(len(preds))]
    if "prediction_set" in cols:
        out["prediction_sets"] = [v.split("|") if v else [] for v in cols.pop("prediction_set")]
    for k in ("lower", "upper"):
        if k in cols:
            out[k] = cols.pop(k)
    if spec.coverage is not None:
        out["coverage"] = spec.coverage
    ids = {k: v for k, v in cols.items() if not k.startswith("prob_")}
    ids.update(getattr(spec, "sent_ids", None) or {})
    if ids:
        out["ids"] = ids
    return out


async def _reload_logged(service: Service) -> None:
    """SIGHUP: reload, and say what happened on stderr (the server has no one else to tell)."""
    try:
        r = await service.reload()
        print(json.dumps({"event": "reload", **r}), file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001  (the old model keeps serving)
        print(
            json.dumps(
                {
                    "event": "reload",
                    "error": f"{getattr(e, 'message', None) or e}",
                    "still_serving": service.metadata["run"],
                }
            ),
            file=sys.stderr,
            flush=True,
        )


def tcp_listener(host: str, port: int):
    """The --workers listening socket, made with proto IPPROTO_TCP: uvicorn's own
    (Config.bind_socket) leaves proto 0, so asyncio never sets TCP_NODELAY on the
    accepted connections and every keep-alive answer waits ~40 ms for the client's
    delayed ACK (Kludex/uvicorn#3149; measured here: 22 requests/s on one connection)."""
    import socket

    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        from bigmodel_cli.errors import EnvironmentProblem

        raise EnvironmentProblem(
            f"cannot listen on {host}:{port}: {e.strerror}",
            hint="choose another --port, or stop what holds this one",
        ) from None
    sock.set_inheritable(True)
    return sock


WORKER_ENV = "BIGMODEL_SERVE_WORKER"  # serve's arguments, for each --workers process


def worker_app():
    """One --workers process's app (uvicorn's factory): its own session and batcher."""
    import gc

    a = json.loads(os.environ[WORKER_ENV])
    service = Service.open(
        a["run"],
        a["engine"],
        max_queue=a["max_queue"],
        batch_rows=a["batch_rows"],
        max_wait_ms=a["max_wait_ms"],
    )
    app = make_app(service, a["api_key"], a["max_body_mb"], a["access_log"])
    gc.collect()
    gc.freeze()  # as serve does: see there
    return app


def serve(
    run: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    engine: str = "auto",
    max_body_mb: float = 16.0,
    max_queue: int = 256,
    batch_rows: int = 4096,
    max_wait_ms: float = 2.0,
    announce: Any = None,
    workers: int = 1,
    access_log: str = "json",
) -> None:
    """Load the run and serve it until SIGTERM/SIGINT (uvicorn drains requests in flight).
    ``workers`` > 1: that many server processes on the one port (uvicorn's
    supervisor), each with its own onnxruntime session and micro-batcher."""
    import uvicorn

    t0 = time.perf_counter()
    service = Service.open(
        run, engine, max_queue=max_queue, batch_rows=batch_rows, max_wait_ms=max_wait_ms
    )
    if access_log not in ("json", "off"):
        from bigmodel_cli.errors import ConfigError

        raise ConfigError(f"unknown --access-log '{access_log}'", hint="use json or off")
    app = make_app(service, api_key, max_body_mb, access_log)
    if announce:
        announce(service, time.perf_counter() - t0)
    if workers > 1:  # the run was opened once here, so a broken one fails before any worker starts
        os.environ[WORKER_ENV] = json.dumps(
            {
                "run": str(run),
                "engine": engine,
                "max_queue": max_queue,
                "batch_rows": batch_rows,
                "max_wait_ms": max_wait_ms,
                "api_key": api_key,
                "max_body_mb": max_body_mb,
                "access_log": access_log,
            }
        )
        del app, service
        from uvicorn.supervisors import Multiprocess

        config = uvicorn.Config(
            "bigmodel_cli.inference.serve:worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=4,
            access_log=False,
        )
        Multiprocess(config, sockets=[tcp_listener(host, port)]).run()
        return
    import signal

    # uvicorn drains requests on SIGTERM/SIGINT, then re-raises the signal to the
    # handler it found (cooperative signal handling, encode/uvicorn#1600, since
    # 0.29: a plain uvicorn.run exits -15 on SIGTERM). A handler that does nothing lets
    # serve return, so a requested stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    import gc

    # Everything loaded so far (onnxruntime, pyarrow, the app) lives as long as the
    # server: out of the collector's sight, a full collection no longer walks it,
    # which stalled requests for tens of milliseconds under load (p99).
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=4,
        access_log=False,
    )
