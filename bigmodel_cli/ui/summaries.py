"""What a command says when it ends: train's summary and its after-training lines (calibration,
conformal, the decision threshold, a rare class), tune's, prepare's and export's, and the JSON
documents of train and predict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bigmodel_cli.ui.console import duration, err_console, fmt, params_cell, print_table, sized


def train_summary(outcome: Any, console: Console | None = None) -> None:
    con = console or err_console()
    if outcome.status == "already_finished":
        con.print(
            f"run {outcome.run_dir} already finished {outcome.epochs_done} epoch(s); "
            "nothing to do (extend it with --set train.epochs=N)"
        )
        return
    t = Table(
        title="training finished", title_justify="left", box=None, show_header=False, pad_edge=False
    )
    t.add_column(style="bold")
    t.add_column()
    last = outcome.history[-1] if outcome.history else {}
    kept = (
        next((h for h in outcome.history if h.get("epoch") == outcome.best_epoch), None)
        if outcome.best_epoch
        else None
    )
    shown = kept or last
    skip = ("epoch", "seconds", "samples_per_s")
    t.add_row("run folder", str(outcome.run_dir))
    t.add_row(
        "epochs", f"{outcome.epochs_done}" + (" (stopped early)" if outcome.stopped_early else "")
    )
    if (
        kept is not None and kept is not last
    ):  # model.keras is the best epoch's: its numbers, not the last epoch's
        t.add_row(
            "kept model",
            f"epoch {outcome.best_epoch}, the best: model.keras holds it; its metrics:",
        )
    for k, v in shown.items():
        if k not in skip:
            t.add_row(f"  {k}" if kept is not None and kept is not last else k, fmt(v))
    if kept is not None and kept is not last:
        t.add_row(
            "last epoch",
            f"{last.get('epoch')}: "
            + " · ".join(f"{k} {fmt(v)}" for k, v in last.items() if k not in skip),
        )
    elif outcome.best_epoch:
        t.add_row("best epoch", str(outcome.best_epoch))
    total = getattr(outcome, "total_seconds", 0.0)
    t.add_row(
        "time",
        (f"{duration(total)} in all · " if total else "")
        + f"training {duration(outcome.seconds)} · {outcome.samples_per_s:,.0f} samples/s",
    )
    times = getattr(outcome, "times", None) or {}
    if times:
        t.add_row("breakdown", breakdown(times))
    from bigmodel_cli.runs import read_calibration, read_conformal

    for label, line in after_training_lines(
        read_calibration(Path(outcome.run_dir)), read_conformal(Path(outcome.run_dir))
    ):
        t.add_row(label, line)
    if outcome.model_path:
        t.add_row("model", sized(outcome.model_path))
    inference = Path(outcome.run_dir) / "inference.onnx"
    if getattr(outcome, "background", False):  # finish.py writes them after train returns
        if outcome.plot:
            t.add_row("curves", f"{outcome.plot} (being drawn)")
        t.add_row(
            "inference", f"{inference} (being written in the background; predict waits for it)"
        )
    else:
        if outcome.plot:
            t.add_row("curves", sized(outcome.plot))
        if inference.is_file():
            t.add_row("inference", sized(inference))
    print_table(con, t)
    for note in outcome.notes:
        con.print(f"[yellow]note:[/] {note}")


def minority_line(m: dict) -> str:
    """A rare class in words: its share, its recall and precision at the run's cut, and
    the one setting that trades accuracy for its recall (or back)."""
    o = m["other"]
    return (
        f"'{m.get('class', m['class_index'])}' is {m['share']:.1%} of the validation rows: "
        f"recall {m['recall']:.3f}, precision {m['precision']:.3f} at this cut "
        f"(accuracy {m['accuracy']:.4f}); {o['setting']} would cut at {o['threshold']:.4g}: "
        f"recall {o['recall']:.3f}, precision {o['precision']:.3f}, accuracy {o['accuracy']:.4f}"
    )


def breakdown(times: dict[str, float]) -> str:
    """The phases that took 0.05 s or more, the rest folded into 'other': what is shown adds
    up to the whole (to the tenth of a second each shows)."""
    shown = {k: v for k, v in times.items() if v >= 0.05 and k != "other"}
    rest = sum(v for k, v in times.items() if k not in shown)
    parts = [f"{k} {v:.1f}s" for k, v in shown.items()]
    return " · ".join(parts + ([f"other {rest:.1f}s"] if rest >= 0.05 else []))


def after_training_lines(cal: dict | None, conformal: dict | None) -> list[tuple[str, str]]:
    """The summary's rows for what the validation split fitted after training."""
    rows = []
    if cal and cal.get("class_weight"):
        rows.append(
            (
                "class weights",
                ", ".join(f"{c} {w:.3g}" for c, w in cal["class_weight"].items())
                + f" ({cal.get('class_weight_why', '')})",
            )
        )
    if cal and (cal.get("why") or "val_ece_before" in cal):
        rows.append(
            (
                "calibration",
                cal.get("why")
                or f"temperature {cal['temperature']:.3f} · validation ECE "
                f"{cal['val_ece_before']:.4f} -> {cal['val_ece_after']:.4f}",
            )
        )
    if cal and cal.get("positive_class") is not None:
        rows.append(
            (
                "positive class",
                f"{cal['positive_class']} (data.positive_label; by default the minority class)",
            )
        )
    if cal and cal.get("threshold") is not None:
        rows.append(
            (
                "threshold",
                # the reason starts with the cut itself: "0.5: the most accurate cut ..."
                cal.get("threshold_why") or f"{cal['threshold']:.4g}",
            )
        )
        seen = (cal.get("validation") or {}).get("at_threshold")
        if seen:
            half = cal["validation"]["at_0.5"]
            rows.append(
                (
                    "  validation",
                    " · ".join(
                        f"{k.replace('_', ' ')} {seen[k]:.4f} ({half[k]:.4f} at 0.5)" for k in seen
                    ),
                )
            )
    if cal and cal.get("minority"):
        rows.append(("minority class", minority_line(cal["minority"])))
    if conformal:
        rows.append(
            (
                "conformal",
                f"{conformal.get('rows', 0):,} scores from "
                f"{conformal.get('fitted_on', '')}: predict --coverage 0.9 gives "
                + ("intervals" if conformal.get("task") == "regression" else "prediction sets"),
            )
        )
    return rows


