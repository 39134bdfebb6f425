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
import os
import signal
import sys
import threading
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bigmodel_cli.errors import ConfigError, DataError
from bigmodel_cli.inference.predict import output_table
from bigmodel_cli.inference.service import Answer, BadRequest, MALFORMED, Overloaded, Service


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
            output_table(None, table.probs, spec)
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
                    "reloading": "every worker, one after another (GET /metadata shows the new "
                    "model_sha256)",
                    "model_sha256_before": service.metadata["model_sha256"],
                },
                status_code=202,
            )
        try:
            return await service.reload()
        except Exception as e:  # noqa: BLE001  (the old model keeps serving)
            return JSONResponse(
                {
                    "error": f"reload failed, still serving {service.metadata['run']}: "
                    f"{getattr(e, 'message', None) or e}"
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
        "description": "conformal prediction sets (classifiers) or intervals (regressions) at this "
        "coverage, e.g. 0.9",
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
    # the rows' errors come in the HTTP API's words already (service.HTTP_WORDS)
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
    return output_table(pa.RecordBatch.from_pydict(ids), probs, spec)


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
