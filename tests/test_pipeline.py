"""The input source: an epoch's batches are a pure function of (seed, epoch), and a
resumed iterator yields exactly the rest of them."""

from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.training.pipeline import InMemory, epoch_order


def test_epoch_order_is_a_pure_function():
    a = epoch_order(7, 3, 100, True)
    assert np.array_equal(a, epoch_order(7, 3, 100, True)) and sorted(a) == list(range(100))
    assert not np.array_equal(a, epoch_order(7, 4, 100, True))
    assert np.array_equal(epoch_order(7, 3, 100, False), np.arange(100))
    longer = epoch_order(
        7, 3, 10, True, rows=25
    )  # steps_per_epoch beyond one pass: fresh permutations
    assert len(longer) == 25 and sorted(longer[:10]) == list(range(10))


@pytest.mark.parametrize("dict_inputs", [False, True])
def test_resumed_iterator_yields_the_rest_of_the_epoch(dict_inputs):
    from bigmodel_cli.training.strategy import import_tensorflow

    tf = import_tensorflow()
    n = 53
    x = np.arange(n, dtype=np.float32).reshape(-1, 1)
    ids = np.zeros((n, 6), np.int32)
    ids[:, 0] = np.arange(n) + 1
    ids[::5, :4] = 9  # some rows longer than others
    xs = {"features": x, "ids_t": ids} if dict_inputs else x
    src = InMemory(xs, np.arange(n), global_batch=8, seed=1, shuffle=True)
    strategy = tf.distribute.get_strategy()
    steps = src.steps_per_epoch(1)
    assert steps == 7  # 53 rows, batches of 8, the last one partial

    def collect(start):
        it = src.iterator(strategy, [8], epoch=2, start_step=start)
        out = []
        for _ in range(steps - start):
            xb, yb = next(it)
            out.append(yb.numpy().tolist())
            if dict_inputs:
                widths = (xb["ids_t"].numpy() != 0).sum(1)
                assert xb["ids_t"].shape[1] == max(
                    widths.max(), 1
                )  # cut to the batch's longest row
        return out

    full, tail = collect(0), collect(3)
    assert tail == full[3:]
    assert sorted(sum(full, [])) == list(range(n))
    assert sum(full, []) == epoch_order(1, 2, n, True).tolist()


def test_one_cpu_gets_a_threadless_iterator_with_the_same_batches():
    """On a OneDeviceStrategy over a CPU the step reads the dataset's own iterator, with
    no map or prefetch thread and no autotuning (deleting a threaded one stalled for
    seconds); any other strategy, a distributed one. Both give the same batches, epoch
    after epoch, partial ones included."""
    from bigmodel_cli.training.pipeline import on_one_cpu
    from bigmodel_cli.training.strategy import import_tensorflow

    tf = import_tensorflow()
    n = 29
    src = InMemory(np.arange(n, dtype=np.float32)[:, None], np.arange(n), 8, seed=3, shuffle=True)
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert on_one_cpu(one) and not on_one_cpu(mirrored)
    assert not on_one_cpu(tf.distribute.get_strategy())

    def batches(strategy):
        it = src.iterator(strategy, [8], epoch=1, start_step=1, end_epoch=3)
        got = []
        for _ in range(3 + 4):  # epoch 1 from step 1, then epoch 2
            x, y = next(it)
            y = y.values[0] if hasattr(y, "values") else y
            got.append(tf.convert_to_tensor(y).numpy().tolist())
        return it, got

    plain, got = batches(one)
    assert isinstance(plain, tf.data.Iterator) and type(plain).__name__ == "OwnedIterator"
    distributed, want = batches(mirrored)
    assert type(distributed).__name__ != "OwnedIterator"
    assert got == want
    assert sum(got[:3], []) == epoch_order(3, 1, n, True).tolist()[8:]
    assert sum(got[3:], []) == epoch_order(3, 2, n, True).tolist()

    def stages(ds):
        names = []
        while ds is not None:
            names.append(type(ds).__name__)
            ds = getattr(ds, "_input_dataset", None)
        return names

    order = [tf.constant(np.arange(n, dtype=np.int64))]
    inline = src.dataset(order, src._gather(), 8, False, 0, 1, inline=True)
    threaded = src.dataset(order, src._gather(), 8, False, 0, 1)
    assert inline.options().autotune.enabled is False
    assert not any("Prefetch" in s or "ParallelMap" in s for s in stages(inline))
    assert any("Prefetch" in s for s in stages(threaded))
    assert any("ParallelMap" in s for s in stages(threaded))


