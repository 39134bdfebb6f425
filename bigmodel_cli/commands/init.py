"""``bigmodel init``: render a template into a folder. Never imports TensorFlow.

Templates ship inside the package (``bigmodel_cli/templates`` when
installed, ``templates/`` in a source checkout). A template is a folder
holding ``experiment.yaml``, ``README.md`` and ``data/``.

Example::

    made = init_experiment(Path("my-exp"), "mnist-cnn")
    made.files   # ['experiment.yaml', 'README.md', 'data/train.csv', ...]
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from bigmodel_cli.errors import BigmodelError, PathError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def templates_root() -> Path:
    here = (
        Path(__file__).resolve().parent.parent
    )  # bigmodel_cli/: templates/ inside it when installed, beside it in a checkout
    for cand in (here / "templates", here.parent / "templates"):
        if cand.is_dir():
            return cand
    raise BigmodelError(
        "the template folder is missing from this installation",
        hint="reinstall bigmodel: pip install --force-reinstall bigmodel",
    )


@dataclass
class TemplateInfo:
    name: str
    summary: str
    task: str
    path: Path


def list_templates() -> list[TemplateInfo]:
    import yaml

    out = []
    for d in sorted(templates_root().iterdir()):
        cfg = d / "experiment.yaml"
        if not (d.is_dir() and cfg.is_file()):
            continue
        raw = yaml.safe_load(cfg.read_text()) or {}
        summary = ""
        readme = d / "README.md"
        if readme.is_file():
            lines = [
                ln.strip()
                for ln in readme.read_text().splitlines()
                if ln.strip() and not ln.startswith("#")
            ]
            summary = lines[0] if lines else ""
        out.append(TemplateInfo(d.name, summary, str(raw.get("task", "")), d))
    return out


@dataclass
class InitResult:
    path: Path
    template: str
    files: list[str]


def init_experiment(
    target: Path, template: str, force: bool = False, name: str | None = None
) -> InitResult:
    if not _NAME.match(template) or ".." in template or "/" in template:
        raise PathError(f"'{template}' is not a template name", hint="see: bigmodel templates")
    known = {t.name: t for t in list_templates()}
    if template not in known:
        import difflib

        close = difflib.get_close_matches(template, list(known), n=1)
        raise BigmodelError(
            f"unknown template '{template}'",
            hint=(f"did you mean '{close[0]}'? " if close else "")
            + f"templates: {', '.join(known)}",
        )
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise PathError(
            f"{target} exists and is a file", hint="choose a folder name for the experiment"
        )
    if target.is_dir() and any(target.iterdir()) and not force:
        raise PathError(
            f"{target} is not empty",
            hint="choose a new folder, or pass --force to write the template files into it "
            "(existing runs/ are kept)",
        )
    src = known[template].path
    import yaml

    if ((yaml.safe_load((src / "experiment.yaml").read_text()) or {}).get("model") or {}).get(
        "backbone"
    ):
        from bigmodel_cli.features.backbone import require_extra

        require_extra()  # a pretrained-encoder template is no use without the extra: say so now
    target.mkdir(parents=True, exist_ok=True)
    files = []
    for f in sorted(src.rglob("*")):
        if f.is_dir() or "__pycache__" in f.parts:
            continue
        rel = f.relative_to(src)
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
        files.append(str(rel))
    if name:
        cfg = target / "experiment.yaml"
        text = cfg.read_text()
        cfg.write_text(re.sub(r"(?m)^name:.*$", f"name: {name}", text, count=1))
    return InitResult(target, template, files)


@dataclass
class DataInitResult:
    path: Path
    data: Path
    profile: object  # profile.TableProfile
    copied: bool


def init_from_data(
    target: Path,
    data: Path | str,
    target_col: str,
    task: str | None = None,
    copy: bool = False,
    force: bool = False,
    name: str | None = None,
) -> DataInitResult:
    """An experiment folder for the user's own table: inferred task and column types.
    A URL (or a glob of them) is profiled on its first object and referenced as it is."""
    from bigmodel_cli.data import remote
    from bigmodel_cli.data.sources import _is_table, table_format
    from bigmodel_cli.data.profile import experiment_yaml, profile_table

    url = str(data) if remote.is_url(str(data)) else None
    if url is not None:
        data = remote.fetch(remote.expand(url, "train", keep=_is_table)[0])
    data = Path(remote.local_path(str(data))).expanduser()
    if not data.is_file():
        raise PathError(
            f"--data {data} is not a file",
            hint="give a CSV, TSV, Parquet or JSON Lines file (.gz allowed)",
        )
    table_format(data)  # an unknown extension is refused here
    if task is not None and task not in ("classification", "binary", "regression"):
        raise BigmodelError(
            f"unknown --task '{task}'", hint="use classification, binary or regression"
        )
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise PathError(
            f"{target} exists and is a file", hint="choose a folder name for the experiment"
        )
    if (target / "experiment.yaml").exists() and not force:
        raise PathError(
            f"{target} already holds an experiment.yaml",
            hint="choose a new folder, or pass --force to replace it (existing runs/ are kept)",
        )
    prof = profile_table(data, target_col, task)  # every check before anything is written
    if url is not None:
        prof.shown = url
    exp_name = (
        name or re.sub(r"[^A-Za-z0-9_.-]+", "-", target.resolve().name).strip("-.") or "experiment"
    )
    if not re.match(r"^[A-Za-z0-9]", exp_name):
        exp_name = "exp-" + exp_name
    target.mkdir(parents=True, exist_ok=True)
    if copy:
        (target / "data").mkdir(exist_ok=True)
        dst = target / "data" / data.name
        if dst.resolve() != data.resolve():
            shutil.copyfile(data, dst)
        ref = f"data/{data.name}"
    elif url is not None:
        ref = url
    else:
        import os

        ref = os.path.relpath(data.resolve(), target.resolve())
        if ref.startswith(".." + os.sep + ".." + os.sep + ".."):
            ref = str(data.resolve())
    from bigmodel_cli.runs import atomic_write_text

    atomic_write_text(target / "experiment.yaml", experiment_yaml(prof, exp_name, ref))
    return DataInitResult(target, data, prof, copy)


def templates() -> list[TemplateInfo]:
    return list_templates()


def init(
    target: str | Path, template: str, force: bool = False, name: str | None = None
) -> InitResult:
    return init_experiment(Path(target), template, force=force, name=name)


def init_data(
    target: str | Path,
    data: str | Path,
    target_column: str,
    task: str | None = None,
    copy: bool = False,
    force: bool = False,
    name: str | None = None,
) -> DataInitResult:
    """``bigmodel init DIR --data FILE --target COL``: an experiment for the user's own table."""
    return init_from_data(
        Path(target), data, target_column, task=task, copy=copy, force=force, name=name
    )
