"""Streaming (data.stream): the block cache, the order contract, workers, resume and memory."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT

EXPERIMENT = {
    "name": "stream",
    "task": "classification",
    "seed": 7,
    "data": {
        "train": "data",
        "target": "label",
        "stream": True,
        "block_mb": 0.004,
        "shuffle_blocks": 2,
        "validation": None,
        "features": [f"f{i}" for i in range(4)],
    },
    "model": {
        "layers": [
            {"Dense": {"units": 8, "activation": "relu"}},
            {"Dense": {"units": 3, "activation": "softmax"}},
        ]
    },
    "train": {"epochs": 2, "batch_size": 12, "steps_per_execution": 1},
}


def make_table(
    folder: Path, rows: int = 3000, shards: int = 3, seed: int = 0, extra: dict | None = None
) -> Path:
    """An experiment over ``shards`` CSV shards (one gzipped) with a row-id column ``rid``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(4)])
    df["rid"] = np.arange(rows)
    df["label"] = np.array(["a", "b", "c"])[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)]
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(rows), shards)):
        name = f"part{k}.csv.gz" if k == 1 else f"part{k}.csv"
        df.iloc[part].to_csv(folder / "data" / name, index=False)
    doc = json.loads(json.dumps(EXPERIMENT))
    for k, v in (extra or {}).items():
        section, key = k.split(".", 1)
        doc[section][key] = v
    (folder / "experiment.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def load(folder: Path, *sets: str):
    from bigmodel_cli.data.load import load_datasets
    from bigmodel_cli.config.load import load_experiment

    cfg, base = load_experiment(folder, list(sets))
    return cfg, load_datasets(cfg, base)


def rid_table(folder: Path):
    """A streamed split whose only 'feature' is the row id: positions -> rows are visible."""
    cfg, ds = load(folder, "data.features=[rid]")
    return cfg, ds.train


def order(split, epoch: int, start: int, stop: int, W: int = 1, shuffle: bool = True, G: int = 12):
    from bigmodel_cli.training.pipeline import Streamed

    s = Streamed(split, G, 7, shuffle)
    out = [[] for _ in range(W)]
    for i in range(W):
        for rows in s.positions(epoch, start, stop, i, W, G * 4):
            out[i].append(rows[:, 0])
    return [np.concatenate(o) if o else np.zeros(0) for o in out]


def test_epoch_order_is_a_pure_function_of_seed_and_epoch(tmp_path):
    _, split = rid_table(make_table(tmp_path))
    n = len(split)
    assert n == 3000
    (a,) = order(split, 0, 0, n)
    (b,) = order(split, 0, 0, n)
    (c,) = order(split, 1, 0, n)
    np.testing.assert_array_equal(a, b)
    assert sorted(a.astype(int).tolist()) == list(range(n))  # every row exactly once
    assert not np.array_equal(a, c)
    assert sorted(c.astype(int).tolist()) == list(range(n))
    (plain,) = order(split, 0, 0, n, shuffle=False)
    np.testing.assert_array_equal(plain, np.arange(n))  # no shuffle: the files' order
    # beyond one pass (train.steps_per_epoch): a fresh order for the next pass
    (two,) = order(split, 0, 0, 2 * n)
    np.testing.assert_array_equal(two[:n], a)
    assert sorted(two[n:].astype(int).tolist()) == list(range(n)) and not np.array_equal(two[n:], a)


def test_a_resumed_epoch_continues_the_same_order(tmp_path):
    _, split = rid_table(make_table(tmp_path))
    (full,) = order(split, 3, 0, len(split))
    for start in (12, 600, 1236, 2988):
        (rest,) = order(split, 3, start, len(split))
        np.testing.assert_array_equal(rest, full[start:])


@pytest.mark.parametrize("W", [2, 3, 4])
def test_workers_read_only_their_share_and_together_make_the_same_batches(tmp_path, monkeypatch, W):
    from bigmodel_cli.data import block_format, block_reader

    _, split = rid_table(make_table(tmp_path))
    n = len(split) // 12 * 12
    (single,) = order(split, 1, 0, n)
    read: dict[int, set] = {}
    real = block_reader.read_block
    current = {"i": -1}

    def spy(path, out):
        read.setdefault(current["i"], set()).add(int(Path(path).name.split("-p")[1][:2]))
        return real(path, out)

    monkeypatch.setattr(block_reader, "read_block", spy)
    from bigmodel_cli.training.pipeline import Streamed

    s = Streamed(split, 12, 7, True)
    shares = []
    for i in range(W):
        current["i"] = i
        shares.append(np.concatenate(list(s.positions(1, 0, n, i, W, 48)))[:, 0])
    for i in range(W):
        assert read[i] == {
            c for c in range(block_format.PARTITIONS) if c % W == i
        }  # its partitions only
        assert len(shares[i]) == n // W
    merged = np.empty(n)
    for i in range(W):
        merged[i::W] = shares[i]
    np.testing.assert_array_equal(merged, single)  # position by position: the same global batches


def test_five_workers_are_refused_with_a_hint(tmp_path):
    from bigmodel_cli.errors import ConfigError

    _, split = rid_table(make_table(tmp_path))
    with pytest.raises(ConfigError, match="1, 2, 3, 4, 6 or 12 workers"):
        order(split, 0, 0, 60, W=5)


def test_reader_memory_is_a_window_of_blocks_per_partition(tmp_path, monkeypatch):
    from bigmodel_cli.data import block_format, block_reader

    cfg, split = rid_table(make_table(tmp_path, rows=60_000))
    held: dict[int, int] = {}
    peak = [0]
    real_load = block_reader.PartitionStream._load

    def load(self, w):
        real_load(self, w)
        held[id(self)] = self.data.nbytes
        peak[0] = max(peak[0], sum(held.values()))

    monkeypatch.setattr(block_reader.PartitionStream, "_load", load)
    order(split, 0, 0, len(split))
    block_bytes = split.m["block_rows"] * split.width * 4
    blocks_total = sum(len(p) for p in split.parts)
    assert blocks_total >= 4 * block_format.PARTITIONS  # the data is many windows long
    assert peak[0] <= block_format.PARTITIONS * cfg.data.shuffle_blocks * block_bytes
    assert peak[0] < 0.25 * len(split) * split.width * 4


def test_statistics_of_the_conversion_pass_match_the_in_memory_ones(tmp_path):
    from bigmodel_cli.features.number import ColumnStats

    rng = np.random.default_rng(1)
    folder = make_table(tmp_path, rows=4000, extra={"data.missing": "impute"})
    df = pd.concat([pd.read_csv(p) for p in sorted((folder / "data").iterdir())])
    holes = rng.random(len(df)) < 0.05
    df.loc[holes, "f2"] = np.nan
    for p in (folder / "data").iterdir():
        p.unlink()
    df.iloc[:2500].to_csv(folder / "data" / "a.csv", index=False)
    df.iloc[2500:].to_csv(folder / "data" / "b.csv", index=False)
    cfg, ds = load(folder)
    streamed = ds.train.numeric_stats()
    exact = ColumnStats.of(df[[f"f{i}" for i in range(4)]].to_numpy(np.float32))
    np.testing.assert_allclose(streamed.mean, exact.mean, atol=1e-6)
    np.testing.assert_allclose(streamed.std, exact.std, rtol=1e-5)
    np.testing.assert_allclose(
        streamed.median, exact.median, atol=1e-6
    )  # fewer rows than the sample: exact
    assert streamed.flagged == [2]
    mean, std = streamed.after_impute()
    filled = df[[f"f{i}" for i in range(4)]].to_numpy(np.float64)
    filled[:, 2] = np.where(np.isnan(filled[:, 2]), exact.median[2], filled[:, 2])
    after = np.concatenate([filled, holes[:, None].astype(float)], axis=1)
    np.testing.assert_allclose(mean, after.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(std, after.std(axis=0), rtol=1e-5)


def test_validation_fraction_and_categories_when_streamed(tmp_path):
    folder = make_table(tmp_path, rows=5000, extra={"data.validation": 0.2})
    df = pd.read_csv(folder / "data" / "part0.csv")
    df["colour"] = np.random.default_rng(0).choice(["red", "green", "Blue ", None], size=len(df))
    df.to_csv(folder / "data" / "part0.csv", index=False)
    for p in ["part1.csv.gz", "part2.csv"]:
        d = pd.read_csv(folder / "data" / p)
        d["colour"] = "green"
        d.to_csv(folder / "data" / p, index=False)
    cfg, ds = load(folder, "data.features=[f0,f1,f2,f3,rid,colour]")
    assert ds.columns["colour"] == "category"
    n_val = len(ds.validation)
    assert len(ds.train) + n_val == 5000 and 0.17 * 5000 < n_val < 0.23 * 5000
    seen = set()
    for x, y in ds.train.batches(1000):
        seen |= set(x["features"][:, 4].astype(int).tolist())
        assert set(np.unique(x["ids_colour"]).tolist()) <= {0, 2, 3, 4}
    held = set()
    for x, y in ds.validation.batches(1000):
        held |= set(x["features"][:, 4].astype(int).tolist())
    assert not (seen & held) and len(seen | held) == 5000  # disjoint, every row once
    enc = ds.tokenizers["colour"]
    assert enc.vocabulary[0] == "green" and "Blue" in enc.vocabulary


def _with_dates(folder: Path, bad_at: int | None = None) -> list[str]:
    """Give every shard an ISO date column ``when`` (5% empty); ``bad_at``: a line of part2.csv
    whose date is no date. Returns the dates in file order."""
    rng = np.random.default_rng(3)
    out = []
    for p in sorted((folder / "data").iterdir()):
        d = pd.read_csv(p)
        day = pd.Timestamp("2015-06-01") + pd.to_timedelta(rng.integers(0, 3000, len(d)), "D")
        when = day.strftime("%Y-%m-%d").to_numpy(object)
        when[rng.random(len(d)) < 0.05] = ""
        if bad_at is not None and p.name == "part2.csv":
            when[bad_at - 2] = "2021-13-45"
        d["when"] = when
        d.to_csv(p, index=False)
        out += ["" if pd.isna(v) else v for v in when]
    return out


def test_date_columns_stream_as_they_load_in_memory(tmp_path, cli):
    """A date column takes the one road when streamed: the same format, statistics and
    parts as the in-memory fit on the same training rows, the same error for a bad date,
    and a streamed run trains and predicts with it."""
    from bigmodel_cli.errors import DataError
    from bigmodel_cli.features.date import DateEncoder

    folder = make_table(tmp_path / "a", rows=3000)
    values = _with_dates(folder)
    cfg, ds = load(folder, "data.features=[f0,f1,when]")
    assert ds.columns["when"] == "date_iso"
    fitted = DateEncoder.fit(values, "date", "when")
    enc = ds.tokenizers["when"]
    assert enc.format == fitted.format
    np.testing.assert_allclose(enc.stats, fitted.stats, rtol=1e-12)
    got = np.concatenate([x["ids_when"] for x, _ in ds.train.batches(700)])
    want = fitted.ids(values)
    assert got.shape == want.shape == (3000, 8) and np.isnan(got[:, 0]).sum() > 100
    np.testing.assert_allclose(got, want, atol=1e-6)  # NaN where the date is missing, as well

    bad = make_table(tmp_path / "b", rows=3000)
    _with_dates(bad, bad_at=40)
    with pytest.raises(DataError, match=r"part2\.csv: line 40, column 'when' is not a date"):
        load(bad, "data.features=[f0,f1,when]")

    r = cli("train", folder, "--set", "data.features=[f0,f1,when]", "--set", "train.epochs=1")
    assert r.code == 0, r.err
    out = tmp_path / "p.csv"
    r = cli("predict", folder, "--input", folder / "data" / "part0.csv", "--output", out)
    assert r.code == 0, r.err
    assert len(pd.read_csv(out)) == len(pd.read_csv(folder / "data" / "part0.csv"))


def test_text_columns_stream_as_they_load_in_memory(tmp_path, cli):
    """A text column streamed: a first pass fits the vocabulary (the same n-grams, idf and
    auto settings as the in-memory fit on the same training rows), the blocks hold its
    ids (the same ids, zero-padded), and a streamed run with text trains and predicts."""
    from bigmodel_cli.features.text_type import TEXT
    from bigmodel_cli.config.load import load_experiment

    folder = make_table(tmp_path / "a", rows=3000)
    words = "good bad slow fast cheap price service delivery quality broken".split()
    rng = np.random.default_rng(5)
    texts = []
    for p in sorted((folder / "data").iterdir()):
        d = pd.read_csv(p)
        d["review"] = [" ".join(rng.choice(words, rng.integers(0, 9))) for _ in range(len(d))]
        d.to_csv(p, index=False)
        texts += pd.read_csv(p, keep_default_na=False)["review"].tolist()
    sets = ["data.features=[f0,f1,review]", "data.text.ngrams=auto", "data.text.max_tokens=auto"]
    cfg, ds = load(folder, *sets)
    assert ds.columns["review"] == "text"
    fitted = TEXT.fit(texts, "review", "text", load_experiment(folder, sets)[0])
    tok = ds.tokenizers["review"]
    assert tok.vocabulary == fitted.vocabulary and tok.spec == fitted.spec
    np.testing.assert_array_equal(tok.idf, fitted.idf)
    assert tok.chosen == fitted.chosen and tok.chosen
    got = np.concatenate([x["ids_review"] for x, _ in ds.train.batches(700)])
    want = fitted.ids(texts)
    assert got.shape[0] == 3000 and got.shape[1] >= want.shape[1] > 1
    np.testing.assert_array_equal(got[:, : want.shape[1]], want)
    assert not got[:, want.shape[1] :].any()  # the rest is padding

    sets = [a for s_ in sets for a in ("--set", s_)]
    r = cli("train", folder, *sets, "--set", "train.epochs=1")
    assert r.code == 0, r.err
    out = tmp_path / "p.csv"
    r = cli("predict", folder, "--input", folder / "data" / "part0.csv", "--output", out)
    assert r.code == 0, r.err
    assert len(pd.read_csv(out)) == len(pd.read_csv(folder / "data" / "part0.csv"))


def test_cache_is_reused_until_a_file_changes(tmp_path):
    from bigmodel_cli.data import block_cache
    from bigmodel_cli.config.load import load_experiment

    folder = make_table(tmp_path)
    cfg, base = load_experiment(folder, [])
    first = block_cache.prepare(cfg, base)
    again = block_cache.prepare(cfg, base)
    assert first.converted and not again.converted and again.folder == first.folder
    p = folder / "data" / "part2.csv"
    p.write_text(p.read_text() + "0,0,0,0,3000,a\n")
    changed = block_cache.prepare(cfg, base)
    assert changed.converted and changed.m["train"]["rows"] == 3001
    (changed.folder / changed.m["train"]["blocks"][0][0][0]).unlink()  # a damaged cache is rebuilt
    assert block_cache.prepare(cfg, base).converted


def test_a_bad_value_names_its_shard_and_line(tmp_path, monkeypatch):
    from bigmodel_cli.data import blocks
    from bigmodel_cli.errors import DataError

    monkeypatch.setattr(blocks, "CHUNK_ROWS", 100)
    folder = make_table(tmp_path)
    lines = (folder / "data" / "part2.csv").read_text().splitlines()
    lines[701] = lines[701].replace(lines[701].split(",")[2], "oops", 1)
    (folder / "data" / "part2.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=r"part2\.csv: line 702, column 'f2' is not a number: 'oops'"
    ):
        load(folder)
    assert not list((folder / "cache").glob("*/manifest.json"))  # nothing half-made is kept


def test_auto_streams_only_what_does_not_fit(tmp_path, monkeypatch):
    from bigmodel_cli.data import block_reader, streaming
    from bigmodel_cli.config.load import load_experiment
    from bigmodel_cli.errors import ConfigError

    folder = make_table(tmp_path, extra={"data.stream": "auto"})
    cfg, base = load_experiment(folder, [])
    monkeypatch.setattr(block_reader, "memory_budget", lambda: 10**12)
    assert streaming.stream_mode(cfg, base) is None
    monkeypatch.setattr(block_reader, "memory_budget", lambda: 1000)
    assert streaming.stream_mode(cfg, base) == "table"
    text = tmp_path / "text"
    text.mkdir()
    pd.DataFrame(
        {
            "review": [f"a long review number {i} with words" for i in range(50)],
            "label": ["a", "b"] * 25,
        }
    ).to_csv(text / "t.csv", index=False)
    doc = {**EXPERIMENT, "data": {"train": "t.csv", "target": "label", "stream": True}}
    (text / "experiment.yaml").write_text(yaml.safe_dump(doc))
    _, ds = load(text)  # text alone streams (no number column)
    assert ds.columns["review"] == "text" and len(ds.train) + len(ds.validation) == 50
    doc["model"] = {"backbone": "bert_tiny_en_uncased", "architecture": "mlp"}
    (text / "experiment.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="for a pretrained encoder yet .model.backbone.: review"):
        load(text)


def _start(exp: Path, *sets: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    args = [a for s in sets for a in ("--set", s)]
    return subprocess.Popen(
        [sys.executable, "-m", "bigmodel_cli", "train", str(exp), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_kill9_mid_epoch_then_resume_matches_uninterrupted(tmp_path, cli):
    from test_resume import assert_same_weights, history

    sets = ["train.epochs=3", "train.checkpoint_every_steps=23", "data.features=[f0,f1,f2,f3]"]
    ref = make_table(tmp_path / "ref", rows=3000)
    r = cli("train", ref, *[a for s in sets for a in ("--set", s)])
    assert r.code == 0, r.err
    ref_run = Path(r.out.strip().splitlines()[-1])
    exp = make_table(tmp_path / "killed", rows=3000)
    p = _start(exp, *sets)
    from bigmodel_cli.training.checkpoints import read_state

    def mid_epoch_checkpoint() -> bool:
        last = (
            next(iter((exp / "runs").glob("*/checkpoints/last.keras")), None)
            if (exp / "runs").exists()
            else None
        )
        return last is not None and read_state(last).step > 0

    t0 = time.time()
    while not mid_epoch_checkpoint():
        assert p.poll() is None, p.communicate()[1]
        assert time.time() - t0 < 120
        time.sleep(0.02)
    time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    (run,) = list((exp / "runs").iterdir())
    state = read_state(run / "checkpoints" / "last.keras")
    assert state.epoch < 3 and state.step > 0, state  # the resume starts inside an epoch
    r = cli("train", run, "--resume")
    assert r.code == 0, r.err
    assert history(run) == history(ref_run)
    assert_same_weights(run / "model.keras", ref_run / "model.keras", rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "workers",
    [pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)],
    # make test-slow (the fast suite's time); tests/test_streaming.py's share test checks each
    # worker's
    # partitions in make test
)
def test_workers_train_the_same_model_as_one_process(tmp_path, cli, workers):
    from test_resume import assert_same_weights

    sets = ["train.epochs=2", "data.features=[f0,f1,f2,f3]", "train.optimizer=sgd"]
    exp = make_table(tmp_path, rows=1500)
    r = cli("train", exp, *[a for s in sets for a in ("--set", s)])
    assert r.code == 0, r.err
    single = Path(r.out.strip().splitlines()[-1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "bigmodel_cli",
            "train",
            str(exp),
            "--workers",
            str(workers),
            *[a for s in sets for a in ("--set", s)],
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    multi = [r for r in (exp / "runs").iterdir() if r != single][0]
    import csv

    h_single = list(csv.DictReader(open(single / "history.csv")))
    h_multi = list(csv.DictReader(open(multi / "history.csv")))
    assert len(h_single) == len(h_multi) == 2
    assert (
        f"replicas {workers}" in p.stderr
    )  # every worker ran the same steps: none waited for a missing peer
    assert_same_weights(multi / "model.keras", single / "model.keras", rtol=1e-4, atol=1e-4)


def test_prepare_command_converts_then_reuses(tmp_path, cli):
    exp = make_table(tmp_path, rows=2000)
    r = cli("prepare", exp, "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert (
        d["converted"]
        and d["train_rows"] == 2000
        and d["blocks"] >= 12
        and Path(d["folder"]).parent == exp / "cache"
    )
    r = cli("prepare", exp)
    assert r.code == 0 and "reused" in r.err and r.out.strip() == d["folder"]
    r = cli("prepare", exp, "--set", "data.target=nope")
    assert r.code == 2 and "target column 'nope' not found" in r.err


@pytest.mark.slow
def test_peak_rss_is_flat_in_the_data_size(tmp_path):
    """Streamed training of 4x the rows: the same peak RSS (in memory it grows with the data)."""
    import resource

    peaks = {}
    for rows in (300_000, 1_200_000):
        exp = tmp_path / f"e{rows}"
        exp.mkdir()
        rng = np.random.default_rng(0)
        x = rng.normal(size=(rows, 10)).astype(np.float32)
        df = pd.DataFrame(x, columns=[f"f{i}" for i in range(10)])
        df["label"] = (x[:, 0] > 0).astype(int)
        df.to_csv(exp / "train.csv", index=False, float_format="%.5f")
        del df, x
        doc = {
            "name": "rss",
            "task": "binary",
            "data": {
                "train": "train.csv",
                "target": "label",
                "validation": None,
                "stream": True,
                "block_mb": 1,
            },
            "model": {"layers": [{"Dense": {"units": 1, "activation": "sigmoid"}}]},
            "train": {"epochs": 1, "batch_size": 1024},
        }
        (exp / "experiment.yaml").write_text(yaml.safe_dump(doc))
        code = (
            "import resource, subprocess, sys; subprocess.run([sys.executable, '-m', "
            f"'bigmodel_cli', 'train', {str(exp)!r}], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        p = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=600,
        )
        assert p.returncode == 0, p.stderr[-2000:]
        peaks[rows] = int(p.stdout.split()[-1]) / 1024
    assert peaks[1_200_000] < 1.1 * peaks[300_000], (
        peaks
    )  # 4x the data (+39 MB of float32) in memory
    del resource


def test_a_resumed_runs_own_vocabulary_maps_onto_the_caches_text_ids():
    """The blocks hold the cache's text ids; a run with the same vocabulary reads them as
    they are (no map), one with another vocabulary through a map: an n-gram it lacks is its
    out-of-vocabulary id, padding stays padding."""
    from bigmodel_cli.data.block_reader import _id_map
    from bigmodel_cli.features import text as T

    spec = T.TextSpec(ngrams=1)
    cache = T.PyTokenizer(spec, ["good", "bad", "slow"])
    assert _id_map(cache, T.PyTokenizer(spec, ["good", "bad", "slow"])) is None
    run = T.PyTokenizer(spec, ["slow", "good", "fast"])
    m = _id_map(cache, run)
    ids = cache.ids(["good slow bad", ""])
    assert (m[ids] == run.ids(["good slow bad", ""])).all()
    assert m[T.PAD] == T.PAD and m[cache.index["bad"]] == T.OOV