def test_batch_larger_than_the_data_is_refused():
    from bigmodel_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="larger than"):
        InMemory(np.zeros((4, 1), np.float32), np.zeros(4), global_batch=8, seed=0, shuffle=True)


def test_sharded_training_data_trains_like_the_single_file(make_exp, cli, tmp_path):
    """data.train as a folder, a glob or a list of shards: the same rows in name order."""
    import csv

    exp = make_exp("regression")
    lines = (exp / "data" / "train.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    (exp / "shards").mkdir()
    thirds = [
        rows[: len(rows) // 3],
        rows[len(rows) // 3 : 2 * len(rows) // 3],
        rows[2 * len(rows) // 3 :],
    ]
    for i, part in enumerate(thirds):
        (exp / "shards" / f"part-{i}.csv").write_text("\n".join([header, *part]) + "\n")
    import gzip

    with gzip.open(
        exp / "shards" / "part-2.csv.gz", "wt"
    ) as f:  # a compressed shard replaces the last one
        f.write((exp / "shards" / "part-2.csv").read_text())
    (exp / "shards" / "part-2.csv").unlink()

    def history(*sets):
        args = [a for s in sets for a in ("--set", s)]
        r = cli("train", exp, "--set", "train.epochs=2", *args)
        assert r.code == 0, r.err
        run = Path(r.out.strip().splitlines()[-1])
        return [
            {k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")}
            for row in csv.DictReader(open(run / "history.csv"))
        ]

    single = history()
    assert history("data.train=shards") == single
    assert history("data.train=shards/part-*") == single
    assert (
        history("data.train=[shards/part-0.csv, shards/part-1.csv, shards/part-2.csv.gz]") == single
    )

    bad = thirds[1][:]
    bad[4] = bad[4].replace(bad[4].split(",")[3], "oops", 1)
    (exp / "shards" / "part-1.csv").write_text("\n".join([header, *bad]) + "\n")
    r = cli("train", exp, "--set", "data.train=shards")
    assert r.code == 2 and "part-1.csv line 6" in r.err and "'oops'" in r.err, r.err
    r = cli("train", exp, "--set", "data.train=shards/none-*.csv")
    assert r.code == 2 and "matches no file" in r.err


def test_an_xla_compiled_step_trains_like_the_plain_one(make_exp, tmp_path):
    """train.jit_compile: true compiles the training step with XLA (one replica): the
    same losses as the plain step, up to float rounding; TensorFlow's own log says
    that XLA compiled it, and says nothing of the kind without the setting."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "BIGMODEL_INFERENCE_COPY": "none"}
    losses, logs = [], []
    for jit in ("false", "true"):
        exp = make_exp("regression", f"r-{jit}")
        r = subprocess.run(
            [sys.executable, "-m", "bigmodel_cli", "train", str(exp), "--json"]
            + ["--set", "train.epochs=3", "--set", f"train.jit_compile={jit}"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        losses.append([[h["loss"], h["val_loss"]] for h in json.loads(r.stdout)["history"]])
        logs.append(r.stderr)
    assert len(losses[0]) == len(losses[1]) == 3
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-3)
    assert "Compiled cluster using XLA" not in logs[0]
    assert "Compiled cluster using XLA" in logs[1], logs[1][-2000:]
