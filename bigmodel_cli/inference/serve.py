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
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.errors import DataError
from bigmodel_cli.features.registry import NUMBER


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
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "rows": 0, "batches": 0, "rejected": 0})

    @classmethod
    def open(cls, run: "str | Path", engine: str = "auto", **options: Any) -> "Service":
        from bigmodel_cli.inference.engine import open_engine

        e = open_engine(run, engine, need_run="serve")
        ref, cfg, spec, infer, used = e.ref, e.cfg, e.spec, e.infer, e.name
        columns = cfg.data.columns or {}
        meta = {
            "run": str(ref.run_dir),
            "task": cfg.task,
            "features": [{"name": c, "type": columns.get(c, NUMBER.name)} for c in spec.features],
            "id_columns": list(spec.id_columns),
            "classes": cfg.data.classes,
            "model_sha256": hashlib.sha256(Path(ref.model_path).read_bytes()).hexdigest(),
            "engine": used,
        }
        return cls(spec, infer, used, meta, **options)

    # ---- parsing: request bodies -> pyarrow batches, as predict reads files
    def parse(self, body: bytes, content_type: str, probabilities: bool) -> Any:
        import copy

        import pyarrow as pa

        from bigmodel_cli.inference.predict import _cast_features, _check_input_columns, iter_blocks

        spec = copy.copy(self.spec)
        spec.probabilities = probabilities and spec.task != "regression"
        if "csv" in content_type:
            batches = list(iter_blocks("request body", spec, "csv", data=body))
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
            raise BadRequest('send {"rows": [{"column": value, ...}, ...]} with at least one row, or a CSV body with Content-Type: text/csv')
        names = list(dict.fromkeys(spec.features + spec.id_columns))
        _check_input_columns(list({k for r in rows for k in r}), spec, "request")
        for i, r in enumerate(rows):
            absent = [c for c in spec.features if c not in r]
            if absent:
                raise DataError(f"request: row {i + 1} has no value for feature '{absent[0]}'")
        columns = {}
        for c in names:
            values = [r.get(c) for r in rows]
            nested = next((i for i, v in enumerate(values) if isinstance(v, (list, dict))), None)
            if nested is not None and c in spec.features:
                raise DataError(f"request: row {nested + 1}, column '{c}' holds a {type(values[nested]).__name__}, not one value: {json.dumps(values[nested])[:40]}")
            if c in spec.numeric and spec.missing != "impute":
                columns[c] = pa.array([_number(v, i, c) for i, v in enumerate(values)], pa.float32())
            else:
                columns[c] = pa.array([None if v is None else str(v) for v in values], pa.string())
        batch = pa.RecordBatch.from_pydict(columns)
        spec.sent_ids = {c: [r.get(c) for r in rows] for c in spec.id_columns}  # JSON answers echo them as sent
        return spec, _cast_features(batch, spec, "request", 0)

    # ---- micro-batching
    def parse_inputs(self, body: bytes, content_type: str, probabilities: bool) -> tuple[Any, Any, Any]:
        """:meth:`parse`, then the model's inputs: the CPU work of a request, off the event loop."""
        from bigmodel_cli.inference.predict import model_inputs

        spec, batch = self.parse(body, content_type, probabilities)
        return spec, batch, model_inputs(batch, spec, 0, "request")

    async def predict(self, spec: Any, batch: Any, x: Any = None) -> Any:
        from bigmodel_cli.inference.predict import _output_table, model_inputs

        if x is None:
            x = model_inputs(batch, spec, 0, "request")
        if isinstance(x, dict):  # text/category ids differ in width per request: one call each
            probs = await asyncio.get_running_loop().run_in_executor(None, self.infer, x)
        else:
            assert self.queue is not None
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            try:
                self.queue.put_nowait((x, fut))
            except asyncio.QueueFull:
                self.stats["rejected"] += 1
                raise Overloaded() from None
            probs = await fut
        self.stats["requests"] += 1
        self.stats["rows"] += batch.num_rows
        return _output_table(batch, np.asarray(probs), spec)

    async def batcher(self) -> None:
        """Collects waiting requests into one inference call at a time."""
        from concurrent.futures import ThreadPoolExecutor

        assert self.queue is not None
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bigmodel-infer")
        loop = asyncio.get_running_loop()
        while True:
            first = await self.queue.get()
            items, rows = [first], len(first[0])
            deadline = loop.time() + self.max_wait_ms / 1000
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
                items.append(item)
                rows += len(item[0])
            x = np.concatenate([i[0] for i in items]) if len(items) > 1 else items[0][0]
            try:
                out = await loop.run_in_executor(pool, self.infer, x)
            except Exception as e:  # noqa: BLE001  (each waiting request gets the error)
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.stats["batches"] += 1
            at = 0
            for xi, fut in items:
                if not fut.done():
                    fut.set_result(out[at : at + len(xi)])
                at += len(xi)


