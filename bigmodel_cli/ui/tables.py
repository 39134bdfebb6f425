"""The tables of eval, explain, info, templates, init's profile and runs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bigmodel_cli.ui.console import duration, err_console, fmt, out_console, print_table, sized


def eval_table(outcome: Any, console: Console | None = None) -> None:
    con = console or err_console()
    m = outcome.metrics
    con.print(f"[bold]{outcome.task} metrics[/] on {outcome.data} ({m.get('rows', '?')} rows)")
    half = m.get("at_0.5") or {}
    t = Table(box=None, show_header=bool(half), header_style="bold")
    t.add_column(style="bold")
    t.add_column(f"at {fmt(m['threshold'])}" if half else "", justify="right")
    if half:  # a run with its own cut: the argmax's figures beside it
        t.add_column("at 0.5", justify="right")
    for k, v in m.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "rows":
            t.add_row(k, fmt(v), *([fmt(half[k]) if k in half else ""] if half else []))
    print_table(con, t)
    if "per_class" in m:
        pc = Table(box=None, header_style="bold")
        for c in ("class", "precision", "recall", "f1", "support"):
            pc.add_column(c, justify="right")
        for row in m["per_class"]:
            pc.add_row(
                str(row["class"]),
                fmt(row["precision"]),
                fmt(row["recall"]),
                fmt(row["f1"]),
                str(row["support"]),
            )
        print_table(con, pc)
    if "confusion_matrix" in m:
        con.print("confusion matrix (rows: true, columns: predicted)")
        cm = Table(box=None, header_style="bold")
        cm.add_column("")
        for c in m["classes"]:
            cm.add_column(str(c), justify="right")
        for c, row in zip(m["classes"], m["confusion_matrix"]):
            cm.add_row(str(c), *[str(v) for v in row])
        print_table(con, cm)
    if m.get("conformal"):
        size = "median_width" if outcome.task == "regression" else "mean_set_size"
        con.print(
            "conformal (predict --coverage): "
            + " · ".join(
                f"{c}: covered {r['coverage']:.1%}, {size.replace('_', ' ')} {fmt(r[size])}"
                for c, r in m["conformal"].items()
            )
        )
    if m.get("warning"):
        con.print(f"[yellow]warning:[/] {m['warning']}")
    for note in m.get("notes", []):
        con.print(f"note: {note}", highlight=False)
    con.print(
        f"metrics: {sized(outcome.metrics_path)}"
        + (f"\nplot: {sized(outcome.plot)}" if outcome.plot else "")
        + (
            f"\nreliability: {sized(outcome.reliability)}"
            if getattr(outcome, "reliability", None)
            else ""
        )
    )


def explain_table(out: Any, console: Console | None = None) -> None:
    con = console or err_console()
    worse = "lost" if out.higher_is_better else "gained"
    con.print(
        f"[bold]permutation importance[/] on {out.rows:,} rows · {out.metric} "
        f"{fmt(out.baseline)} as they are · {out.repeats} shuffles per column · "
        f"{out.engine} · {out.seconds:.1f}s"
    )
    t = Table(box=None, header_style="bold")
    t.add_column("column")
    t.add_column(f"{out.metric} {worse}", justify="right")
    t.add_column("± std", justify="right")
    for c, v in out.importance.items():
        t.add_row(c, fmt(v), fmt(out.std[c]))
    print_table(con, t)
    for r in out.per_row:
        label = f" ({r['class']})" if "class" in r else ""
        if "saliency_png" in r:  # an image: its map is a picture
            con.print(
                f"row {r['row']}: output {fmt(r['output'])}{label} · saliency "
                f"{sized(r['saliency_png'])}",
                highlight=False,
            )
            continue
        top = sorted(r["attributions"].items(), key=lambda kv: -abs(kv[1]))[:5]
        con.print(
            f"row {r['row']}: output {fmt(r['output'])}{label} · "
            + " · ".join(f"{c} {v:+.4g}" for c, v in top)
        )
        for c, toks in (r.get("tokens") or {}).items():
            best = sorted(toks, key=lambda tv: -abs(tv[1]))[:6]
            con.print(f"  {c}: " + " ".join(f"{t!r} {v:+.3g}" for t, v in best))
    for note in out.notes:
        con.print(f"[yellow]note:[/] {note}")
    if out.plot:
        con.print(f"plot: {sized(out.plot)}")


def info_table(d: dict[str, Any], console: Console | None = None) -> None:
    con = console or err_console()
    t = Table(box=None, show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in d.items():
        if k == "gpus":
            v = (
                "; ".join(
                    f"{g['device']}: {g.get('name') or '?'}, compute capability "
                    f"{g.get('compute_capability') or '?'}"
                    + (f", {g['memory_mb']:,} MB" if g.get("memory_mb") else "")
                    for g in v
                )
                or "none"
            )
        elif k == "cpu_bfloat16":
            v = ", ".join(v) if v else "no (no AMX or avx512_bf16)"
        elif k == "auto_strategy":
            by = v.get("precision_by_model")
            precision = (
                f"precision {by['big']} for models of {by['at_least_macs']:,} multiply-adds a "
                f"sample or more (such as the MNIST CNN; {v['precision_reason']}), "
                f"{by['small']} below (most table and text models)"
                if by
                else f"precision {v['precision']} ({v['precision_reason']})"
            )
            v = v.get("error") or (
                f"{v['kind']} on {', '.join(v['devices'])} ({v['reason']}); {precision}"
            )
        elif k == "cluster":
            v = v.get("error") or f"{v['source']}: this is {v['task']} of " + "; ".join(
                f"{kind} {', '.join(m)}" for kind, m in v["workers"].items()
            )
        t.add_row(k.replace("_", " "), str(v))
    print_table(con, t)


def templates_table(items: list[Any], console: Console | None = None) -> None:
    con = console or out_console()
    t = Table(box=None, header_style="bold")
    t.add_column("template")
    t.add_column("task")
    t.add_column("what it is")
    for it in items:
        t.add_row(it.name, it.task, it.summary)
    print_table(con, t)


def profile_table(r: Any, console: Console | None = None) -> None:
    """What `init --data` inferred, column by column, and why."""
    con = console or err_console()
    p = r.profile
    con.print(f"read {p.rows_read:,} rows of {getattr(p, 'shown', None) or p.path}")
    t = Table(box=None, header_style="bold")
    t.add_column("column")
    t.add_column("use")
    t.add_column("missing", justify="right")
    t.add_column("why")
    style = {"target": "bold", "drop": "dim", "id": "cyan"}
    for c in p.columns:
        use = {"target": f"target ({p.task})", "drop": "left out", "id": "id (passed through)"}.get(
            c.role, c.role
        )
        t.add_row(
            c.name,
            f"[{style[c.role]}]{use}[/]" if c.role in style else use,
            f"{c.missing:,}" if c.missing else "",
            c.why,
        )
    print_table(con, t)
    for n in p.notes:
        con.print(f"note: {n}")
    dropped = [c.name for c in p.columns if c.role == "drop"]
    if dropped:
        con.print(f"note: left out {', '.join(dropped)} (see the reasons above)")
    con.print(
        f"wrote {r.path / 'experiment.yaml'}"
        + (
            f" (data copied to {r.path / 'data' / r.data.name})"
            if r.copied
            else f" (it reads {r.data})"
        )
    )
    con.print("change a column's use in data.columns, data.id_columns or data.features")
    con.print(f"next: bigmodel train {r.path}")


def _short_time(iso: str | None) -> str:
    if not iso:
        return ""
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(iso).astimezone().strftime("%m-%d %H:%M")
    except ValueError:
        return iso


STATUS_STYLE = {
    "finished": "green",
    "running": "cyan",
    "interrupted": "yellow",
    "failed": "red",
    "pruned": "dim",
    "requeued": "cyan",
    "pending": "dim",
}


# The metrics a task is judged by, first in the table (then the others metrics.json has)
TASK_METRICS = {
    "binary": ("roc_auc", "accuracy", "f1"),
    "regression": ("r2", "mae", "rmse"),
    "classification": ("accuracy", "macro_f1", "log_loss"),
}


def _test_keys(rows: list[dict[str, Any]], limit: int = 3) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r["test"] if k not in keys and k != "rows"]
    if len(keys) > 1 and "loss" in keys:
        keys.remove("loss")  # the metrics say more than the loss they were trained on
    tasks = [r.get("task") for r in rows if r["test"]]
    preferred = [k for t in dict.fromkeys(tasks) for k in TASK_METRICS.get(t or "", ())]
    first = [k for k in dict.fromkeys(preferred) if k in keys]
    return (first + [k for k in keys if k not in first])[:limit]


def runs_table(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """``bigmodel runs``: one row a run."""
    con = console or out_console()
    if not rows:
        con.print("no runs yet (bigmodel train DIR makes one)")
        return
    monitors = {r["monitor"] for r in rows if r["best"] is not None}
    one_monitor = len(monitors) == 1
    tests = _test_keys(rows)
    trials = any(r.get("trial") is not None for r in rows)
    t = Table(box=None, header_style="bold", pad_edge=False)
    t.add_column("run", no_wrap=True)
    t.add_column("status", no_wrap=True)
    t.add_column("epochs", justify="right", no_wrap=True)
    t.add_column(
        f"best {next(iter(monitors))}" if one_monitor else "best", justify="right", no_wrap=True
    )
    for k in tests:
        t.add_column(f"test {k}", justify="right", no_wrap=True)
    t.add_column("time", justify="right", no_wrap=True)
    t.add_column("started", no_wrap=True)
    if trials:
        t.add_column("trial", justify="right", no_wrap=True)
    jobs = any(r.get("job") for r in rows)
    if jobs:
        t.add_column("job", no_wrap=True)
    for r in rows:
        best = (
            ""
            if r["best"] is None
            else (
                f"{fmt(r['best'])} @{r['best_epoch']}"
                if one_monitor
                else f"{r['monitor']} {fmt(r['best'])} @{r['best_epoch']}"
            )
        )
        epochs = (
            f"{r['epochs']}/{r['epochs_planned']}" if r.get("epochs_planned") else str(r["epochs"])
        )
        style = STATUS_STYLE.get(r["status"], "")
        cells = [
            r["name"],
            f"[{style}]{r['status']}[/]" if style else r["status"],
            epochs,
            best,
            *[fmt(float(r["test"][k])) if k in r["test"] else "" for k in tests],
            duration(r["duration_s"]),
            _short_time(r["started"]),
        ]
        if trials:
            cells.append(f"#{r['trial']}" if r.get("trial") is not None else "")
        if jobs:
            cells.append(
                f"slurm {r['job']['id']} {r['job']['state'] or ''}".rstrip() if r.get("job") else ""
            )
        t.add_row(*cells)
    if not con.is_terminal:  # a pipe or a file: whole rows, however wide
        need = Console(file=con.file, width=1000).measure(t).maximum
        con = Console(file=con.file, width=max(80, need), highlight=False, no_color=con.no_color)
    print_table(con, t)
