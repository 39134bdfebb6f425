"""Generate the reference pages from the code, so they cannot drift from it.

- ``docs/reference/configuration.md``: every key of ``experiment.yaml`` from the
  pydantic schema (``bigmodel_cli.config.ExperimentConfig``): its dotted name,
  type, default and description. A field without a description is an error.
- ``docs/reference/cli.md``: every command of the Typer app with its usage,
  arguments and options, as ``bigmodel COMMAND --help`` shows them.

``make docs`` runs this before ``mkdocs build --strict``; the generated pages are
not committed (``.gitignore``).

    python docs/gen_reference.py [--out docs/reference]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _type_name(t) -> str:
    origin = typing.get_origin(t)
    if origin is typing.Literal:
        return " \\| ".join(
            f"`{json.dumps(a)}`" if not isinstance(a, str) else f"`{a}`" for a in typing.get_args(t)
        )
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(t))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(t))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if t is type(None):
        return "null"
    if isinstance(t, type):
        return t.__name__ if not _is_model(t) else "section"
    return str(t).replace("typing.", "")


def _is_model(t) -> bool:
    from pydantic import BaseModel

    return isinstance(t, type) and issubclass(t, BaseModel)


def _sub_model(t):
    """The section model a field holds (also inside Optional), or None."""
    if _is_model(t):
        return t
    for a in typing.get_args(t):
        if _is_model(a):
            return a
    return None


def _default(field) -> str:
    from pydantic_core import PydanticUndefined

    if field.is_required():
        return "required"
    if field.default_factory is not None:
        # the default as shipped: not what a BIGMODEL_* variable of this shell makes it
        saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("BIGMODEL_")}
        try:
            value = field.default_factory()
        finally:
            os.environ.update(saved)
        if _is_model(type(value)):
            return "(section)"
        return f"`{json.dumps(value)}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{json.dumps(field.default, default=str)}`"


def config_rows(model, prefix: str = "") -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if not field.description:
            raise SystemExit(
                f"config key {key} has no description: add Field(..., description=...) in "
                "bigmodel_cli/config/ (its section's module)"
            )
        sub = _sub_model(field.annotation)
        rows.append(
            (
                key,
                "section"
                if sub is not None and _is_model(field.annotation)
                else _type_name(field.annotation),
                _default(field),
                field.description,
            )
        )
        if sub is not None:
            rows += config_rows(sub, key + ".")
    return rows


def config_page() -> str:
    from bigmodel_cli.config.experiment import ExperimentConfig

    out = [
        "# Configuration reference",
        "",
        "Generated from the schema in `bigmodel_cli/config/` (`docs/gen_reference.py`): every key",
        "`experiment.yaml` may hold, its type, default and meaning. `--set KEY=VALUE` "
        "takes the same",
        "dotted keys. Unknown keys are errors with a did-you-mean hint.",
        "",
    ]
    rows = config_rows(ExperimentConfig)
    section = None
    for key, typ, default, desc in rows:
        top = key.split(".")[0] if "." in key else ""
        if top != section:
            section = top
            out += [
                "",
                f"## `{top}`" if top else "## Top level",
                "",
                "| key | type | default | description |",
                "|---|---|---|---|",
            ]
        out.append(f"| `{key}` | {typ} | {default} | {desc.replace('|', chr(92) + '|')} |")
    return "\n".join(out) + "\n"


def cli_page() -> str:
    import click
    import typer.main

    from bigmodel_cli.cli import app

    group = typer.main.get_command(app)
    ctx = click.Context(group, info_name="bigmodel")
    out = [
        "# Command-line reference",
        "",
        "Generated from the Typer app in `bigmodel_cli/cli.py` (`docs/gen_reference.py`):",
        "what `bigmodel COMMAND --help` prints.",
        "",
    ]
    commands = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if hasattr(
            cmd, "list_commands"
        ):  # a group (bigmodel submit slurm): one section a subcommand
            sub_ctx = click.Context(cmd, info_name=name, parent=ctx)
            commands += [
                (f"{name} {n}", cmd.get_command(sub_ctx, n), sub_ctx)
                for n in cmd.list_commands(sub_ctx)
            ]
        else:
            commands.append((name, cmd, ctx))
    for name, cmd, parent in commands:
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name.split()[-1], parent=parent)
        out += [
            f"## `bigmodel {name}`",
            "",
            (cmd.help or "").strip().split("\n\n")[0],
            "",
            "```text",
            sub.get_usage(),
        ]
        for p in cmd.get_params(sub):
            rec = p.get_help_record(sub)
            if rec is None:
                if isinstance(p, click.Argument):
                    out.append(f"  {p.human_readable_name}")
                continue
            opts, text = rec
            out.append(f"  {opts}\n      {text}")
        out += ["```", ""]
    from bigmodel_cli.cli import plain_help

    return plain_help("\n".join(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reference")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "configuration.md").write_text(config_page())
    (args.out / "cli.md").write_text(cli_page())
    print(f"wrote {args.out / 'configuration.md'} and {args.out / 'cli.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
