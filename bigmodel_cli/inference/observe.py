"""What ``bigmodel serve`` shows about itself: Prometheus metrics, an access log
line a request with its request id, and the API docs without a network.

- ``GET /metrics`` (prometheus-client's text format): requests by path and
  status, the latency histogram, rows predicted, rows per inference call, the
  queue depth, and the engine. Under ``--workers N`` each process counts its
  own requests (the answering ``pid`` is a label of ``bigmodel_info``).
- ``--access-log json`` (the default) writes one JSON line a request on stderr:
  time, request id, method, path, status, milliseconds, rows; ``off`` writes none.
  The request id is the client's ``X-Request-ID`` when it sends one (up to 128
  printable characters), else a new one; it is echoed in the answer's
  ``X-Request-ID`` header.
- ``/docs`` serves Swagger UI from the ``swagger-ui-bundle`` package, not from a
  CDN, so it works offline; the ``/predict`` body is declared from the run's
  columns and types, with rows of the training data as the example.

Example::

    metrics = Metrics("onnxruntime")
    app = Observed(app, metrics, access_log="json")
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any

from bigmodel_cli.features import registry

PATHS = ("/predict", "/health", "/metadata", "/metrics", "/docs", "/openapi.json")
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self, engine: str):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "bigmodel_requests",
            "HTTP requests answered, by path and status",
            ["path", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "bigmodel_request_seconds",
            "Time from the request to the answer",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter("bigmodel_rows", "Rows predicted", registry=r)
        self.batch_rows = Histogram(
            "bigmodel_batch_rows",
            "Rows in one inference call (requests the micro-batcher joined)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "bigmodel_queue_depth", "Requests waiting for the model", registry=r
        )
        self.rejected = Counter(
            "bigmodel_rejected", "Requests answered 503 because the queue was full", registry=r
        )
        self.reloads = Counter(
            "bigmodel_reloads", "Models loaded again (SIGHUP or POST /admin/reload)", registry=r
        )
        info = Gauge(
            "bigmodel_info",
            "The engine that answers, and this process",
            ["engine", "pid"],
            registry=r,
        )
        info.labels(engine=engine, pid=str(os.getpid())).set(1)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for k, v in headers:
        if k == b"x-request-id":
            text = v.decode("latin-1").strip()
            if 0 < len(text) <= 128 and text.isprintable():
                return text
            break
    return uuid.uuid4().hex


class Observed:
    """Pure ASGI middleware: the request id header, the access log line and the
    request metrics, for every HTTP request (a BaseHTTPMiddleware costs more)."""

    def __init__(self, app: Any, metrics: Metrics, access_log: str = "json", stream: Any = None):
        self.app, self.metrics, self.log, self.stream = app, metrics, access_log == "json", stream

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        rid = _request_id(scope.get("headers") or [])
        scope.setdefault("state", {})["request_id"] = rid
        status = [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", rid.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - t0
            path = scope.get("path", "")
            label = path if path in PATHS else "other"
            self.metrics.requests.labels(path=label, status=str(status[0])).inc()
            self.metrics.latency.labels(path=label).observe(seconds)
            if self.log:
                rows = scope["state"].get("rows")
                line = {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                    "request_id": rid,
                    "method": scope.get("method"),
                    "path": path,
                    "status": status[0],
                    "ms": round(seconds * 1000, 3),
                }
                if rows is not None:
                    line["rows"] = rows
                (self.stream or sys.stderr).write(json.dumps(line) + "\n")


def offline_docs(app: Any) -> None:
    """/docs from the swagger-ui-bundle package's files (no CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="bigmodel · API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def predict_body(
    features: list[dict[str, str]], id_columns: list[str], example: list[dict[str, Any]]
) -> dict[str, Any]:
    """The OpenAPI requestBody of /predict: the run's columns and types, an example."""
    props: dict[str, Any] = {}
    for f in features:
        props[f["name"]] = (
            {"type": ["number", "null"]}
            if not registry.encoded(f["type"])
            else {"type": ["string", "null"], "description": f"a {f['type']} column"}
        )
    for c in id_columns:
        props.setdefault(c, {"description": "an id column: passed through to the answer"})
    row = {"type": "object", "properties": props, "required": [f["name"] for f in features]}
    schema = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": row, "minItems": 1}},
        "required": ["rows"],
    }
    header = ",".join([*id_columns, *[f["name"] for f in features]])
    return {
        "required": True,
        "content": {
            "application/json": {"schema": schema, "example": {"rows": example}},
            "text/csv": {
                "schema": {"type": "string"},
                "example": header
                + "\n"
                + "\n".join(
                    ",".join("" if r.get(c) is None else str(r.get(c)) for c in header.split(","))
                    for r in example
                ),
            },
        },
    }


def example_rows(
    cfg: Any, base_dir: Any, features: list[str], id_columns: list[str], n: int = 2
) -> list[dict[str, Any]]:
    """The first rows of the training data as JSON values;
    placeholders by type when it cannot be read."""
    import math

    try:
        from bigmodel_cli.data.tables import read_table

        df = read_table(cfg.data.train, base_dir, "train", nrows=n, cfg=cfg)
        out = []
        for rec in (
            df[[c for c in [*id_columns, *features] if c in df.columns]].head(n).to_dict("records")
        ):
            out.append(
                {
                    k: (
                        None
                        if isinstance(v, float) and math.isnan(v)
                        else (v.item() if hasattr(v, "item") else v)
                    )
                    for k, v in rec.items()
                }
            )
        if out:
            return out
    except Exception:  # noqa: BLE001  (moved or remote data: the docs still load)
        pass
    columns = cfg.data.columns or {}
    return [{c: ("text" if registry.encoded(columns.get(c)) else 0.0) for c in features}]
