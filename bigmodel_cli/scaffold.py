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

from .errors import BigmodelError, PathError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def templates_root() -> Path:
    here = Path(__file__).resolve().parent
    for cand in (here / "templates", here.parent / "templates"):
        if cand.is_dir():
            return cand
    raise BigmodelError("the template folder is missing from this installation", hint="reinstall bigmodel: pip install --force-reinstall bigmodel")


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
            lines = [ln.strip() for ln in readme.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            summary = lines[0] if lines else ""
        out.append(TemplateInfo(d.name, summary, str(raw.get("task", "")), d))
    return out


@dataclass
class InitResult:
    path: Path
    template: str
    files: list[str]


def init_experiment(target: Path, template: str, force: bool = False, name: str | None = None) -> InitResult:
    if not _NAME.match(template) or ".." in template or "/" in template:
        raise PathError(f"'{template}' is not a template name", hint="see: bigmodel templates")
    known = {t.name: t for t in list_templates()}
    if template not in known:
        import difflib

        close = difflib.get_close_matches(template, list(known), n=1)
        raise BigmodelError(f"unknown template '{template}'", hint=(f"did you mean '{close[0]}'? " if close else "") + f"templates: {', '.join(known)}")
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise PathError(f"{target} exists and is a file", hint="choose a folder name for the experiment")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise PathError(f"{target} is not empty", hint="choose a new folder, or pass --force to write the template files into it (existing runs/ are kept)")
    src = known[template].path
    import yaml

    if ((yaml.safe_load((src / "experiment.yaml").read_text()) or {}).get("model") or {}).get("backbone"):
        from .pretrained import require_extra

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
