"""bigmodel serve under load, on loopback only, bounded in count and time.

Trains the binary-classifier template (3 epochs), starts ``bigmodel serve`` on a
free loopback port, then:

1. 16 concurrent clients x 100 one-row JSON requests (keep-alive connections):
   errors and latency percentiles (target: 0 errors, p99 <= 50 ms);
2. 4 concurrent clients x 25 requests of 1,000 rows each: rows/s, against
   ``bigmodel predict`` (whole process) on a 100,000-row CSV of the same rows.

    python benchmarks/serve_bench.py
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIGMODEL, machine  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(port: int, clients: int, requests: int, body: bytes) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for _ in range(requests):
            t = time.perf_counter()
            try:
                conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append(time.perf_counter() - t)
            if not ok:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return latencies, errors[0]


def main() -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / "exp"
        subprocess.run(
            [*BIGMODEL, "init", exp, "-t", "binary-classifier"],
            check=True,
            capture_output=True,
            env=env,
        )
        r = subprocess.run(
            [*BIGMODEL, "train", exp, "--set", "train.epochs=3", "--json"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        run = json.loads(r.stdout)["run_dir"]
        port = free_port()
        t0 = time.perf_counter()
        server = subprocess.Popen(
            [*BIGMODEL, "serve", run, "--port", str(port), "--access-log", "off"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # no log: stderr is a pipe read only at the end
        try:
            while True:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    c.request("GET", "/health")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.perf_counter() - t0 > 30:
                    raise SystemExit("the server did not start in 30 s")
                time.sleep(0.05)
            ready = time.perf_counter() - t0
            one = json.dumps(
                {"rows": [{"worst_radius": 14.2, "worst_concave_points": 0.11}]}
            ).encode()
            load(port, 4, 10, one)  # warm-up
            t = time.perf_counter()
            lat, errors = load(port, 16, 100, one)
            wall = time.perf_counter() - t
            lat_ms = np.asarray(lat) * 1000
            rng = np.random.default_rng(0)
            rows = [
                {
                    "sample_id": i,
                    "worst_radius": float(rng.uniform(7, 30)),
                    "worst_concave_points": float(rng.uniform(0, 0.3)),
                }
                for i in range(1000)
            ]
            big = json.dumps({"rows": rows}).encode()
            t = time.perf_counter()
            lat_big, errors_big = load(port, 4, 25, big)
            wall_big = time.perf_counter() - t
        finally:
            server.terminate()
            server.wait(timeout=30)
        csv_path = Path(tmp) / "rows.csv"
        with open(csv_path, "w") as f:
            f.write("sample_id,worst_radius,worst_concave_points\n")
            for k in range(100):
                for r_ in rows:
                    sid = k * 1000 + r_["sample_id"]
                    f.write(f"{sid},{r_['worst_radius']},{r_['worst_concave_points']}\n")
        t = time.perf_counter()
        subprocess.run(
            [*BIGMODEL, "predict", run, "--input", csv_path, "--output", Path(tmp) / "out.csv"],
            check=True,
            capture_output=True,
            env=env,
        )
        predict_s = time.perf_counter() - t
    report = {
        "machine": machine(),
        "server_ready_s": round(ready, 2),
        "one_row": {
            "clients": 16,
            "requests": len(lat),
            "errors": errors,
            "p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
            "p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
            "requests_per_s": round(len(lat) / wall, 1),
        },
        "thousand_rows": {
            "clients": 4,
            "requests": len(lat_big),
            "errors": errors_big,
            "rows_per_s": round(len(lat_big) * 1000 / wall_big),
            "p99_ms": round(float(np.percentile(np.asarray(lat_big) * 1000, 99)), 1),
        },
        "bigmodel_predict_100k_rows": {
            "seconds": round(predict_s, 2),
            "rows_per_s": round(100_000 / predict_s),
        },
        "goals": {
            "0 errors and p99 <= 50 ms (16 x 100 one-row requests)": errors == 0
            and float(np.percentile(lat_ms, 99)) <= 50
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