MALFORMED = __import__("re").compile(r"cannot parse|not UTF-8|fields, the header has|is empty|no header")


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


def make_app(service: Service, api_key: str | None = None, max_body_mb: float = 16.0):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response

    limit = int(max_body_mb * 2**20)

    async def lifespan(app: Any):
        service.queue = asyncio.Queue(maxsize=service.max_queue)
        task = asyncio.create_task(service.batcher())
        yield
        task.cancel()

    app = FastAPI(title="bigmodel", description=f"Predictions of {service.metadata['run']} ({service.metadata['task']})", lifespan=lifespan)

    def denied(request: Request) -> "Response | None":
        if api_key and request.headers.get("authorization", "") != f"Bearer {api_key}":
            return JSONResponse({"error": "a valid 'Authorization: Bearer <key>' header is required"}, status_code=401)
        return None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "engine": service.engine, **service.stats}

    @app.get("/metadata")
    async def metadata(request: Request) -> Any:
        return denied(request) or service.metadata

    @app.post("/predict")
    async def predict(request: Request, probabilities: bool = False) -> Any:
        """Rows as JSON {"rows": [...]} or a CSV body (Content-Type: text/csv)."""
        refused = denied(request)
        if refused is not None:
            return refused
        size = int(request.headers.get("content-length") or 0)
        if size > limit:
            return JSONResponse({"error": f"the body is {size:,} bytes; the limit is {limit:,}"}, status_code=413)
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                return JSONResponse({"error": f"the body is over the limit of {limit:,} bytes"}, status_code=413)
        try:
            spec, batch, x = await asyncio.get_running_loop().run_in_executor(None, service.parse_inputs, bytes(body), request.headers.get("content-type", ""), probabilities)
            table = await service.predict(spec, batch, x)
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except DataError as e:
            status = 400 if MALFORMED.search(e.message) else 422  # the body's shape, or a row's values
            return JSONResponse({"error": e.message, **({"hint": e.hint} if e.hint else {})}, status_code=status)
        except Overloaded:
            return JSONResponse({"error": "the server is busy: too many requests are waiting; retry shortly"}, status_code=503, headers={"Retry-After": "1"})
        if "text/csv" in request.headers.get("accept", ""):
            import pyarrow.csv as pc

            buf = io.BytesIO()
            pc.write_csv(table, buf)
            return Response(buf.getvalue(), media_type="text/csv")
        return JSONResponse(_json_rows(table, spec))

    return app


def _json_rows(table: Any, spec: Any) -> dict[str, Any]:
    cols = table.to_pydict()
    preds = cols.pop("prediction")
    out: dict[str, Any] = {"predictions": preds}
    probs = {k[5:]: v for k, v in cols.items() if k.startswith("prob_")}
    if probs:
        classes = list(probs)
        out["classes"] = classes
        out["probabilities"] = [[probs[c][i] for c in classes] for i in range(len(preds))]
    ids = {k: v for k, v in cols.items() if not k.startswith("prob_")}
    ids.update(getattr(spec, "sent_ids", None) or {})
    if ids:
        out["ids"] = ids
    return out


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, engine: str = "auto", max_body_mb: float = 16.0, max_queue: int = 256, batch_rows: int = 4096, max_wait_ms: float = 2.0, announce: Any = None) -> None:
    """Load the run and serve it until SIGTERM/SIGINT (uvicorn drains requests in flight)."""
    import uvicorn

    t0 = time.perf_counter()
    service = Service.open(run, engine, max_queue=max_queue, batch_rows=batch_rows, max_wait_ms=max_wait_ms)
    app = make_app(service, api_key, max_body_mb)
    if announce:
        announce(service, time.perf_counter() - t0)
    import signal

    # uvicorn drains requests on SIGTERM/SIGINT, then re-raises the signal to the
    # handler it found (cooperative signal handling, encode/uvicorn#1600, since
    # 0.29: a plain uvicorn.run exits -15 on SIGTERM). A handler that does nothing lets
    # serve return, so a requested stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=4, access_log=False)
