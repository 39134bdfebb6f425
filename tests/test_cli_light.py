"""--help, --version, init and templates answer without importing TensorFlow."""

import subprocess
import sys

import pytest

from conftest import ROOT

CHECK = (
    "import sys; from bigmodel_cli.cli import main; rc = main({args!r}); print('TF' if "
    "'tensorflow' in sys.modules else 'noTF', rc)"
)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["templates"],
        ["train", "--help"],
        ["init", "{tmp}/exp", "-t", "linear"],
    ],
)
def test_no_tensorflow_import(args, tmp_path):
    args = [a.format(tmp=tmp_path) for a in args]
    p = subprocess.run(
        [sys.executable, "-c", CHECK.format(args=args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert p.stdout.strip().splitlines()[-1] == "noTF 0", p.stdout + p.stderr


def test_version(cli):
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("bigmodel ")


def test_templates_lists_all(cli):
    r = cli("templates", "--json")
    import json

    names = {t["name"] for t in json.loads(r.out)}
    assert {"mnist-cnn", "linear", "regression", "binary-classifier"} <= names


def test_init_refuses_non_empty_and_unknown(cli, tmp_path):
    target = tmp_path / "exp"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    r = cli("init", target, "-t", "linear")
    assert r.code == 2 and "not empty" in r.err and "--force" in r.err
    assert (target / "notes.txt").read_text() == "mine" and not (
        target / "experiment.yaml"
    ).exists()
    r = cli("init", tmp_path / "new", "-t", "mnist-cnnn")
    assert r.code == 2 and "unknown template" in r.err and "mnist-cnn" in r.err
    assert not (tmp_path / "new").exists()
    r = cli("init", target, "-t", "linear", "--force")
    assert (
        r.code == 0
        and (target / "experiment.yaml").is_file()
        and (target / "notes.txt").read_text() == "mine"
    )


def test_installed_wheel_carries_templates(tmp_path):
    """`pip install .` (not editable) must ship templates/: build the wheel and look inside."""
    import zipfile

    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if p.returncode != 0 and "No module named" in p.stderr:
        pytest.skip("wheel building tools missing: " + p.stderr.strip().splitlines()[-1])
    assert p.returncode == 0, p.stderr
    wheel = next(tmp_path.glob("bigmodel-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for t in ("mnist-cnn", "linear", "regression", "binary-classifier"):
        assert f"bigmodel_cli/templates/{t}/experiment.yaml" in names
        assert f"bigmodel_cli/templates/{t}/data/train.csv" in names
    for t in ("text-classifier", "text-bert"):
        assert f"bigmodel_cli/templates/{t}/README.md" in names
        assert f"bigmodel_cli/templates/{t}/data/train.csv.gz" in names


def test_errors_point_at_the_set_and_the_likely_target(tmp_path, cli):
    """Issue 25, item 8: a typo in --set data.columns names the --set and the close
    column; init --data without --target lists the columns that look like targets."""
    import pandas as pd

    pd.DataFrame(
        {
            "YearsCodedJob": [1, 2, 3, 4] * 10,
            "Salary": [5.0, 6.0, 7.0, 8.0] * 10,
            "Attrition": ["y", "n"] * 20,
        }
    ).to_csv(tmp_path / "t.csv", index=False)
    r = cli("init", tmp_path / "exp", "--data", tmp_path / "t.csv")
    assert (
        r.code == 2
        and "likely targets: Attrition" in r.err
        and "--target Attrition" in r.err
        and "--target label" not in r.err
    )
    assert (
        cli("init", tmp_path / "exp", "--data", tmp_path / "t.csv", "--target", "Attrition").code
        == 0
    )
    r = cli(
        "train",
        tmp_path / "exp",
        "--set",
        "data.columns.YearsCoded=number",
        "--set",
        "train.epochs=1",
    )
    assert (
        r.code == 2
        and "--set data.columns.YearsCoded=number" in r.err
        and "did you mean 'YearsCodedJob'" in r.err
    ), r.err


def test_a_wrong_data_path_fails_before_tensorflow_is_imported(make_exp):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    exp = make_exp("regression")
    code = (
        "import sys, json\nfrom bigmodel_cli.cli import main\nrc = main(['train', sys.argv[1], "
        "'--set', 'data.train=data/nope.csv'])\nprint(json.dumps({'rc': rc, 'tf': 'tensorflow' "
        "in sys.modules}))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(exp)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {"rc": 2, "tf": False}
    assert "data.train:" in p.stderr and "nope.csv does not exist" in p.stderr


def test_help_reads_like_the_tour(capsys):
    """Issue 25, item 4: no internals ({target}, <list[str]>, <int range>, [x>=1]);
    the main commands each show an example; predict names its kinds of input."""
    import re

    from bigmodel_cli.cli import main

    for cmd in (
        ["init"],
        ["train"],
        ["eval"],
        ["predict"],
        ["export"],
        ["serve"],
        ["runs"],
        ["tune"],
        ["prepare"],
        ["submit", "slurm"],
        [],
    ):
        capsys.readouterr()
        assert main([*cmd, "--help"]) == 0
        text = capsys.readouterr().out
        assert "Usage: bigmodel" in text, cmd
        assert not re.search(
            r"\{\w+\}|<(path|str|int|float|int range|list\[str\])>|x>=|x<=", text
        ), (cmd, text)
        if cmd in (["init"], ["train"], ["eval"], ["predict"], ["export"], ["submit", "slurm"]):
            assert "Example" in text, cmd
    capsys.readouterr()
    main(["predict", "--help"])
    text = capsys.readouterr().out
    assert "image" in text and "glob" in text and "stdin" in text


def test_init_data_with_a_text_column_lets_the_run_choose(cli, tmp_path):
    """init --data on a table with text writes ngrams/max_tokens: auto and the TF-IDF bag;
    the YAML validates as it is."""
    import pandas as pd
    import yaml

    from bigmodel_cli.config.load import load_experiment

    df = pd.read_csv(ROOT / "templates" / "text-classifier" / "data" / "test.csv.gz").head(400)
    df.to_csv(tmp_path / "reviews.csv", index=False)
    r = cli("init", tmp_path / "exp", "--data", tmp_path / "reviews.csv", "--target", "label")
    assert r.code == 0, r.err
    doc = yaml.safe_load((tmp_path / "exp" / "experiment.yaml").read_text())
    assert doc["data"]["columns"]["text"] == "text"
    assert doc["data"]["text"] == {"ngrams": "auto", "max_tokens": "auto", "weighting": "tfidf"}
    cfg, _ = load_experiment(tmp_path / "exp")
    assert cfg.data.text.ngrams == "auto" and cfg.data.text.weighting == "tfidf"
