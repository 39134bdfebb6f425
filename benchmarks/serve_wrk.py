"""bigmodel serve under wrk, against a bare FastAPI + uvicorn app in the same run.

The load generator is wrk (Debian package; skipped with the reason when it is
missing): keep-alive connections, 2 threads, POSTs of a JSON body to /predict,
each server alone on the machine while it is measured. The floor is a FastAPI
app on the same uvicorn settings that parses the same body and returns a
constant list: the framework's own cost, with no model. The goal (issue 24):

  16 connections, 1-row requests: bigmodel's requests/s >= 0.5x the floor's,
  p99 <= 2x the floor's, 0 errors.

Also reported: 64 connections; 1,000-row requests in rows/s against
`bigmodel predict` on the same rows (whole process); `--workers N` scaling.

    python benchmarks/serve_wrk.py [--template regression] [--seconds 10] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIGMODEL, machine  # noqa: E402

FLOOR_APP = textwrap.dedent(
    """
    import json, sys
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        doc = json.loads(await request.body())
        return JSONResponse({"predictions": [0.0] * len(doc["rows"])})

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited {proc.returncode}: "
                f"{proc.stderr.read().decode()[-500:] if proc.stderr else ''}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(port: int, body_file: Path, connections: int, seconds: int, threads: int = 2) -> dict:
    lua = body_file.with_suffix(".lua")
    lua.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nlocal f = '
        f'io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
    )
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}/predict",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if not lat or rps == 0:
        raise RuntimeError(f"wrk got no answers from port {port}:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in sock.groups()) if sock else 0
    )
    return {
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "rps": rps,
        "errors": errors,
        "connections": connections,
    }


def start(cmd: list[str], port: int, env: dict) -> subprocess.Popen:
    # stderr to a file: serve writes an access-log line a request, and a pipe nobody
    # reads fills up and stops the server
    log = tempfile.NamedTemporaryFile("w+b", prefix="serve-wrk-", suffix=".log", delete=False)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    p.stderr = open(log.name, "rb")
    wait_port(port, p)
    return p


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", default="regression")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--workers", default="1,2", help="bigmodel serve --workers values to measure")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("serve_wrk: skipped: wrk is not installed (Debian: apt-get install wrk)")
        return 0
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "",
        "BIGMODEL_INFERENCE_COPY": "wait",
    }
    tmp = Path(tempfile.mkdtemp(prefix="bigmodel-wrk-"))
    import pandas as pd

    exp = tmp / "exp"
    subprocess.run(
        [*BIGMODEL, "init", exp, "-t", args.template], check=True, capture_output=True, env=env
    )
    run = json.loads(
        subprocess.run(
            [*BIGMODEL, "train", exp, "--set", "train.epochs=2", "--json"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    )["run_dir"]
    cfg = __import__("yaml").safe_load(open(Path(run) / "config.yaml"))
    df = pd.read_csv(
        (exp / cfg["data"]["train"])
        if not Path(cfg["data"]["train"]).is_absolute()
        else cfg["data"]["train"]
    )
    feats = cfg["data"]["features"]
    one = tmp / "one.json"
    one.write_text(json.dumps({"rows": df[feats].head(1).to_dict("records")}))
    big_rows = pd.concat([df[feats]] * (1000 // len(df) + 1)).head(1000)
    thousand = tmp / "thousand.json"
    thousand.write_text(json.dumps({"rows": big_rows.to_dict("records")}))
    print(
        f"serve under wrk · {machine()} · template {args.template} · {args.seconds}s a "
        "measurement, 2 wrk threads"
    )
    results: dict = {"machine": machine(), "template": args.template}

    port = free_port()
    p = start([sys.executable, "-c", FLOOR_APP, str(port)], port, env)
    try:
        wrk(port, one, 16, 2)  # warm up
        floor = {c: wrk(port, one, c, args.seconds) for c in (16, 64)}
        floor_1000 = wrk(port, thousand, 16, args.seconds)
    finally:
        stop(p)
    results["floor"] = floor
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        port = free_port()
        p = start(
            [
                *BIGMODEL,
                "serve",
                run,
                "--port",
                str(port),
                *(["--workers", str(workers)] if workers > 1 else []),
            ],
            port,
            env,
        )
        try:
            wrk(port, one, 16, 2)
            got = {c: wrk(port, one, c, args.seconds) for c in (16, 64)}
            got_1000 = wrk(port, thousand, 16, args.seconds)
        finally:
            stop(p)
        rows.append((workers, got, got_1000))
    results["bigmodel"] = {str(w): {"one_row": g, "thousand_rows": t} for w, g, t in rows}

    csv = tmp / "rows.csv"
    pd.concat([df[feats]] * (100_000 // len(df) + 1)).head(100_000).to_csv(csv, index=False)
    t0 = time.perf_counter()
    subprocess.run(
        [*BIGMODEL, "predict", run, "--input", csv, "--output", tmp / "preds.csv"],
        check=True,
        capture_output=True,
        env=env,
    )
    predict_rows_s = 100_000 / (time.perf_counter() - t0)

    print(
        f"{'server':<22} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} "
        f"{'errors':>6}  {'vs floor':>9}"
    )
    for c in (16, 64):
        f = floor[c]
        print(
            f"{'bare FastAPI (floor)':<22} {c:>5} {f['p50_ms']:>8.2f} {f['p99_ms']:>8.2f} "
            f"{f['rps']:>9,.0f} {f['errors']:>6}"
        )
    ok = True
    for workers, got, _ in rows:
        for c in (16, 64):
            g, f = got[c], floor[c]
            ratio = g["rps"] / f["rps"]
            print(
                f"{'bigmodel serve x' + str(workers):<22} {c:>5} {g['p50_ms']:>8.2f} "
                f"{g['p99_ms']:>8.2f} {g['rps']:>9,.0f} {g['errors']:>6}  {ratio:>8.2f}x"
            )
            if workers == 1 and c == 16:
                ok = ratio >= 0.5 and g["p99_ms"] <= 2 * f["p99_ms"] and g["errors"] == 0
                results["goal"] = {
                    "throughput_ratio": ratio,
                    "p99_ratio": g["p99_ms"] / f["p99_ms"],
                    "errors": g["errors"],
                    "ok": ok,
                }
    print(
        f"1,000-row requests, 16 connections: floor {floor_1000['rps'] * 1000:,.0f} rows/s "
        "(parse only)",
        end="",
    )
    for workers, _, t in rows:
        print(
            f" · bigmodel x{workers} {t['rps'] * 1000:,.0f} rows/s (p99 {t['p99_ms']:.0f} "
            f"ms, {t['errors']} errors)",
            end="",
        )
    print(f" · bigmodel predict {predict_rows_s:,.0f} rows/s (100,000-row CSV, whole process)")
    g = results["goal"]
    print(
        f"goal (16 connections, x1): throughput {g['throughput_ratio']:.2f}x the floor (>= "
        f"0.5), p99 {g['p99_ratio']:.2f}x (<= 2), {g['errors']} errors: "
        f"{'met' if ok else 'NOT met'}"
    )
    results["predict_rows_per_s"] = predict_rows_s
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