def prepare_summary(d: dict[str, Any], console: Console | None = None) -> None:
    con = console or err_console()
    what = (
        f"converted {d['source_mb']:,.1f} MB in {duration(d['seconds'])} "
        f"({d['mb_per_s']:,.1f} MB/s)"
        if d["converted"]
        else "reused (the data and settings have not changed)"
    )
    con.print(f"block cache {what}")
    con.print(
        f"{d['train_rows']:,} training rows · {d['validation_rows']:,} validation rows · "
        f"{d['features']} features · {d['blocks']:,} blocks of {d['block_rows']:,} rows · "
        f"{d['cache_mb']:,.1f} MB"
    )
    for src, n in d.get("dropped") or []:
        con.print(f"[yellow]note:[/] {n:,} row(s) of {src} have no target and were left out")
    if d.get("others"):
        con.print(
            f"[yellow]note:[/] {len(d['others'])} older cache(s) beside it hold "
            f"{d['others_mb']:,.1f} MB (other data or settings); delete them when no run needs "
            f"them: rm -r {' '.join(d['others'][:3])}{' ...' if len(d['others']) > 3 else ''}"
        )


def export_summary(r: Any, console: Console | None = None) -> None:
    con = console or err_console()
    status = "[green]parity ok[/]" if r.parity_ok else "[red]PARITY FAILED[/]"
    con.print(
        f"exported {r.format}: {sized(r.path)}\n{status}: largest |difference| "
        f"{r.max_abs_diff:.3g} over {r.rows_compared} rows ({r.runtime} vs keras)"
    )
    if getattr(r, "inputs", None):
        con.print(
            "inputs: "
            + ", ".join(r.inputs)
            + " (numbers as float [N, 1], NaN for missing; categories and dates as their "
            "text [N, 1])",
            highlight=False,
        )
    if getattr(r, "outside_graph", None):
        con.print(
            "[yellow]note:[/] text columns stay outside the graph (inputs ids_*): their "
            f"tokenisers are in {r.outside_graph} (docs/text.md says how to feed them)",
            highlight=False,
        )


def tune_summary(outcome: Any, console: Console | None = None) -> None:
    con = console or err_console()
    finished = sum(t.state in ("complete", "pruned") for t in outcome.trials)
    states = {s: sum(t.state == s for t in outcome.trials) for s in ("complete", "pruned", "fail")}
    con.print(
        f"study {outcome.study}: {finished} finished trials ({states['complete']} "
        f"complete, {states['pruned']} pruned; {states['fail']} failed) · this run ran "
        f"{outcome.ran}"
    )
    if outcome.best is None:
        con.print("[yellow]no trial completed: no best.yaml[/]")
        return
    b = outcome.best
    con.print(
        f"best: trial {b.number} · {outcome.metric} {fmt(b.value)} · {params_cell(b.params)}"
        + (" (the experiment's own settings)" if b.baseline else "")
    )
    con.print(f"run: {b.run_dir}")
    con.print(f"best.yaml: {outcome.best_yaml}  (train it: bigmodel train {outcome.best_yaml})")


def train_doc(outcome: Any) -> dict[str, Any]:
    """train --json: the run and what it learnt, one JSON document."""
    from bigmodel_cli.runs import read_calibration, read_conformal

    run = Path(outcome.run_dir)
    copy = (
        "background"
        if outcome.background
        else ("written" if (run / "inference.onnx").is_file() else "none")
    )
    return {
        "run_dir": str(outcome.run_dir),
        "status": outcome.status,
        "epochs": outcome.epochs_done,
        "history": outcome.history,
        "model": str(outcome.model_path) if outcome.model_path else None,
        "seconds": outcome.seconds,
        "total_seconds": outcome.total_seconds,
        "samples_per_s": outcome.samples_per_s,
        "strategy": outcome.strategy.get("strategy"),
        "precision": outcome.strategy.get("precision"),
        "times": outcome.times,
        "calibration": read_calibration(run),
        "conformal": read_conformal(run),
        "inference_copy": copy,
        "notes": outcome.notes,
    }


def predict_doc(r: Any) -> dict[str, Any]:
    """predict --json: one input's summary."""
    return {
        "input": r.input,
        "output": r.output,
        "rows": r.rows,
        "seconds": round(r.seconds, 3),
        "rows_per_s": round(r.rows_per_s, 1),
        "engine": r.engine,
    }
