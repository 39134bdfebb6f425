"""bigmodel: the everyday deep-learning loop from the command line.

One thin function per command; the work happens in :mod:`bigmodel_cli.api`
and the rendering in :mod:`bigmodel_cli.ui`. This module must stay light:
``--help``, ``--version``, ``init`` and ``templates`` never import
TensorFlow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from bigmodel_cli import __version__

from bigmodel_cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, BigmodelError, Interrupted
from bigmodel_cli.verbs import make, use

app = typer.Typer(
    name="bigmodel",
    help="Scaffold, train, evaluate, predict and export Keras models.\n\nGlobal flags (anywhere "
    "on the line): --verbose shows TensorFlow's logs, --debug shows tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DEBUG = False


def _version(value: bool) -> None:
    if value:
        print(f"bigmodel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Scaffold, train, evaluate, predict and export Keras models."""


# ------------------------------------------------------------------ commands
# One function a command in verbs/ (make: what builds; use: what reads a trained run),
# registered here in the order --help lists them.
for command in (make.init, make.templates, make.train, make.prepare, make.runs, make.tune):
    app.command()(command)
app.command()(use.serve)
app.command("eval")(use.eval_)
for command in (use.predict, use.explain, use.export):
    app.command()(command)

submit_app = typer.Typer(
    help="Hand a training job to a scheduler: `bigmodel submit slurm EXP`.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(submit_app, name="submit")
submit_app.command("slurm")(make.submit_slurm)
app.command()(use.info)

# --------------------------------------------------------------------- main


# Commands whose first argument is the RUN they read: an internal error is logged in it.
# (train and tune make runs: they say on the error which one, runs.tag_run.)
READS_A_RUN = ("serve", "eval", "predict", "explain", "export")


def _run_named(args: list[str]) -> Path | None:
    """The run folder a reading command's arguments name, if it resolves to one."""
    from bigmodel_cli import runs as _runs  # light: no TensorFlow at import

    words = [a for a in args if not a.startswith("-")]
    if len(words) < 2 or words[0] not in READS_A_RUN:
        return None
    try:
        return _runs.resolve_run(words[1], need_model=False).run_dir
    except Exception:  # not a run: the log goes to the cache folder
        return None


def _log_internal(exc: BaseException, args: list[str]) -> Path | None:
    import traceback

    text = "".join(traceback.format_exception(exc))
    from bigmodel_cli import runs as _runs  # light: no TensorFlow at import

    candidates = []
    run = _runs.run_of(exc) or _run_named(args)
    if run is not None:
        candidates.append(run / "error.log")
    candidates.append(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "bigmodel"
        / "last-error.log"
    )
    for p in candidates:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "a", encoding="utf-8") as f:
                f.write(f"$ {' '.join(sys.argv)}\n{text}\n")
            return p
        except OSError:
            continue
    return None


def plain_help(text: str) -> str:
    """Help as a reader wants it: RUN, not {RUN}; no '<path>' or '<int range>'
    type tags; no '[x>=1]' range notes (the option's text says what it takes)."""
    import re

    text = re.sub(r"\{([A-Z][A-Z0-9_]*)\}", r"\1", text)
    text = re.sub(
        r" <(?:path|str|int|float|int range|float range|list\[str\]|list\[int\]|text|choice)>",
        lambda m: " " * len(m.group(0)),
        text,
    )  # blanks: the columns stay aligned
    text = re.sub(r"; (?:[\d.]+<=)?x(?:>=|<=)[\d.]+(?:<=[\d.]+)?\]", "]", text)
    text = re.sub(r"\s*\[(?:[\d.]+<=)?x(?:>=|<=)[\d.]+\]", "", text)
    return text


def _help(args: list[str]) -> int:
    """Run a --help (or a bare group) and print it through :func:`plain_help`."""
    import contextlib
    import io

    buf = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf):
        try:
            rv = app(args=args, prog_name="bigmodel", standalone_mode=False)
            code = int(rv or 0) if isinstance(rv, int) else 0
        except SystemExit as e:
            code = int(e.code or 0) if isinstance(e.code, int) else 0
        except Exception as e:  # noqa: BLE001  (a usage error: click's own message)
            from typer.exceptions import Exit

            code = e.exit_code if isinstance(e, Exit) else 2
            if not isinstance(e, Exit):
                buf.write((e.format_message() if hasattr(e, "format_message") else str(e)) + "\n")
    sys.stdout.write(plain_help(buf.getvalue()))
    return code


def main(argv: list[str] | None = None) -> int:
    """Console entry point: maps errors to exit codes (0, 1, 2, 130)."""
    from typer.exceptions import Abort, Exit, TyperException

    global DEBUG
    args = list(sys.argv[1:] if argv is None else argv)
    DEBUG = "--debug" in args
    verbose = "--verbose" in args
    args = [a for a in args if a not in ("--debug", "--verbose")]
    if verbose:
        os.environ["BIGMODEL_VERBOSE"] = "1"
    from bigmodel_cli.runtime import quiet_tensorflow  # light: no TensorFlow import

    quiet_tensorflow(verbose)
    from bigmodel_cli.ui.console import err_console

    con = err_console()
    if {"-h", "--help"} & set(args) or not args or args == ["submit"]:
        return _help(args)
    try:
        rv = app(args=args, prog_name="bigmodel", standalone_mode=False)
        return int(rv or 0) if isinstance(rv, int) else 0
    except Interrupted as e:
        con.print(f"[yellow]interrupted:[/] {e.message}", highlight=False)
        if e.resume_command:
            con.print(f"resume with: [bold]{e.resume_command}[/]", highlight=False)
        return EXIT_INTERRUPTED
    except BigmodelError as e:
        con.print(f"[red]error:[/] {_esc(e.message)}", highlight=False)
        if e.hint:
            con.print(f"[dim]hint:[/] {_esc(e.hint)}", highlight=False)
        if DEBUG:
            import traceback

            traceback.print_exc()
        return e.exit_code
    except Exit as e:
        return e.exit_code
    except Abort:
        return EXIT_INTERRUPTED
    except TyperException as e:  # usage errors from the vendored click
        show = getattr(e, "show", None)
        show() if show else con.print(f"error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        con.print("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as e:  # an internal bug: one line, traceback to a log
        log = _log_internal(e, args)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        con.print(f"[red]internal error:[/] {type(e).__name__}: {_esc(first)}", highlight=False)
        if DEBUG:
            import traceback

            traceback.print_exc()
        else:
            con.print(
                f"see {log} for details (or rerun with --debug)"
                if log
                else "rerun with --debug for details"
            )
        return EXIT_INTERNAL


def _esc(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def run() -> None:
    code = main()
    if "tensorflow" in sys.modules:
        # After TensorFlow has run, Python's own teardown (its thread pools, module
        # finalisers) takes about a second here. Everything the command wrote is
        # already closed and renamed into place, so leave at once.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
