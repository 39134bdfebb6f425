"""Live progress on stderr: the training table (one row an epoch, redrawn in place on a terminal,
one plain line an epoch without one), predict's rows/s line and tune's trial table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bigmodel_cli.ui.console import duration, err_console, fmt, params_cell, sized


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
    """An observer of :func:`bigmodel_cli.training.trainer.fit`
    (``training.callbacks.Observer``) drawing a live table."""

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
            f"strategy [bold]{info['strategy']}[/] ({info['plan']['reason']}) · replicas "
            f"{info['replicas']} · devices {', '.join(info['devices'])}"
            f" · precision {info.get('precision', 'float32')}"
            + (f" ({info['precision_reason']})" if info.get("precision_reason") else "")
            + f"\nbatch {info['global_batch']} global / {info['per_replica_batch']} per replica · "
            f"lr {lr:g} · {info['train_rows']:,} train rows · {info['val_rows']:,} validation "
            f"rows · {info['params']:,} parameters"
            + (f" · resuming after epoch {info['start_epoch']}" if info["start_epoch"] else ""),
            soft_wrap=not self.live_mode,  # a terminal breaks between words, not inside a number
        )
        st = info.get("stream")
        if st and "blocks" in st:
            how = (
                f"converted in {duration(st['seconds'])}, {st['mb_per_s']:,.0f} MB/s"
                if st["converted"]
                else "reused"
            )
            self.console.print(
                f"streaming {st['train_rows']:,} rows in {st['blocks']:,} blocks "
                f"({st['cache_mb']:,.0f} MB, {how}) from {st['folder']}"
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

    def _rows_in_view(self) -> tuple[list[dict[str, Any] | None], int]:
        """On a terminal, the finished epochs that fit its height: the last ones and the best
        (by the run's monitor), None where the others are left out; every row in a log."""
        room = max(4, self.console.height - 8) if self.live_mode else len(self.rows)
        if len(self.rows) <= room:
            return list(self.rows), 0
        monitor, mode = self.info.get("monitor"), self.info.get("mode", "min")
        scored = [r for r in self.rows if isinstance(r.get(monitor), (int, float))]
        pick = min if mode == "min" else max
        best = pick(scored, key=lambda r: r[monitor]) if scored else None
        last = self.rows[-(room - 2) :]
        if best is None or best in last:
            last = self.rows[-(room - 1) :]
            return [None, *last], len(self.rows) - len(last)
        return [best, None, *last], len(self.rows) - len(last) - 1

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
        shown, hidden_rows = self._rows_in_view()
        for r in shown:
            if r is None:  # where rows are left out
                t.add_row(Text(f"… {hidden_rows} epoch(s) not shown: history.csv", style="dim"))
                continue
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
            where = "stdout" if r.output == "-" else sized(r.output)
            self.console.print(
                f"predicted {r.rows:,} rows in {r.seconds:.1f}s ({r.rows_per_s:,.0f} "
                f"rows/s, {r.engine}) -> {where}"
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
            f"study [bold]{study}[/] in {storage} · {direction} {metric} (best epoch of "
            f"each trial) · {done} of {target} trials finished"
        )
        for n in stale:
            self.console.print(
                f"[yellow]trial {n} was left running by a process that is gone (killed?): "
                "marked failed, a new trial replaces it[/]"
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
                params_cell(row.params if row else {}),
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
                params_cell(r.params) + (" (the experiment's own)" if r.baseline else ""),
            )
        c = self.current
        if c is not None:
            t.add_row(
                str(c["number"]),
                "[cyan]running[/]",
                fmt(c["value"]) if c["value"] is not None else "…",
                f"{c['epoch']}/{c['epochs']}",
                duration(time.perf_counter() - c["t"]),
                params_cell(c["params"]),
            )
        return t
