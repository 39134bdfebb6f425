"""bigmodel serve: a real server process on a loopback port."""

import asyncio
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

KEY = "s3cret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(
    port: int,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    key: str | None = KEY,
) -> tuple[int, bytes, dict]:
    h = dict(headers or {})
    if key:
        h["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        headers=h,
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def start(run: Path, port: int, *extra: str) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.time()
    import tempfile

    log = tempfile.NamedTemporaryFile(
        "w+", prefix="serve-", suffix=".log", delete=False
    )  # a file: a full pipe would block the access log
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bigmodel_cli",
            "serve",
            str(run),
            "--port",
            str(port),
            "--api-key",
            KEY,
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        cwd=ROOT,
    )
    p.log = Path(log.name)
    while True:
        assert p.poll() is None, p.log.read_text()
        assert time.time() - t0 < 30
        try:
            if call(port, "/health", key=None)[0] == 200:
                return p, time.time() - t0
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)


class BusyClients:
    """``n`` threads posting ``body`` to /predict without pause
    until stopped; the statuses they got."""

    def __init__(self, port: int, body: bytes, n: int):
        self.statuses: list = []
        self._stop = threading.Event()
        js = {"Content-Type": "application/json"}

        def client():
            while not self._stop.is_set():
                self.statuses.append(call(port, "/predict", body, js)[0])

        self._threads = [threading.Thread(target=client) for _ in range(n)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> dict:
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join()
        return {s: self.statuses.count(s) for s in set(self.statuses)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from bigmodel_cli import api

    exp = tmp_path_factory.mktemp("serve") / "exp"
    api.init(exp, "binary-classifier")
    out = api.train(exp, ["train.epochs=3"])
    port = free_port()
    p, ready = start(out.run_dir, port, "--max-body-mb", "0.05")
    yield exp, out.run_dir, port, p, ready
    if p.poll() is None:
        p.kill()
        p.wait()


def test_health_fast_and_no_tensorflow_at_startup(server):
    exp, run, port, p, ready = server
    assert ready < 5.0
    status, body, _ = call(port, "/health", key=None)
    assert status == 200 and json.loads(body)["engine"] == "onnxruntime"
    status, body, _ = call(port, "/metadata")
    meta = json.loads(body)
    assert (
        meta["task"] == "binary"
        and meta["classes"] == ["benign", "malignant"]
        and meta["id_columns"] == ["sample_id"]
    )
    assert [f["name"] for f in meta["features"]] == [
        "worst_radius",
        "worst_concave_points",
    ] and len(meta["model_sha256"]) == 64
    import psutil

    assert not any(
        "tensorflow" in m.path for m in psutil.Process(p.pid).memory_maps()
    )  # onnxruntime only


def test_predictions_equal_bigmodel_predict(server, cli, tmp_path):
    exp, run, port, p, _ = server
    test_csv = exp / "data" / "test.csv"
    r = cli("predict", run, "--input", test_csv, "--output", tmp_path / "p.csv", "--probabilities")
    assert r.code == 0, r.err
    expected = list(csv.DictReader(open(tmp_path / "p.csv")))
    rows = [
        {k: (float(v) if k != "sample_id" else int(v)) for k, v in r.items() if k != "diagnosis"}
        for r in csv.DictReader(open(test_csv))
    ]
    status, body, _ = call(
        port,
        "/predict?probabilities=true",
        json.dumps({"rows": rows}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    got = json.loads(body)
    assert got["predictions"] == [e["prediction"] for e in expected]
    assert got["classes"] == ["benign", "malignant"]
    np.testing.assert_allclose(
        np.asarray(got["probabilities"]),
        [[float(e["prob_benign"]), float(e["prob_malignant"])] for e in expected],
        atol=1e-6,
    )
    assert got["ids"]["sample_id"] == [
        int(e["sample_id"]) for e in expected
    ]  # as sent: numbers stay numbers
    status, body, headers = call(
        port,
        "/predict?probabilities=true",
        test_csv.read_bytes(),
        {"Content-Type": "text/csv", "Accept": "text/csv"},
    )
    assert status == 200 and headers["content-type"].startswith("text/csv")
    got_csv = list(csv.DictReader(body.decode().splitlines()))
    assert [g["prediction"] for g in got_csv] == [e["prediction"] for e in expected]
    assert [g["sample_id"] for g in got_csv] == [e["sample_id"] for e in expected]


def test_coverage_answers_the_sets_predict_writes(server, cli, tmp_path):
    """?coverage=0.9 gives the conformal sets of `predict --coverage 0.9`, on both of
    serve's paths (number rows: the matrix at once; CSV: the Arrow table)."""
    exp, run, port, p, _ = server
    test_csv = exp / "data" / "test.csv"
    r = cli(
        "predict", run, "--input", test_csv, "--output", tmp_path / "p.csv", "--coverage", "0.9"
    )
    assert r.code == 0, r.err
    expected = [e["prediction_set"] for e in csv.DictReader(open(tmp_path / "p.csv"))]
    rows = [
        {k: float(v) for k, v in r.items() if k not in ("diagnosis", "sample_id")}
        for r in csv.DictReader(open(test_csv))
    ]
    status, body, _ = call(
        port,
        "/predict?coverage=0.9",
        json.dumps({"rows": rows}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, body
    got = json.loads(body)
    assert got["coverage"] == 0.9 and ["|".join(s) for s in got["prediction_sets"]] == expected
    status, body, _ = call(
        port, "/predict?coverage=0.9", test_csv.read_bytes(), {"Content-Type": "text/csv"}
    )
    assert status == 200 and ["|".join(s) for s in json.loads(body)["prediction_sets"]] == expected
    status, body, _ = call(
        port,
        "/predict?coverage=2",
        json.dumps({"rows": rows[:1]}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 400 and "between 0 and 1" in json.loads(body)["error"]


def test_bad_input_gets_clear_status_codes_and_the_server_lives(server):
    _, _, port, p, _ = server
    js = {"Content-Type": "application/json"}
    assert call(port, "/predict", b"{not json", js)[0] == 400
    assert call(port, "/predict", b'{"rows": []}', js)[0] == 400
    status, body, _ = call(
        port,
        "/predict",
        json.dumps(
            {
                "rows": [
                    {"worst_radius": 12, "worst_concave_points": 0.1},
                    {"worst_radius": "big", "worst_concave_points": 0.1},
                ]
            }
        ).encode(),
        js,
    )
    assert (
        status == 422
        and "row 2" in json.loads(body)["error"]
        and "worst_radius" in json.loads(body)["error"]
    )
    status, body, _ = call(
        port, "/predict", json.dumps({"rows": [{"worst_radius": 12}]}).encode(), js
    )
    assert status == 422 and "worst_concave_points" in json.loads(body)["error"]
    status, body, _ = call(
        port, "/predict", b"worst_radius,worst_concave_points\n12,\n", {"Content-Type": "text/csv"}
    )
    assert status == 422 and "row 1" in json.loads(body)["error"]
    status, body, _ = call(
        port,
        "/predict",
        b"worst_radius,worst_concave_points\n1,2,3\n",
        {"Content-Type": "text/csv"},
    )
    assert status == 400 and "line 2 has 3 fields" in json.loads(body)["error"]
    assert (
        call(
            port,
            "/predict",
            b"worst_radius,worst_concave_points\n\xff\xfe,1\n",
            {"Content-Type": "text/csv"},
        )[0]
        == 400
    )
    assert call(port, "/predict", b"", {"Content-Type": "text/csv"})[0] == 400
    assert (
        call(port, "/predict", b"a,b\n1,2\n", {"Content-Type": "text/csv"})[0] == 422
    )  # well-formed, but not the model's columns
    assert call(port, "/predict", b"x" * 60_000, js)[0] == 413
    assert (
        call(
            port,
            "/predict",
            b'{"rows": [{"worst_radius": 1, "worst_concave_points": 0}]}',
            js,
            key=None,
        )[0]
        == 401
    )
    assert (
        call(
            port,
            "/predict",
            b'{"rows": [{"worst_radius": 1, "worst_concave_points": 0}]}',
            js,
            key="wrong",
        )[0]
        == 401
    )
    assert p.poll() is None and call(port, "/health", key=None)[0] == 200


def test_concurrent_requests_are_micro_batched(server):
    _, _, port, _, _ = server
    before = json.loads(call(port, "/health", key=None)[1])
    errors: list = []
    row = json.dumps({"rows": [{"worst_radius": 14.0, "worst_concave_points": 0.1}]}).encode()

    def client():
        for _ in range(20):
            status, body, _ = call(port, "/predict", row, {"Content-Type": "application/json"})
            if status != 200 or json.loads(body)["predictions"] not in (["benign"], ["malignant"]):
                errors.append((status, body))

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = json.loads(call(port, "/health", key=None)[1])
    assert not errors
    assert after["requests"] - before["requests"] == 320
    assert after["batches"] - before["batches"] < 320  # several requests shared an inference call


def test_a_full_queue_answers_503_at_once():
    """In process: a slow model and a queue of one."""
    import pyarrow as pa

    from bigmodel_cli.inference.spec import PredictSpec
    from bigmodel_cli.inference.service import Overloaded, Service

    def slow(x):
        time.sleep(0.3)
        return np.zeros((len(x), 1), np.float32)

    spec = PredictSpec(features=["a"], task="regression")
    service = Service(
        spec, slow, "test", {"run": "x", "task": "regression"}, max_queue=1, max_wait_ms=0
    )
    batch = pa.RecordBatch.from_pydict({"a": pa.array([1.0], pa.float32())})

    async def main():
        service.queue = asyncio.Queue(maxsize=1)
        worker = asyncio.create_task(service.batcher())
        first = asyncio.create_task(service.predict(spec, batch))  # taken by the batcher, running
        await asyncio.sleep(0.05)
        second = asyncio.create_task(service.predict(spec, batch))  # waits in the queue
        await asyncio.sleep(0.01)
        t = time.perf_counter()
        with pytest.raises(Overloaded):
            await service.predict(spec, batch)
        assert time.perf_counter() - t < 0.1
        await first
        await second
        worker.cancel()

    asyncio.run(main())
    assert service.stats["rejected"] == 1 and service.stats["requests"] == 2


def test_sigterm_drains_and_exits_0(server):
    _, run, _, _, _ = server
    port = free_port()
    p, _ = start(run, port)
    result: dict = {}

    def slow_client():  # a request in flight when SIGTERM arrives
        rows = [{"worst_radius": 10 + i % 10, "worst_concave_points": 0.05} for i in range(40_000)]
        result["status"] = call(
            port,
            "/predict",
            json.dumps({"rows": rows}).encode(),
            {"Content-Type": "application/json"},
        )[0]

    t = threading.Thread(target=slow_client)
    t.start()
    time.sleep(0.15)  # the 1.9 MB request is being read and parsed
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
    t.join()
    assert p.returncode == 0 and time.time() - t0 < 5
    assert result.get("status") == 200  # the request in flight was answered before the exit


def test_wide_open_host_warns(tmp_path):
    # the warning is printed before the server starts
    from typer.testing import CliRunner  # noqa: F401

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "bigmodel_cli",
            "serve",
            str(tmp_path / "nothing"),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert "warning: listening on 0.0.0.0" in p.stderr and p.returncode == 2


def test_a_text_model_serves_what_predict_writes(tmp_path, cli):
    import gzip

    from bigmodel_cli import api

    exp = tmp_path / "text"
    api.init(exp, "text-classifier")
    out = api.train(
        exp, ["train.epochs=1", "train.steps_per_epoch=20", "train.early_stopping=null"]
    )
    rows = list(csv.DictReader(gzip.open(exp / "data" / "test.csv.gz", "rt", encoding="utf-8")))[
        :40
    ]
    rows.append({"text": "", "label": "positive"})  # an empty text is the empty text
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text"])
        w.writeheader()
        w.writerows({"text": r["text"]} for r in rows)
    r = cli(
        "predict",
        out.run_dir,
        "--input",
        tmp_path / "in.csv",
        "--output",
        tmp_path / "p.csv",
        "--probabilities",
    )
    assert r.code == 0, r.err
    expected = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
    port = free_port()
    p, _ = start(out.run_dir, port)
    try:
        status, body, _ = call(
            port,
            "/predict?probabilities=true",
            json.dumps({"rows": [{"text": r["text"]} for r in rows]}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200, body
        got = json.loads(body)
        assert got["predictions"] == [e["prediction"] for e in expected]
        cls = got["classes"]
        np.testing.assert_allclose(
            np.asarray(got["probabilities"]),
            [[float(e[f"prob_{c}"]) for c in cls] for e in expected],
            atol=1e-6,
        )
        meta = json.loads(call(port, "/metadata")[1])
        assert meta["features"] == [{"name": "text", "type": "text"}]
        # one row a request, all at once: texts of different lengths share inference calls
        before = json.loads(call(port, "/health", key=None)[1])
        answers: list = [None] * len(rows)

        def one(i: int) -> None:
            answers[i] = call(
                port,
                "/predict?probabilities=true",
                json.dumps({"rows": [{"text": rows[i]["text"]}]}).encode(),
                {"Content-Type": "application/json"},
            )

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(rows))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = json.loads(call(port, "/health", key=None)[1])
        assert len(answers) == len(expected) > 0
        for (status, body, _), e in zip(answers, expected, strict=True):
            assert status == 200, body
            got = json.loads(body)
            assert got["predictions"] == [e["prediction"]]
            np.testing.assert_allclose(
                got["probabilities"][0], [float(e[f"prob_{c}"]) for c in got["classes"]], atol=1e-6
            )
        assert after["requests"] - before["requests"] == len(rows)
        assert after["batches"] - before["batches"] < len(rows)  # some requests shared a call
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_predict_and_serve_choose_the_engine_alike(tmp_path, cli):
    """One chooser (inference.engine.open_engine): the same engine and the same
    error for predict and serve, on a run with inference.onnx and one without."""
    from bigmodel_cli import api
    from bigmodel_cli.errors import ModelFileError
    from bigmodel_cli.inference.service import Service

    exp = tmp_path / "exp"
    api.init(exp, "binary-classifier")
    with_copy = api.train(exp, ["train.epochs=1", "train.inference_copy=wait"]).run_dir
    without = api.train(exp, ["train.epochs=1", "train.inference_copy=none"]).run_dir
    data = exp / "data" / "test.csv"
    for run, auto in ((with_copy, "onnxruntime"), (without, "tensorflow")):
        assert Service.open(run).engine == auto
        assert (
            api.predict(run, [str(data)], output=str(tmp_path / f"{run.name}.csv"))[0].engine
            == auto
        )
        assert Service.open(run, "tensorflow").engine == "tensorflow"
    for open_it in (
        lambda: Service.open(without, "onnxruntime"),
        lambda: api.predict(
            without, [str(data)], output=str(tmp_path / "x.csv"), engine="onnxruntime"
        ),
    ):
        with pytest.raises(ModelFileError, match="has no inference.onnx made from its model.keras"):
            open_it()
    r = cli("serve", without, "--engine", "onnxruntime", "--port", str(free_port()))
    assert r.code == 2 and "has no inference.onnx" in r.err, r.err


def test_number_rows_and_text_rows_take_two_paths_to_one_answer(server):
    """All-number JSON rows go straight to the model's matrix (service.plain_numbers);
    the same rows with a value as text, a boolean or a null take the Arrow path
    predict reads files with. Both answers must be the same."""
    from bigmodel_cli.inference import service as service_mod

    exp, _, port, _, _ = server
    rows = [
        {k: (float(v) if k != "sample_id" else int(v)) for k, v in r.items() if k != "diagnosis"}
        for r in csv.DictReader(open(exp / "data" / "test.csv"))
    ][:40]
    as_text = [
        {k: (str(v) if k == "worst_radius" and v is not None else v) for k, v in r.items()}
        for r in rows
    ]
    js = {"Content-Type": "application/json"}
    fast = json.loads(
        call(port, "/predict?probabilities=true", json.dumps({"rows": rows}).encode(), js)[1]
    )
    slow = json.loads(
        call(port, "/predict?probabilities=true", json.dumps({"rows": as_text}).encode(), js)[1]
    )
    assert fast["predictions"] == slow["predictions"] and fast["classes"] == slow["classes"]
    np.testing.assert_allclose(fast["probabilities"], slow["probabilities"], atol=1e-7)
    assert fast["ids"] == slow["ids"]
    # a null under this template's data.missing (error): the same 422 on both paths
    rows[3]["worst_radius"], as_text[3]["worst_radius"] = None, None
    as_text[3]["worst_concave_points"] = str(as_text[3]["worst_concave_points"])
    answers = [
        call(port, "/predict", json.dumps({"rows": r}).encode(), js) for r in (rows, as_text)
    ]
    assert [a[0] for a in answers] == [422, 422] and all(
        "row 4" in json.loads(a[1])["error"] and "worst_radius" in json.loads(a[1])["error"]
        for a in answers
    )
    # said in the HTTP API's words: the request, no internal 'block', no CLI flag
    bad = [dict(r) for r in as_text]
    bad[1]["worst_radius"] = "forty"
    answers.append(call(port, "/predict", json.dumps({"rows": bad}).encode(), js))
    docs = [json.loads(a[1]) for a in answers]
    assert answers[-1][0] == 422 and "'forty'" in docs[-1]["error"], docs[-1]
    assert "null (JSON) is a missing value" in docs[-1].get("hint", ""), docs[-1]
    for d in docs:
        said = d["error"] + d.get("hint", "")
        assert "block" not in said and "--" not in said and "output was written" not in said, d
    # which path each body takes
    from bigmodel_cli.inference.spec import PredictSpec

    spec = PredictSpec(features=["a", "b"], task="regression", missing="impute")
    assert service_mod.plain_numbers([{"a": 1, "b": None}], spec) is not None
    assert service_mod.plain_numbers([{"a": "1", "b": 2}], spec) is None
    assert service_mod.plain_numbers([{"a": True, "b": 2}], spec) is None
    # CSV answers from the number path carry the ids too
    status, body, _ = call(
        port, "/predict", json.dumps({"rows": rows[:2]}).encode(), {**js, "Accept": "text/csv"}
    )
    got = list(csv.DictReader(body.decode().splitlines()))
    assert status == 200 and [g["sample_id"] for g in got] == [
        str(r["sample_id"]) for r in rows[:2]
    ]


def test_workers_share_one_port_with_nodelay_and_stop_on_sigterm(server):
    import socket as so

    from bigmodel_cli.inference.serve import tcp_listener

    sock = tcp_listener("127.0.0.1", 0)
    assert sock.proto == so.IPPROTO_TCP  # so asyncio sets TCP_NODELAY (Kludex/uvicorn#3149)
    sock.close()
    _, run, _, _, _ = server
    port = free_port()
    p, _ = start(run, port, "--workers", "2")
    try:
        pids = set()
        row = json.dumps(
            {"rows": [{"worst_radius": 14.0, "worst_concave_points": 0.1, "sample_id": 1}]}
        ).encode()
        deadline = time.time() + 20
        while (
            len(pids) < 2 and time.time() < deadline
        ):  # each call a new connection: either worker may take it
            status, body, _ = call(port, "/predict", row, {"Content-Type": "application/json"})
            assert status == 200 and json.loads(body)["predictions"] in (["benign"], ["malignant"])
            pids.add(json.loads(call(port, "/health", key=None)[1])["pid"])
        assert p.pid not in pids and len(pids) == 2, (
            pids
        )  # both worker processes answered, not the parent
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0


def test_metrics_access_log_request_id_and_offline_docs(server):
    _, run, port, p, _ = server
    js = {"Content-Type": "application/json"}
    row = json.dumps(
        {"rows": [{"worst_radius": 14.0, "worst_concave_points": 0.1, "sample_id": 5}]}
    ).encode()
    status, _, headers = call(port, "/predict", row, {**js, "X-Request-ID": "job-42"})
    assert status == 200 and headers["x-request-id"] == "job-42"
    status, _, headers = call(
        port, "/predict", b'{"rows": [{"worst_radius": "big", "worst_concave_points": 0.1}]}', js
    )
    assert status == 422 and len(headers["x-request-id"]) == 32  # none sent: a new one
    status, body, headers = call(port, "/metrics", key=None)
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(text)}
    ok = [
        s.value
        for s in families["bigmodel_requests"].samples
        if s.labels.get("path") == "/predict"
        and s.labels.get("status") == "200"
        and s.name.endswith("_total")
    ]
    bad = [
        s.value
        for s in families["bigmodel_requests"].samples
        if s.labels.get("status") == "422" and s.name.endswith("_total")
    ]
    assert ok and ok[0] >= 1 and bad and bad[0] >= 1
    assert {
        "bigmodel_request_seconds",
        "bigmodel_rows",
        "bigmodel_batch_rows",
        "bigmodel_queue_depth",
        "bigmodel_info",
    } <= set(families)
    assert any(s.labels.get("engine") == "onnxruntime" for s in families["bigmodel_info"].samples)
    time.sleep(0.2)
    lines = [json.loads(line) for line in p.log.read_text().splitlines() if line.startswith("{")]
    mine = [x for x in lines if x["request_id"] == "job-42"]
    assert (
        mine
        and mine[0]["path"] == "/predict"
        and mine[0]["status"] == 200
        and mine[0]["rows"] == 1
        and mine[0]["ms"] > 0
    )
    # /docs: Swagger UI from local files, and a declared /predict body with an example from the data
    status, body, _ = call(port, "/docs", key=None)
    assert (
        status == 200
        and b"/docs-assets/swagger-ui-bundle.js" in body
        and b"cdn" not in body.lower()
    )
    status, body, _ = call(port, "/docs-assets/swagger-ui-bundle.js", key=None)
    assert status == 200 and len(body) > 100_000
    spec = json.loads(call(port, "/openapi.json", key=None)[1])
    req = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    props = req["application/json"]["schema"]["properties"]["rows"]["items"]["properties"]
    assert {"worst_radius", "worst_concave_points"} <= set(props)
    example = req["application/json"]["example"]["rows"][0]
    assert isinstance(example["worst_radius"], float) and "sample_id" in example
    status, body, _ = call(
        port, "/predict", json.dumps(req["application/json"]["example"]).encode(), js
    )
    assert status == 200  # "Try it out" with the example works


def test_explain_answers_what_the_cli_gives(server, cli):
    """POST /explain: the same per-row attributions as `bigmodel explain --rows`."""
    exp, run, port, p, _ = server
    test_csv = exp / "data" / "test.csv"
    r = cli("explain", run, "--data", test_csv, "--rows", "3", "--repeats", "1", "--json")
    assert r.code == 0, r.err
    expected = json.loads(r.out)["per_row"]
    rows = [
        {k: float(v) for k, v in row.items() if k not in ("diagnosis", "sample_id")}
        for row in list(csv.DictReader(open(test_csv)))[:3]
    ]
    status, body, _ = call(
        port, "/explain", json.dumps({"rows": rows}).encode(), {"Content-Type": "application/json"}
    )
    assert status == 200, body
    got = json.loads(body)
    assert got["method"] == "occlusion" and "training rows" in got["baseline_source"]
    assert len(got["rows"]) == len(expected) > 0
    for g, e in zip(got["rows"], expected, strict=True):
        assert g["row"] == e["row"] and g["output"] == pytest.approx(e["output"], abs=1e-5)
        assert set(g["attributions"]) == set(e["attributions"])
        for c in e["attributions"]:
            assert g["attributions"][c] == pytest.approx(e["attributions"][c], abs=1e-5)
    status, body, _ = call(
        port,
        "/explain",
        json.dumps({"rows": rows * 40}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status in (400, 413), body  # 120 rows: over the per-request limit (or the body limit)


def test_reload_under_load_fails_no_request(tmp_path):
    """A new run trained while the server answers, then POST /admin/reload and SIGHUP:
    every request of four busy clients is answered 200, /metadata shows the new
    model's sha256, and a reload that cannot load keeps the old model serving."""
    import hashlib

    from bigmodel_cli import api

    exp = tmp_path / "exp"
    api.init(exp, "binary-classifier")
    first = api.train(exp, ["train.epochs=2"])
    port = free_port()
    p, _ = start(exp, port)  # the experiment folder: a reload opens its newest run
    js = {"Content-Type": "application/json"}
    rows = [
        {k: float(v) for k, v in r.items() if k not in ("diagnosis", "sample_id")}
        for r in list(csv.DictReader(open(exp / "data" / "test.csv")))[:5]
    ]
    busy = BusyClients(port, json.dumps({"rows": rows}).encode(), 4)
    try:
        meta0 = json.loads(call(port, "/metadata")[1])
        assert meta0["run"] == str(first.run_dir)
        busy.start()
        second = api.train(exp, ["train.epochs=3", "seed=7"])
        status, answer, _ = call(port, "/admin/reload", b"", js)
        assert status == 200, answer
        doc = json.loads(answer)
        new_sha = hashlib.sha256((second.run_dir / "model.keras").read_bytes()).hexdigest()
        assert (
            doc["changed"]
            and doc["model_sha256_before"] == meta0["model_sha256"]
            and doc["model_sha256"] == new_sha
        )
        assert doc["run"] == str(second.run_dir)
        assert call(port, "/admin/reload", b"", js, key=None)[0] == 401  # behind the API key
        p.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while '"event": "reload"' not in p.log.read_text():
            assert time.time() < deadline, p.log.read_text()
            time.sleep(0.1)
        good = (second.run_dir / "model.keras").read_bytes()
        (second.run_dir / "model.keras").write_bytes(b"not a model")  # a reload that fails
        status, answer, _ = call(port, "/admin/reload", b"", js)
        assert status == 409 and "still serving" in json.loads(answer)["error"], answer
        (second.run_dir / "model.keras").write_bytes(good)
        time.sleep(0.3)
    finally:
        counts = busy.stop()
        metrics = call(port, "/metrics", key=None)[1].decode() if p.poll() is None else ""
        p.terminate()
        p.wait(timeout=10)
    assert sum(counts.values()) > 20 and set(counts) == {200}, counts
    assert "bigmodel_reloads_total 2.0" in metrics
    assert (
        json.loads(
            next(line for line in p.log.read_text().splitlines() if '"event": "reload"' in line)
        )["model_sha256"]
        == new_sha
    )


@pytest.mark.slow  # two worker processes started twice over: ~20 s
def test_workers_reload_one_after_another_and_fail_no_request(tmp_path):
    """--workers 2: POST /admin/reload hands SIGHUP to uvicorn's supervisor, which
    starts each new worker before it retires an old one; a busy client sees only 200s
    and every worker ends on the newest run."""
    import hashlib

    from bigmodel_cli import api

    exp = tmp_path / "exp"
    api.init(exp, "binary-classifier")
    api.train(exp, ["train.epochs=2"])
    port = free_port()
    p, _ = start(exp, port, "--workers", "2")
    js = {"Content-Type": "application/json"}
    busy = BusyClients(
        port,
        json.dumps({"rows": [{"worst_radius": 14.0, "worst_concave_points": 0.1}]}).encode(),
        3,
    )
    try:
        busy.start()
        second = api.train(exp, ["train.epochs=3", "seed=7"])
        new_sha = hashlib.sha256((second.run_dir / "model.keras").read_bytes()).hexdigest()
        status, answer, _ = call(port, "/admin/reload", b"", js)
        assert status == 202, answer
        deadline, streak, meta = time.time() + 60, 0, None
        while (
            streak < 10
        ):  # ten answers in a row, each on a new connection (either worker), from the new model
            assert time.time() < deadline, meta
            meta = json.loads(call(port, "/metadata")[1])
            streak = streak + 1 if meta["model_sha256"] == new_sha else 0
            time.sleep(0.1)
        assert meta["run"] == str(second.run_dir)
    finally:
        counts = busy.stop()
        p.terminate()
        p.wait(timeout=20)
    assert sum(counts.values()) > 20 and set(counts) == {200}, counts
