"""Rich rendering: the live training table, summaries, and JSON mode.

Progress and tables go to stderr; stdout carries only results (a path, or
one JSON document with ``--json``). Without a TTY there are no colours and no
live redraws: one plain line per epoch.

Example::

    obs = TrainProgress(err_console())
    api.train("exp", observer=obs)
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

_err: Console | None = None
_out: Console | None = None


LOG_WIDTH = 4096  # without a terminal: wide enough that no path or value is ever cut


def _console(stderr: bool) -> Console:
    """One message = one line (soft wrap). Without a terminal (CI logs, pipes) and
    without COLUMNS, Rich would lay tables out at 80 columns and cut cells with an
    ellipsis, paths included; there the width is :data:`LOG_WIDTH`, so tables take
    the width of their contents and a path can be copied whole."""
    import os

    probe = Console(stderr=stderr)
    wide = not probe.is_terminal and not os.environ.get("COLUMNS")
    return Console(
        stderr=stderr, highlight=False, soft_wrap=True, width=LOG_WIDTH if wide else None
    )


def err_console() -> Console:
    global _err
    if _err is None:
        _err = _console(stderr=True)
    return _err


def out_console() -> Console:
    global _out
    if _out is None:
        _out = _console(stderr=False)
    return _out


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


def duration(s: float) -> str:
    s = max(0, int(round(s)))
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


# ----------------------------------------------------------------- training


class _LiveTable:
    """A table redrawn in place while ``self.live`` runs (a terminal); subclasses
    set ``self.live`` and draw with ``_render``."""

    live: Live | None = None

    def _render(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.stop()
            self.live = None

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())


class TrainProgress(_LiveTable):
    """Observer for :func:`bigmodel_cli.training.trainer.fit` drawing a live table."""

    def __init__(self, console: Console | None = None):
        self.console = console or err_console()
        self.live_mode = self.console.is_terminal
        self.rows: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None
        self.live: Live | None = None
        self.info: dict[str, Any] = {}
        self.t_epoch = 0.0
        self.t_start = 0.0
        self.preparing: PredictProgress | None = None

    # ---- observer protocol
    def on_prepare(self, done: int, total: int, rows: int) -> None:
        """The block cache being written (streamed data, first run)."""
        if self.preparing is None:
            self.preparing = PredictProgress(self.console)
            self.t_prepare = time.perf_counter()
        self.preparing(
            "preparing blocks", rows, time.perf_counter() - self.t_prepare, done / max(total, 1)
        )

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.info = info
        self.t_start = time.perf_counter()
        if self.preparing is not None:
            self.preparing.close()
            self.preparing = None
        if not info.get("is_chief", True):
            self.live_mode = False
            self.console = Console(stderr=True, quiet=True)
            return
        lr = info["learning_rate"]
        self.console.print(
            f"strategy [bold]{info['strategy']}[/] ({info['plan']['reason']}) · replicas {info['replicas']} · devices {', '.join(info['devices'])}"
            f" · precision {info.get('precision', 'float32')}"
            + (f" ({info['precision_reason']})" if info.get("precision_reason") else "")
            + "\n"
            f"batch {info['global_batch']} global / {info['per_replica_batch']} per replica · lr {lr:g} · "
            f"{info['train_rows']:,} train rows · {info['val_rows']:,} validation rows · {info['params']:,} parameters"
            + (f" · resuming after epoch {info['start_epoch']}" if info["start_epoch"] else "")
        )
        st = info.get("stream")
        if st and "blocks" in st:
            how = (
                f"converted in {duration(st['seconds'])}, {st['mb_per_s']:,.0f} MB/s"
                if st["converted"]
                else "reused"
            )
            self.console.print(
                f"streaming {st['train_rows']:,} rows in {st['blocks']:,} blocks ({st['cache_mb']:,.0f} MB, {how}) from {st['folder']}"
            )
        elif st:
            self.console.print(
                f"streaming {st['images']:,} images from {st['folder']}, decoded as they are read"
            )
        if self.live_mode:
            self.live = Live(
                self._render(), console=self.console, refresh_per_second=8, transient=False
            )
            self.live.start()

    def on_epoch_begin(self, epoch: int, steps: int) -> None:
        self.t_epoch = time.perf_counter()
        self.current = {"epoch": epoch, "done": 0, "steps": steps, "logs": {}, "sps": 0.0}
        self._refresh()

    def on_steps(
        self, epoch: int, done: int, steps: int, logs: dict[str, float], sps: float
    ) -> None:
        if self.current is not None:
            self.current.update(done=done, logs=logs, sps=sps)
        self._refresh()

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.current = None
        if self.live is not None:
            self._refresh()
        elif self.info.get("is_chief", True):
            parts = [f"epoch {epoch}/{self.info['epochs']}"] + [
                f"{k} {fmt(v)}"
                for k, v in row.items()
                if k not in ("epoch", "seconds", "samples_per_s")
            ]
            parts.append(f"{row['samples_per_s']:,.0f} samples/s")
            parts.append(f"{row['seconds']:.1f}s")
            self.console.print(" · ".join(parts))

    def on_saved(self, path: Path) -> None:
        pass

    def on_train_end(self, info: dict[str, Any]) -> None:
        self.close()

    # ---- rendering
    def _columns(self) -> list[str]:
        names = self.info.get("metrics", [])
        cols = ["loss", *names]
        if self.info.get("validation"):
            cols += ["val_loss", *[f"val_{m}" for m in names]]
        return cols

    def _fitting_columns(self, width: int) -> list[str]:
        """The metric columns that fit beside the fixed ones at this width: the
        losses first, then each metric with its validation twin. The step counter
        and the time are never squeezed (they read '━━━0/' and '0 …' when they were)."""
        cols = self._columns()
        total = self.info.get("epochs", 0)
        # each column is padded by one space a side (none at the table's edges)
        fixed = (
            max(len("epoch"), len(f"{total}/{total}"))
            + _bar_width(width)
            + STEPS_WIDTH
            + len("samples/s")
            + len("eta 0:00:00")
            + 2 * 4
        )
        room = max(0, width - fixed)
        order = ["loss", "val_loss"] + [c for c in cols if c not in ("loss", "val_loss")]
        keep: list[str] = []
        for c in order:
            need = max(len(c), 7) + 2
            if c in cols and room >= need:
                keep.append(c)
                room -= need
        return [c for c in cols if c in keep]

    def _render(self) -> Table:
        width = self.console.width
        cols = self._fitting_columns(width)
        hidden = len(self._columns()) - len(cols)
        t = Table(
            box=None,
            header_style="bold",
            pad_edge=False,
            expand=False,
            caption=f"{hidden} more metric(s) in the summary at the end" if hidden else None,
            caption_justify="left",
        )
        t.add_column("epoch", justify="right", no_wrap=True)
        bar = _bar_width(width)
        t.add_column("progress", width=bar, no_wrap=True)
        t.add_column("steps", justify="right", no_wrap=True, min_width=STEPS_WIDTH - 2)
        for c in cols:
            t.add_column(c.replace("_", " "), justify="right", no_wrap=True)
        t.add_column("samples/s", justify="right", no_wrap=True)
        t.add_column("time", justify="right", no_wrap=True, min_width=len("eta 0:00"))
        total = self.info.get("epochs", 0)
        for r in self.rows:
            t.add_row(
                f"{r['epoch']}/{total}",
                ProgressBar(
                    total=1, completed=1, width=bar, complete_style="green", finished_style="green"
                ),
                "",
                *[fmt(r.get(c, "")) for c in cols],
                f"{r['samples_per_s']:,.0f}",
                duration(r["seconds"]),
            )
        c = self.current
        if c is not None:
            done, steps = c["done"], c["steps"]
            elapsed = time.perf_counter() - self.t_epoch
            eta = elapsed / done * (steps - done) if done else float("nan")
            logs = c["logs"]
            t.add_row(
                f"{c['epoch']}/{total}",
                ProgressBar(total=steps, completed=done, width=bar),
                Text(f"{done}/{steps}", style="dim"),
                *[fmt(logs[k]) if k in logs else "" for k in cols],
                f"{c['sps']:,.0f}",
                f"eta {duration(eta)}" if done else "…",
            )
        return t


STEPS_WIDTH = 11  # "12345/67890": the live table's step counter


def _bar_width(width: int) -> int:
    return 12 if width < 100 else 20


def train_summary(outcome: Any, console: Console | None = None) -> None:
    con = console or err_console()
    if outcome.status == "already_finished":
        con.print(
            f"run {outcome.run_dir} already finished {outcome.epochs_done} epoch(s); nothing to do (extend it with --set train.epochs=N)"
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
    t.add_row("time", f"{outcome.seconds:.1f}s · {outcome.samples_per_s:,.0f} samples/s")
    times = getattr(outcome, "times", None) or {}
    if times:
        t.add_row("breakdown", " · ".join(f"{k} {v:.1f}s" for k, v in times.items() if v >= 0.05))
    from bigmodel_cli.runs import read_calibration, read_conformal

    for label, line in after_training_lines(
        read_calibration(Path(outcome.run_dir)), read_conformal(Path(outcome.run_dir))
    ):
        t.add_row(label, line)
    if outcome.model_path:
        t.add_row("model", _sized(outcome.model_path))
    inference = Path(outcome.run_dir) / "inference.onnx"
    if getattr(outcome, "background", False):  # finish.py writes them after train returns
        if outcome.plot:
            t.add_row("curves", f"{outcome.plot} (being drawn)")
        t.add_row(
            "inference", f"{inference} (being written in the background; predict waits for it)"
        )
    else:
        if outcome.plot:
            t.add_row("curves", _sized(outcome.plot))
        if inference.is_file():
            t.add_row("inference", _sized(inference))
    con.print(t)
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
                or f"temperature {cal['temperature']:.3f} · validation ECE {cal['val_ece_before']:.4f} -> {cal['val_ece_after']:.4f}",
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
                f"{cal['threshold']:.4g}"
                + (f": {cal['threshold_why']}" if cal.get("threshold_why") else ""),
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
                f"{conformal.get('rows', 0):,} scores from {conformal.get('fitted_on', '')}: predict --coverage 0.9 gives "
                + ("intervals" if conformal.get("task") == "regression" else "prediction sets"),
            )
        )
    return rows


def _sized(p: Path | str) -> str:
    from bigmodel_cli.runs import human_size, path_size

    try:
        return f"{p} ({human_size(path_size(Path(p)))})"
    except OSError:
        return str(p)


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
    con.print(t)
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
        con.print(pc)
    if "confusion_matrix" in m:
        con.print("confusion matrix (rows: true, columns: predicted)")
        cm = Table(box=None, header_style="bold")
        cm.add_column("")
        for c in m["classes"]:
            cm.add_column(str(c), justify="right")
        for c, row in zip(m["classes"], m["confusion_matrix"]):
            cm.add_row(str(c), *[str(v) for v in row])
        con.print(cm)
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
        f"metrics: {_sized(outcome.metrics_path)}"
        + (f"\nplot: {_sized(outcome.plot)}" if outcome.plot else "")
        + (
            f"\nreliability: {_sized(outcome.reliability)}"
            if getattr(outcome, "reliability", None)
            else ""
        )
    )


def explain_table(out: Any, console: Console | None = None) -> None:
    con = console or err_console()
    worse = "lost" if out.higher_is_better else "gained"
    con.print(
        f"[bold]permutation importance[/] on {out.rows:,} rows · {out.metric} {fmt(out.baseline)} as they are · {out.repeats} shuffles per column · {out.engine} · {out.seconds:.1f}s"
    )
    t = Table(box=None, header_style="bold")
    t.add_column("column")
    t.add_column(f"{out.metric} {worse}", justify="right")
    t.add_column("± std", justify="right")
    for c, v in out.importance.items():
        t.add_row(c, fmt(v), fmt(out.std[c]))
    con.print(t)
    for r in out.per_row:
        label = f" ({r['class']})" if "class" in r else ""
        if "saliency_png" in r:  # an image: its map is a picture
            con.print(
                f"row {r['row']}: output {fmt(r['output'])}{label} · saliency {_sized(r['saliency_png'])}",
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
        con.print(f"plot: {_sized(out.plot)}")


class PredictProgress:
    """A progress bar with rows/s on stderr for inputs that take more than a
    moment (a line every few seconds without a terminal)."""

    SHOW_AFTER_S = 1.0
    PLAIN_EVERY_S = 5.0

    def __init__(self, console: Console | None = None):
        self.console = console or err_console()
        self.last = 0.0
        self.progress: Any = None
        self.task: Any = None
        self.source: str | None = None

    def __call__(
        self, source: str, rows: int, seconds: float, fraction: float | None = None
    ) -> None:
        if seconds < self.SHOW_AFTER_S:
            return
        rate = rows / max(seconds, 1e-9)
        pct = f"{fraction:.0%} · " if fraction is not None else ""
        if not self.console.is_terminal:
            if seconds - self.last >= self.PLAIN_EVERY_S:
                self.last = seconds
                self.console.print(
                    f"{source}: {pct}{rows:,} rows · {rate:,.0f} rows/s · {duration(seconds)}"
                )
            return
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if self.progress is None or self.source != source:
            self.close()
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[rows]} rows · {task.fields[rate]} rows/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.task = self.progress.add_task(
                Path(source).name, total=1.0 if fraction is not None else None, rows="0", rate="0"
            )
            self.source = source
            self.progress.start()
        self.progress.update(
            self.task,
            completed=fraction if fraction is not None else 0,
            rows=f"{rows:,}",
            rate=f"{rate:,.0f}",
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def done(self, results: list[Any]) -> None:
        self.close()
        for r in results:
            for note in r.notes:
                self.console.print(f"[yellow]note:[/] {note}")
            where = "stdout" if r.output == "-" else _sized(r.output)
            self.console.print(
                f"predicted {r.rows:,} rows in {r.seconds:.1f}s ({r.rows_per_s:,.0f} rows/s, {r.engine}) -> {where}"
            )


def prepare_summary(d: dict[str, Any], console: Console | None = None) -> None:
    con = console or err_console()
    what = (
        f"converted {d['source_mb']:,.1f} MB in {duration(d['seconds'])} ({d['mb_per_s']:,.1f} MB/s)"
        if d["converted"]
        else "reused (the data and settings have not changed)"
    )
    con.print(f"block cache {what}")
    con.print(
        f"{d['train_rows']:,} training rows · {d['validation_rows']:,} validation rows · {d['features']} features · {d['blocks']:,} blocks of {d['block_rows']:,} rows · {d['cache_mb']:,.1f} MB"
    )
    for src, n in d.get("dropped") or []:
        con.print(f"[yellow]note:[/] {n:,} row(s) of {src} have no target and were left out")
    if d.get("others"):
        con.print(
            f"[yellow]note:[/] {len(d['others'])} older cache(s) beside it hold {d['others_mb']:,.1f} MB (other data or settings); delete them when no run needs them: rm -r {' '.join(d['others'][:3])}{' ...' if len(d['others']) > 3 else ''}"
        )


def export_summary(r: Any, console: Console | None = None) -> None:
    con = console or err_console()
    status = "[green]parity ok[/]" if r.parity_ok else "[red]PARITY FAILED[/]"
    con.print(
        f"exported {r.format}: {_sized(r.path)}\n{status}: largest |difference| {r.max_abs_diff:.3g} over {r.rows_compared} rows ({r.runtime} vs keras)"
    )
    if getattr(r, "inputs", None):
        con.print(
            "inputs: "
            + ", ".join(r.inputs)
            + " (numbers as float [N, 1], NaN for missing; categories and dates as their text [N, 1])",
            highlight=False,
        )
    if getattr(r, "outside_graph", None):
        con.print(
            f"[yellow]note:[/] text columns stay outside the graph (inputs ids_*): their tokenisers are in {r.outside_graph} (docs/text.md says how to feed them)",
            highlight=False,
        )


def info_table(d: dict[str, Any], console: Console | None = None) -> None:
    con = console or err_console()
    t = Table(box=None, show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in d.items():
        if k == "gpus":
            v = (
                "; ".join(
                    f"{g['device']}: {g.get('name') or '?'}, compute capability {g.get('compute_capability') or '?'}"
                    + (f", {g['memory_mb']:,} MB" if g.get("memory_mb") else "")
                    for g in v
                )
                or "none"
            )
        elif k == "cpu_bfloat16":
            v = ", ".join(v) if v else "no (no AMX or avx512_bf16)"
        elif k == "auto_strategy":
            v = (
                v.get("error")
                or f"{v['kind']} on {', '.join(v['devices'])} ({v['reason']}); precision {v['precision']} ({v['precision_reason']})"
            )
        elif k == "cluster":
            v = v.get("error") or f"{v['source']}: this is {v['task']} of " + "; ".join(
                f"{kind} {', '.join(m)}" for kind, m in v["workers"].items()
            )
        t.add_row(k.replace("_", " "), str(v))
    con.print(t)


def templates_table(items: list[Any], console: Console | None = None) -> None:
    con = console or out_console()
    t = Table(box=None, header_style="bold")
    t.add_column("template")
    t.add_column("task")
    t.add_column("what it is")
    for it in items:
        t.add_row(it.name, it.task, it.summary)
    con.print(t)


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
    con.print(t)
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


# ------------------------------------------------------------ runs and tune


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


def _test_keys(rows: list[dict[str, Any]], limit: int = 3) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r["test"] if k not in keys and k != "rows"]
    if len(keys) > 1 and "loss" in keys:
        keys.remove("loss")  # the metrics say more than the loss they were trained on
    return keys[:limit]


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
    con.print(t)


def _params_cell(params: dict[str, Any]) -> str:
    return " · ".join(
        f"{k.rsplit('.', 1)[-1]} {fmt(v) if isinstance(v, float) and abs(v) >= 1e-3 else (f'{v:.3g}' if isinstance(v, float) else v)}"
        for k, v in params.items()
    )


class TuneProgress(_LiveTable):
    """The live table of a study's trials; the running trial's epoch below it.
    Without a TTY: one line a trial."""

    def __init__(self, console: Console | None = None):
        self.console = console or err_console()
        self.live_mode = self.console.is_terminal
        self.live: Live | None = None
        self.rows: list[Any] = []
        self.current: dict[str, Any] | None = None
        self.metric, self.direction, self.target = "", "minimize", 0

    def begin(
        self,
        study: str,
        storage: Path,
        metric: str,
        direction: str,
        target: int,
        rows: list[Any],
        stale: list[int],
    ) -> None:
        self.metric, self.direction, self.target, self.rows = metric, direction, target, rows
        done = sum(r.state in ("complete", "pruned") for r in rows)
        self.console.print(
            f"study [bold]{study}[/] in {storage} · {direction} {metric} (best epoch of each trial) · {done} of {target} trials finished"
        )
        for n in stale:
            self.console.print(
                f"[yellow]trial {n} was left running by a process that is gone (killed?): marked failed, a new trial replaces it[/]"
            )
        if self.live_mode:
            self.live = Live(
                self._render(), console=self.console, refresh_per_second=4, transient=False
            )
            self.live.start()

    def trial_begin(self, number: int, params: dict[str, Any]) -> None:
        self.current = {
            "number": number,
            "params": params,
            "epoch": 0,
            "epochs": 0,
            "value": None,
            "t": time.perf_counter(),
        }
        self._refresh()

    def trial_end(
        self,
        number: int,
        state: str,
        value: float | None,
        reason: str | None,
        run_dir: str | None,
        seconds: float,
        rows: list[Any],
    ) -> None:
        self.rows, self.current = rows, None
        if self.live is not None:
            self._refresh()
        else:
            row = next((r for r in rows if r.number == number), None)
            parts = [
                f"trial {number}"
                + (" (the experiment's own settings)" if row is not None and row.baseline else ""),
                state,
                f"{self.metric} {fmt(value)}" if value is not None else "",
                _params_cell(row.params if row else {}),
                f"{row.epochs if row else 0} epochs",
                duration(seconds),
            ]
            if reason:
                parts.append(reason)
            self.console.print(" · ".join(p for p in parts if p))

    # observer protocol of the running trial (train.fit): quiet, only the last line moves
    def on_train_begin(self, info: dict[str, Any]) -> None:
        if self.current is not None:
            self.current["epochs"] = info.get("epochs", 0)

    def on_epoch_begin(self, epoch: int, steps: int) -> None:
        pass

    def on_steps(self, *a: Any) -> None:
        pass

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        if self.current is not None:
            self.current.update(epoch=epoch, value=row.get(self.metric))
            self._refresh()

    def _render(self) -> Table:
        t = Table(box=None, header_style="bold", pad_edge=False)
        for name, just in (
            ("trial", "right"),
            ("state", "left"),
            (self.metric, "right"),
            ("epochs", "right"),
            ("time", "right"),
            ("parameters", "left"),
        ):
            t.add_column(name, justify=just)
        done = [r for r in self.rows if r.state == "complete" and r.value is not None]
        best = (
            (min if self.direction == "minimize" else max)(done, key=lambda r: r.value).number
            if done
            else None
        )
        for r in self.rows:
            if r.state == "running":
                continue
            style = {"complete": "", "pruned": "dim", "fail": "red"}.get(r.state, "")
            mark = " ★" if r.number == best else ""
            t.add_row(
                f"{r.number}{mark}",
                f"[{style}]{r.state}[/]" if style else r.state,
                fmt(r.value) if r.value is not None else "",
                str(r.epochs),
                duration(r.seconds or 0),
                _params_cell(r.params) + (" (the experiment's own)" if r.baseline else ""),
            )
        c = self.current
        if c is not None:
            t.add_row(
                str(c["number"]),
                "[cyan]running[/]",
                fmt(c["value"]) if c["value"] is not None else "…",
                f"{c['epoch']}/{c['epochs']}",
                duration(time.perf_counter() - c["t"]),
                _params_cell(c["params"]),
            )
        return t


def tune_summary(outcome: Any, console: Console | None = None) -> None:
    con = console or err_console()
    finished = sum(t.state in ("complete", "pruned") for t in outcome.trials)
    states = {s: sum(t.state == s for t in outcome.trials) for s in ("complete", "pruned", "fail")}
    con.print(
        f"study {outcome.study}: {finished} finished trials ({states['complete']} complete, {states['pruned']} pruned; {states['fail']} failed) · this run ran {outcome.ran}"
    )
    if outcome.best is None:
        con.print("[yellow]no trial completed: no best.yaml[/]")
        return
    b = outcome.best
    con.print(
        f"best: trial {b.number} · {outcome.metric} {fmt(b.value)} · {_params_cell(b.params)}"
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
