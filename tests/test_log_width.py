"""Without a terminal (CI logs, pipes), summaries never cut a path or a value (issue 25)."""

from pathlib import Path

import numpy as np
import pandas as pd


def test_no_tty_summaries_keep_whole_paths_and_names(tmp_path, cli, monkeypatch):
    from bigmodel_cli.ui import console

    monkeypatch.delenv("COLUMNS", raising=False)
    # a console made now, for this stderr (pytest's capture: no terminal)
    monkeypatch.setattr(console, "_err", None)
    rng = np.random.default_rng(0)
    long = "number_of_customer_service_calls_in_the_last_billing_quarter"
    df = pd.DataFrame({long: rng.integers(0, 9, 120), "x": rng.normal(size=120).round(3)})
    df["y"] = np.where(df.x + df[long] / 4 > 1, "yes", "no")
    deep = (
        tmp_path / "a_rather_long_folder_name_for_the_experiments_of_this_team" / "attrition-study"
    )
    deep.parent.mkdir()
    df.to_csv(tmp_path / "t.csv", index=False)
    r = cli("init", deep, "--data", tmp_path / "t.csv", "--target", "y")
    assert r.code == 0, r.err
    assert long in r.err and "…" not in r.err, r.err
    r = cli(
        "train",
        deep,
        "--set",
        "train.epochs=1",
        "--set",
        "model.ensemble=1",
        "--set",
        "model.tree_members=0",
    )
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    assert str(run / "model.keras") in r.err and "…" not in r.err, r.err
    lines = r.err.splitlines()
    assert max(len(line) for line in lines) > 80  # laid out wider than a terminal's 80 columns
    r = cli("eval", deep)  # its tables too: the metrics, the confusion matrix
    assert r.code == 0 and "confusion matrix" in r.err, r.err
    padded = [line for line in lines + r.err.splitlines() if line != line.rstrip()]
    assert not padded, padded  # no cell padding at a line's end: profile, summary, eval
    # the summary's time is the whole command's, and its breakdown adds up to it
    import re

    total_line = next(line for line in lines if line.lstrip().startswith("time"))
    parts_line = next(line for line in lines if line.lstrip().startswith("breakdown"))
    whole = re.search(r"time\s+(\S+) in all", total_line).group(1)
    seconds = (
        float(whole[:-2]) / 1000
        if whole.endswith("ms")
        else (
            float(whole[:-1])
            if whole.endswith("s")
            else sum(int(x) * 60**i for i, x in enumerate(reversed(whole.split(":"))))
        )
    )
    parts = [float(v) for v in re.findall(r"(\d+\.\d)s", parts_line)]
    assert abs(sum(parts) - seconds) <= 0.05 * (len(parts) + 1) + 0.6, (
        total_line,
        parts_line,
    )


