"""Data on object storage: a real local S3 server (moto's server mode) and s3fs.

Nothing is mocked in-process: bigmodel talks HTTP to the server through s3fs,
with the endpoint and keys in the standard AWS variables, as it would to AWS.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, run_process

pytest.importorskip("s3fs", reason="the bigmodel[cloud] extra is not installed")
pytest.importorskip("moto", reason="moto[server] (a dev dependency) is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(extra_env: dict | None = None):
    port = _free_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(extra_env or {})},
    )
    t0 = time.time()
    while time.time() - t0 < 30:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return p, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    p.kill()
    pytest.skip("moto server did not start")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    proc, url = _server()
    env = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "BIGMODEL_REMOTE_CACHE": str(tmp_path_factory.mktemp("remote-cache")),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the in-process CLI and the subprocesses see the same store
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    fs.mkdir("data")
    yield fs, env
    for k, v in old.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    s3fs.S3FileSystem.clear_instance_cache()
    proc.kill()


def _regression_table(n: int, seed: int) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    df = pd.DataFrame(x, columns=["a", "b", "c"])
    df["city"] = rng.choice(["Lyon", "Oslo", "Quito"], n)
    df["y"] = 2 * x[:, 0] - x[:, 1] + (df["city"] == "Oslo") + rng.normal(scale=0.1, size=n)
    return df


def test_init_train_eval_predict_export_on_s3(s3, cli, tmp_path):
    fs, env = s3
    df = _regression_table(600, 0)
    for k in range(3):  # three shards for training, one test object
        fs.pipe(
            f"data/shards/part{k}.csv",
            df.iloc[k * 150 : (k + 1) * 150].to_csv(index=False).encode(),
        )
    fs.pipe("data/test.csv", df.iloc[450:].to_csv(index=False).encode())
    exp = tmp_path / "exp"
    r = cli("init", exp, "--data", "s3://data/shards/*.csv", "--target", "y")
    assert r.code == 0, r.err
    cfg = (exp / "experiment.yaml").read_text()
    assert (
        "train: s3://data/shards/*.csv" in cfg and "s3://data/shards/" in r.err
    )  # referenced and shown as the URL
    sets = [
        "--set",
        "data.stream=true",
        "--set",
        "data.block_mb=0.002",
        "--set",
        "train.epochs=2",
        "--set",
        "model.ensemble=1",
        "--set",
        "model.tree_members=0",
        "--set",
        "model.ensemble_weights=equal",
    ]
    r = cli("train", exp, *sets, "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    run = Path(doc["run_dir"])
    r = cli("eval", run, "--data", "s3://data/test.csv", "--json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["data"] == "s3://data/test.csv" and m["rows"] == 150
    r = cli(
        "predict",
        run,
        "--input",
        "s3://data/test.csv",
        "--output",
        "s3://data/out/preds.csv",
        "--json",
    )
    assert r.code == 0, r.err
    assert (
        json.loads(r.out)["output"] == "s3://data/out/preds.csv"
        and json.loads(r.out)["input"] == "s3://data/test.csv"
    )
    preds = pd.read_csv(fs.open("data/out/preds.csv"))
    assert len(preds) == 150 and preds["prediction"].notna().all()
    again = cli(
        "predict", run, "--input", "s3://data/test.csv", "--output", "s3://data/out/preds.csv"
    )
    assert again.code != 0 and "exists already" in again.err
    r = cli("export", run, "--format", "onnx", "--output", "s3://data/models/model.onnx", "--json")
    assert r.code == 0, r.err
    assert fs.size("data/models/model.onnx") > 1000 and json.loads(r.out)["parity_ok"]
    r = cli(
        "export", run, "--format", "savedmodel", "--output", "s3://data/models/savedmodel", "--json"
    )
    assert r.code == 0, r.err
    assert fs.exists("data/models/savedmodel/saved_model.pb")


def test_block_cache_keys_on_the_etag_not_the_copy(s3, cli, tmp_path):
    fs, env = s3
    df = _regression_table(300, 1)
    for k in range(2):
        fs.pipe(
            f"data/etag/part{k}.csv", df.iloc[k * 150 : (k + 1) * 150].to_csv(index=False).encode()
        )
    exp = tmp_path / "exp"
    assert cli("init", exp, "--data", "s3://data/etag/*.csv", "--target", "y").code == 0
    sets = ["--set", "data.stream=true", "--set", "data.block_mb=0.002"]
    first = json.loads(cli("prepare", exp, *sets, "--json").out)
    assert first["converted"]
    from bigmodel_cli.data import remote

    for copy in Path(env["BIGMODEL_REMOTE_CACHE"]).rglob("part*.csv"):
        os.utime(copy, (0, 0))  # the local copies' times do not count
    assert not json.loads(cli("prepare", exp, *sets, "--json").out)["converted"]
    changed = df.iloc[150:].copy()
    changed["a"] += 1
    fs.pipe("data/etag/part1.csv", changed.to_csv(index=False).encode())  # a new ETag
    fs.invalidate_cache()
    third = json.loads(cli("prepare", exp, *sets, "--json").out)
    assert third["converted"] and third["folder"] != first["folder"]
    assert remote.origin(remote.fetch("s3://data/etag/part1.csv"))["identity"].startswith("ETag:")


def test_store_errors_are_one_line_naming_the_url(s3, tmp_path):
    fs, env = s3
    fs.pipe("data/errs/t.csv", _regression_table(50, 2).to_csv(index=False).encode())
    r = run_process(
        "init", tmp_path / "a", "--data", "s3://no-such-bucket/t.csv", "--target", "y", cwd=ROOT
    )
    assert (
        r.code == 2
        and "s3://no-such-bucket/t.csv: the bucket does not exist" in r.err
        and "Traceback" not in r.err
    )
    r = run_process(
        "init", tmp_path / "b", "--data", "s3://data/errs/missing.csv", "--target", "y", cwd=ROOT
    )
    assert r.code == 2 and "s3://data/errs/missing.csv: no such object" in r.err
    r = run_process(
        "init", tmp_path / "c", "--data", "s3://data/errs/*.parquet", "--target", "y", cwd=ROOT
    )
    assert r.code == 2 and "matches no object" in r.err


@pytest.mark.slow  # two more servers and a timeout: 25 s of make test's budget
def test_denied_and_timed_out_are_one_line_naming_the_url(s3, tmp_path):
    fs, env = s3
    fs.pipe("data/errs/t.csv", _regression_table(50, 2).to_csv(index=False).encode())
    # a server that checks keys: unknown ones are refused
    proc, url = _server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        r = run_process(
            "init",
            tmp_path / "d",
            "--data",
            "s3://data/errs/t.csv",
            "--target",
            "y",
            cwd=ROOT,
            env={"AWS_ENDPOINT_URL": url},
        )
        assert r.code == 2 and "s3://data/errs/t.csv: access denied" in r.err, r.err
    finally:
        proc.kill()
    # an endpoint that accepts the connection and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        t0 = time.time()
        r = run_process(
            "init",
            tmp_path / "e",
            "--data",
            "s3://data/errs/t.csv",
            "--target",
            "y",
            cwd=ROOT,
            env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "BIGMODEL_REMOTE_TIMEOUT": "2"},
        )
    assert r.code == 2 and "s3://data/errs/t.csv: timed out" in r.err, r.err
    assert time.time() - t0 < 60


def test_a_missing_cloud_library_is_one_line_with_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['gcsfs'] = None\nfrom bigmodel_cli.cli import "
        "main\nsys.exit(main(['init', sys.argv[1], '--data', 'gs://bucket/t.csv', '--target', "
        "'y']))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT
    )
    assert (
        p.returncode != 0
        and "gcsfs" in p.stderr
        and "bigmodel[cloud]" in p.stderr
        and "Traceback" not in p.stderr
    ), p.stderr


def test_an_http_url_is_read_and_refused_as_an_output(tmp_path, cli):
    """https:// (here plain http from a local server) reads like a file; it is never written."""
    pytest.importorskip("aiohttp")
    (tmp_path / "site").mkdir()
    _regression_table(200, 3).to_csv(tmp_path / "site" / "t.csv", index=False)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path / "site",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/t.csv"
        r = cli("init", tmp_path / "exp", "--data", url, "--target", "y")
        assert r.code == 0, r.err
        assert f"train: {url}" in (tmp_path / "exp" / "experiment.yaml").read_text()
        r = cli(
            "train",
            tmp_path / "exp",
            "--set",
            "train.epochs=1",
            "--set",
            "model.ensemble=1",
            "--set",
            "model.tree_members=0",
            "--set",
            "model.ensemble_weights=equal",
        )
        assert r.code == 0, r.err
        run = r.out.strip().splitlines()[-1]
        r = cli("predict", run, "--input", url, "--output", f"http://127.0.0.1:{port}/preds.csv")
        assert r.code == 2 and "read-only" in r.err
    finally:
        server.kill()
