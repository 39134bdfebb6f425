"""The docs (issue 21): a short README, reference pages generated from the code
that cover every key and command, and a site that builds strictly."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_reference", ROOT / "docs" / "gen_reference.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_is_short_and_links_every_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert "make demo" in "\n".join(text.splitlines()[:20]) and "make test" in "\n".join(
        text.splitlines()[:20]
    )
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    linked = set(re.findall(r"\(docs/([\w-]+\.md)\)", text))
    assert pages <= linked, pages - linked


def test_reference_pages_cover_every_key_and_command(tmp_path):
    from typer.main import get_command

    from bigmodel_cli.cli import app
    from bigmodel_cli.config.experiment import ExperimentConfig

    gen = _generator()
    config = gen.config_page()
    keys = [k for k, *_ in gen.config_rows(ExperimentConfig)]
    assert len(keys) > 60 and {
        "data.numeric_encoding",
        "train.checkpoint_every",
        "train.early_stopping.patience",
    } <= set(keys)
    for k in keys:
        assert f"| `{k}` |" in config
    cli = gen.cli_page()
    for name, cmd in get_command(app).commands.items():
        if cmd.hidden:
            continue
        for sub in getattr(cmd, "commands", None) or [None]:
            assert f"## `bigmodel {name}{' ' + sub if sub else ''}`" in cli


def test_the_committed_reference_pages_are_current():
    """docs/reference/ is committed (so README's links work on the repository page before
    any build) and must be what the code generates now: a new key or option without
    `make docs` fails here."""
    gen = _generator()
    for name, page in (("configuration.md", gen.config_page()), ("cli.md", gen.cli_page())):
        committed = (ROOT / "docs" / "reference" / name).read_text()
        assert committed == page, f"docs/reference/{name} is stale: run make docs and commit it"


def test_a_key_without_description_fails_the_generator():
    from pydantic import BaseModel

    class Bad(BaseModel):
        documented: int = 1
        bare: int = 2

    Bad.model_fields["documented"].description = "has one"
    with pytest.raises(SystemExit, match="bare has no description"):
        _generator().config_rows(Bad)


def test_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs, ignore=shutil.ignore_patterns("reference"))
    subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_reference.py"), "--out", str(docs / "reference")],
        check=True,
        capture_output=True,
    )
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    r = subprocess.run(
        [mkdocs, "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").is_file()