def test_train_summary_shows_the_kept_epochs_metrics():
    """model.keras is the best epoch's model: the summary shows its numbers, labelled,
    and the last epoch's apart (issue 25, item 3)."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from bigmodel_cli.ui import summaries

    history = [
        {"epoch": e, "loss": 1.0 / e, "val_loss": v, "seconds": 0.1, "samples_per_s": 10.0}
        for e, v in ((1, 0.5), (2, 0.2699), (3, 0.3195))
    ]
    out = SimpleNamespace(
        status="completed",
        run_dir="/tmp/x/runs/r-1",
        history=history,
        epochs_done=3,
        stopped_early=True,
        best_epoch=2,
        seconds=1.0,
        samples_per_s=10.0,
        times={},
        model_path=None,
        plot=None,
        background=False,
        notes=[],
    )
    buf = io.StringIO()
    summaries.train_summary(out, Console(file=buf, width=200))
    text = buf.getvalue()
    kept = text.index("kept model")
    assert "epoch 2, the best" in text and "0.2699" in text[kept : text.index("last epoch")]
    assert "last epoch" in text and "3: " in text and "0.3195" in text[text.index("last epoch") :]
    out.best_epoch = 3  # the best is the last: one set of numbers
    buf = io.StringIO()
    summaries.train_summary(out, Console(file=buf, width=200))
    assert "kept model" not in buf.getvalue() and "best epoch" in buf.getvalue()


def test_live_table_keeps_the_step_counter_whole_at_any_width():
    """Issue 25, item 1: 'N/M steps' and the time read whole at 80-200 columns,
    however many metrics there are; metrics that do not fit are left to the summary."""
    import io
    import re

    from rich.console import Console

    from bigmodel_cli.ui import progress

    for width in (80, 100, 120, 160, 200):
        for metrics in ([], ["accuracy"], ["accuracy", "precision", "recall", "auc", "f1"]):
            buf = io.StringIO()
            p = progress.TrainProgress(
                Console(file=buf, width=width, force_terminal=True, color_system=None)
            )
            p.info = {"epochs": 100, "metrics": metrics, "validation": True}
            p.rows = [
                {
                    "epoch": 1,
                    "loss": 0.51234,
                    "val_loss": 0.6,
                    "seconds": 12.0,
                    "samples_per_s": 12345.0,
                    **{m: 0.9 for m in metrics},
                    **{f"val_{m}": 0.8 for m in metrics},
                }
            ]
            p.current = {
                "epoch": 2,
                "done": 12345,
                "steps": 67890,
                "logs": {"loss": 0.4},
                "sps": 23456.0,
            }
            p.t_epoch = __import__("time").perf_counter() - 30
            p.console.print(p._render())
            text = buf.getvalue()
            assert "12345/67890" in text, (width, metrics, text)
            assert re.search(r"eta \d+:\d\d", text), (width, metrics, text)
            assert max(len(line) for line in text.splitlines()) <= width
            assert "…" not in text.replace("━", ""), (width, metrics, text)
            if width >= 200 or not metrics:
                assert "more metric" not in text, (width, metrics, text)


def test_durations_say_sub_second_epochs():
    """A sub-second epoch is milliseconds, a few seconds have a decimal, then m:ss and
    h:mm:ss (issue 39: tabular epochs showed 0:00)."""
    from bigmodel_cli.ui.console import duration

    assert [duration(s) for s in (0.0, 0.004, 0.42, 0.9996, 3.44, 9.96, 75, 3723)] == [
        "0ms",
        "4ms",
        "420ms",
        "1.0s",
        "3.4s",
        "0:10",
        "1:15",
        "1:02:03",
    ]


def test_a_long_run_keeps_its_best_and_last_epochs_in_view():
    """On a terminal, a 100-epoch run's table fits its height: the best epoch (by the run's
    monitor), the last ones, and a line saying how many are left out; a log keeps all."""
    import io

    from rich.console import Console

    from bigmodel_cli.ui.progress import TrainProgress

    def rows(n, best):
        return [
            {
                "epoch": e,
                "loss": 1.0 / e,
                "val_loss": 0.1 if e == best else 0.5 + e / 1000,
                "samples_per_s": 1000.0,
                "seconds": 0.2,
            }
            for e in range(1, n + 1)
        ]

    term = Console(file=io.StringIO(), force_terminal=True, width=160, height=24)
    p = TrainProgress(term)
    p.info = {"epochs": 100, "monitor": "val_loss", "mode": "min"}
    p.rows = rows(100, best=7)
    shown, hidden = p._rows_in_view()
    epochs = [r["epoch"] for r in shown if r is not None]
    assert epochs[0] == 7 and shown[1] is None and epochs[-1] == 100
    assert len(shown) == 24 - 8 and hidden == 100 - len(epochs)
    term.print(p._render())
    out = term.file.getvalue()
    assert f"… {hidden} epoch(s) not shown" in out and " 7/100" in out and "100/100" in out
    p.rows = rows(100, best=99)  # the best among the last: one gap, then the last rows
    shown, hidden = p._rows_in_view()
    assert shown[0] is None and [r["epoch"] for r in shown[1:]] == list(range(86, 101))
    log = TrainProgress(Console(file=io.StringIO(), width=160))  # no terminal
    log.info, log.rows = p.info, rows(100, best=7)
    assert log._rows_in_view() == (log.rows, 0)


def test_the_strategy_lines_wrap_between_words_on_a_narrow_terminal():
    """On an 80-column terminal the run's opening lines break at spaces, so no number or
    name is cut in two; without a terminal each stays one line."""
    import io
    import re

    from rich.console import Console

    from bigmodel_cli.ui.progress import TrainProgress

    info = {
        "strategy": "MultiWorkerMirroredStrategy",
        "plan": {"reason": "auto: TF_CONFIG names 2 workers, one CPU device each"},
        "replicas": 2,
        "devices": ["/job:worker/replica:0/task:0/device:CPU:0"],
        "precision": "mixed_bfloat16",
        "precision_reason": "auto: the CPU has avx512_bf16; 1,234,567 multiply-adds a sample",
        "learning_rate": 0.001,
        "global_batch": 1024,
        "per_replica_batch": 512,
        "train_rows": 1234567,
        "val_rows": 123456,
        "params": 9876543,
        "start_epoch": 0,
        "epochs": 3,
    }
    words = set(re.findall(r"\S+", "strategy MultiWorkerMirroredStrategy 1,234,567 1,234,567"))
    term = Console(file=io.StringIO(), force_terminal=True, width=80, height=40, soft_wrap=True)
    p = TrainProgress(term)
    p.on_train_begin(info)
    p.close()
    lines = [re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", ln) for ln in term.file.getvalue().splitlines()]
    head = [ln for ln in lines if ln.strip()][:6]
    assert all(len(ln) <= 80 for ln in head), head
    said = set(re.findall(r"\S+", " ".join(head)))
    assert words <= said and "9,876,543" in said and "1,234,567" in said, head
    log = Console(file=io.StringIO(), width=80, soft_wrap=True)  # no terminal: one line each
    q = TrainProgress(log)
    q.on_train_begin(info)
    assert len(log.file.getvalue().splitlines()[0]) > 80
