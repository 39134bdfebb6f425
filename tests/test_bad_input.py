"""Bad input: exit 2, one clear line naming what is wrong, no traceback, nothing on disk touched.

Each case is one row: (id, template, setup, command, words the message must hold).
`setup(exp)` breaks something; the command runs with {exp} substituted.
"""

from pathlib import Path

import pytest
import yaml

from conftest import snapshot


def edit(key: str, value):
    def setup(exp: Path):
        f = exp / "experiment.yaml"
        cfg = yaml.safe_load(f.read_text())
        cur = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        if value is DELETE:
            cur.pop(parts[-1])
        else:
            cur[parts[-1]] = value
        f.write_text(yaml.safe_dump(cfg, sort_keys=False))

    return setup


DELETE = object()


def text(old: str, new: str, file: str = "experiment.yaml"):
    def setup(exp: Path):
        f = exp / file
        s = f.read_text()
        assert old in s, (old, file)
        f.write_text(s.replace(old, new, 1))

    return setup


def write(file: str, content: str):
    def setup(exp: Path):
        (exp / file).write_text(content)

    return setup


def nothing(exp: Path):
    pass


TRAIN = ["train", "{exp}"]
CASES = [
    # --- config schema
    (
        "unknown-top-key",
        "regression",
        text("\ntrain:", "\ntrian:"),
        TRAIN,
        ["unknown key 'trian'", "did you mean 'train'", "experiment.yaml:"],
    ),
    (
        "unknown-nested-key",
        "regression",
        text("  epochs: 60", "  epocs: 60"),
        TRAIN,
        ["train.epocs", "did you mean 'epochs'", "experiment.yaml:18:"],
    ),
    (
        "epochs-zero",
        "regression",
        edit("train.epochs", 0),
        TRAIN,
        ["train.epochs", "greater than or equal to 1"],
    ),
    (
        "negative-lr",
        "regression",
        edit("train.learning_rate", -0.1),
        TRAIN,
        ["train.learning_rate", "greater than 0"],
    ),
    (
        "validation-1.5",
        "regression",
        edit("data.validation", 1.5),
        TRAIN,
        ["data.validation", "[0, 1)"],
    ),
    (
        "bad-task",
        "regression",
        edit("task", "regresion"),
        TRAIN,
        ["task", "classification", "regression"],
    ),
    (
        "bad-optimizer",
        "regression",
        edit("train.optimizer", "adamm"),
        TRAIN,
        ["train.optimizer", "adam"],
    ),
    (
        "epochs-string",
        "regression",
        edit("train.epochs", "many"),
        TRAIN,
        ["train.epochs", "integer"],
    ),
    (
        "missing-target-key",
        "regression",
        edit("data.target", DELETE),
        TRAIN,
        ["data.target", "missing"],
    ),
    (
        "batch-larger-than-data",
        "linear",
        edit("train.batch_size", 64),
        TRAIN,
        ["train.batch_size", "larger than", "5 training rows"],
    ),
    (
        "loss-wrong-task",
        "binary-classifier",
        edit("train.loss", "mse"),
        TRAIN,
        ["train.loss", "binary_crossentropy"],
    ),
    (
        "metric-wrong-task",
        "regression",
        edit("train.metrics", ["accuracy"]),
        TRAIN,
        ["train.metrics", "accuracy", "mae"],
    ),
    (
        "image-shape-mismatch",
        "mnist-cnn",
        edit("data.image_shape", [28, 28, 2]),
        TRAIN,
        ["image_shape", "1568", "784"],
    ),
    (
        "target-is-feature",
        "regression",
        edit("data.features", ["bmi", "progression"]),
        TRAIN,
        ["target", "progression", "feature"],
    ),
    (
        "unknown-layer",
        "regression",
        edit("model.layers", [{"Dense": {"units": 20}}, {"Dence": {"units": 1}}]),
        TRAIN,
        ["model.layers[1]", "Dence", "did you mean 'Dense'"],
    ),
    (
        "lambda-layer-yaml",
        "regression",
        edit("model.layers", [{"Lambda": {"function": "x"}}]),
        TRAIN,
        ["model.layers[0]", "Lambda", "not allowed"],
    ),
    (
        "bad-layer-args",
        "regression",
        edit("model.layers", [{"Dense": {"unit": 3}}]),
        TRAIN,
        ["model.layers[0]", "Dense", "unit"],
    ),
    (
        "wrong-output-width",
        "binary-classifier",
        edit("model.layers", [{"Dense": {"units": 2, "activation": "sigmoid"}}]),
        TRAIN,
        ["outputs shape", "(1,)"],
    ),
    (
        "softmax-missing",
        "mnist-cnn",
        text("architecture: mnist_cnn", "layers: [Flatten, {Dense: {units: 10}}]"),
        TRAIN,
        ["activation", "softmax"],
    ),
    (
        "yaml-syntax",
        "regression",
        text("  epochs: 60", "  epochs: [60"),
        TRAIN,
        ["YAML does not parse", "experiment.yaml:"],
    ),
    (
        "yaml-not-mapping",
        "regression",
        write("experiment.yaml", "- a\n- b\n"),
        TRAIN,
        ["top level must be a mapping"],
    ),
    (
        "no-experiment-yaml",
        "regression",
        lambda e: (e / "experiment.yaml").unlink(),
        TRAIN,
        ["no experiment.yaml", "bigmodel init"],
    ),
    # --- --set
    (
        "set-no-equals",
        "regression",
        nothing,
        TRAIN + ["--set", "train.epochs"],
        ["--set", "no '='"],
    ),
    (
        "set-unknown-key",
        "regression",
        nothing,
        TRAIN + ["--set", "train.epohcs=3"],
        ["train.epohcs", "did you mean 'epochs'"],
    ),
    (
        "set-wrong-type",
        "regression",
        nothing,
        TRAIN + ["--set", "train.epochs=abc"],
        ["--set train.epochs=abc", "integer"],
    ),
    (
        "set-out-of-range",
        "regression",
        nothing,
        TRAIN + ["--set", "train.batch_size=0"],
        ["train.batch_size", "greater than or equal to 1"],
    ),
    # --- data
    (
        "data-missing-file",
        "regression",
        edit("data.train", "data/nope.csv"),
        TRAIN,
        ["data.train", "nope.csv", "does not exist"],
    ),
    ("data-empty-file", "regression", write("data/train.csv", ""), TRAIN, ["train.csv", "empty"]),
    (
        "data-header-only",
        "regression",
        write("data/train.csv", "patient_id,age,sex,bmi,bp,s1,s2,s3,s4,s5,s6,progression\n"),
        TRAIN,
        ["header but no rows"],
    ),
    (
        "data-missing-target-col",
        "regression",
        edit("data.target", "progresion"),
        TRAIN,
        ["'progresion'", "not found", "did you mean 'progression'", "columns"],
    ),
    (
        "data-missing-feature-col",
        "regression",
        edit("data.features", ["age", "bmii"]),
        TRAIN,
        ["'bmii'", "not found", "did you mean 'bmi'"],
    ),
    (
        "data-non-numeric",
        "regression",
        lambda e: _corrupt_cell(e, 7, "bmi", "n/a?"),
        TRAIN,
        # the words predict, eval, explain and serve use for the same value (one road)
        ["train.csv: line 7, column 'bmi' is not a number: 'n/a?'"],
    ),
    (
        "data-nan",
        "regression",
        lambda e: _corrupt_cell(e, 4, "bp", ""),
        TRAIN,
        ["missing or infinite", "line 4", "'bp'", "data.missing"],
    ),
    (
        "data-inf",
        "regression",
        lambda e: _corrupt_cell(e, 9, "s1", "inf"),
        TRAIN,
        ["missing or infinite", "line 9", "'s1'"],
    ),
    (
        "data-label-not-in-classes",
        "binary-classifier",
        edit("data.classes", ["benign", "malign"]),
        TRAIN,
        ["label 'malignant'", "not one of the model's classes"],
    ),
    (
        "data-three-labels-binary",
        "binary-classifier",
        lambda e: _corrupt_cell(e, 3, "diagnosis", "unsure"),
        TRAIN,
        ["binary task needs exactly 2", "unsure"],
    ),
    (
        "data-unknown-format",
        "regression",
        edit("data.train", "data/train.xlsx"),
        TRAIN,
        ["data.train", "does not exist"],
    ),
    (
        "data-unknown-ext",
        "regression",
        lambda e: (
            (e / "data/train.xyz").write_text("a\n1\n"),
            edit("data.train", "data/train.xyz")(e),
        ),
        TRAIN,
        ["unknown file format", ".xyz"],
    ),
    (
        "data-not-utf8",
        "regression",
        lambda e: (e / "data/train.csv").write_bytes(b"\xff\xfe\x00bin\x00ary\n\x81\x82"),
        TRAIN,
        ["train.csv"],
    ),
    # --- environment
    (
        "gpu-none",
        "regression",
        edit("train.distribute", "gpu"),
        TRAIN,
        ["distribute", "'gpu'", "no GPU", "0 GPU"],
    ),
    (
        "mirrored-none",
        "regression",
        edit("train.distribute", "mirrored"),
        TRAIN,
        ["mirrored", "no GPU"],
    ),
    (
        "devices-without-gpus",
        "regression",
        nothing,
        TRAIN + ["--devices", "0,2"],
        ["train.devices", "GPU 0", "0 GPU", "drop --devices"],
    ),
    (
        "devices-not-numbers",
        "regression",
        nothing,
        TRAIN + ["--devices", "a,b"],
        ["--devices 'a,b'", "0,2"],
    ),
    (
        "bad-tf-config",
        "regression",
        nothing,
        ["env:TF_CONFIG={not json", "train", "{exp}"],
        ["TF_CONFIG", "not valid JSON"],
    ),
    # --- paths and runs
    (
        "eval-missing-run",
        "regression",
        nothing,
        ["eval", "{exp}/runs/regression-99"],
        ["regression-99", "does not exist"],
    ),
    (
        "eval-no-runs-yet",
        "regression",
        nothing,
        ["eval", "{exp}"],
        ["no runs yet", "bigmodel train"],
    ),
    (
        "predict-missing-run",
        "regression",
        nothing,
        ["predict", "{exp}/nope", "--input", "{exp}/data/test.csv"],
        ["nope", "does not exist"],
    ),
    (
        "template-dotdot",
        "regression",
        nothing,
        ["init", "{exp}/x", "--template", "../linear"],
        ["not a template name"],
    ),
    (
        "template-slash",
        "regression",
        nothing,
        ["init", "{exp}/x", "--template", "a/b"],
        ["not a template name"],
    ),
    (
        "init-into-file",
        "regression",
        nothing,
        ["init", "{exp}/experiment.yaml", "--template", "linear"],
        ["exists and is a file"],
    ),
    ("resume-without-run", "regression", nothing, ["train", "{exp}", "--resume"], ["no runs yet"]),
    (
        "export-bad-format",
        "regression",
        nothing,
        ["export", "{exp}", "--format", "pickle"],
        ["unknown export format", "onnx"],
    ),
]


def _corrupt_cell(exp: Path, line: int, column: str, value: str):
    f = exp / "data/train.csv"
    lines = f.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    f.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, make_exp, cli, monkeypatch):
    _, template, setup, command, words = case
    exp = make_exp(template)
    setup(exp)
    before = snapshot(exp)
    args = []
    for a in command:
        if a.startswith("env:"):
            k, _, v = a[4:].partition("=")
            monkeypatch.setenv(k, v)
        else:
            args.append(a.format(exp=exp))
    r = cli(*args)
    assert r.code == 2, f"exit {r.code}\n{r.err}"
    assert "Traceback" not in r.err and "Traceback" not in r.out
    err_lines = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1, r.err
    for w in words:
        assert w in r.err, f"{w!r} not in: {r.err}"
    assert snapshot(exp) == before, "files on disk changed"
    assert not (exp / "runs").exists() or not any((exp / "runs").iterdir()), (
        "a run folder was left behind"
    )


# --- model files: each a clear line, exit 2 ------------------------------------


def _tiny_model(path: Path, lam: bool = False) -> None:
    import keras

    inp = keras.Input((3,))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp) if lam else inp
    keras.Model(inp, keras.layers.Dense(1)(x)).save(path)


def _newer(path: Path) -> None:
    import json
    import zipfile

    _tiny_model(path.with_name("ok.keras"))
    with zipfile.ZipFile(path.with_name("ok.keras")) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "metadata.json":
                meta = json.loads(data)
                meta["keras_version"] = "9.0.0"
                data = json.dumps(meta).encode()
            dst.writestr(item, data)


MODEL_CASES = [
    (
        "garbage",
        lambda p: p.write_bytes(b"not a zip at all"),
        ["not a valid .keras file", "corrupt"],
    ),
    (
        "truncated",
        lambda p: (_tiny_model(p), p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])),
        ["corrupt or truncated"],
    ),
    ("newer-version", _newer, ["Keras 9.0.0", "newer", "upgrade"]),
    ("lambda", lambda p: _tiny_model(p, lam=True), ["Lambda", "--unsafe"]),
]


@pytest.mark.parametrize("name,make,words", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_model_file(name, make, words, tmp_path, cli):
    model = tmp_path / "m.keras"
    make(model)
    data = tmp_path / "x.csv"
    data.write_text("x0,x1,x2\n1,2,3\n")
    before = snapshot(tmp_path)
    r = cli("predict", model, "--input", data, "--output", tmp_path / "out.csv")
    assert r.code == 2, r.err
    assert (
        "Traceback" not in r.err
        and len([ln for ln in r.err.splitlines() if ln.startswith("error:")]) == 1
    )
    for w in words:
        assert w in r.err, r.err
    assert snapshot(tmp_path) == before


def test_lambda_model_allowed_with_unsafe(tmp_path, cli):
    model = tmp_path / "m.keras"
    _tiny_model(model, lam=True)
    data = tmp_path / "x.csv"
    data.write_text("x0,x1,x2\n1,2,3\n")
    r = cli("predict", model, "--input", data, "--output", tmp_path / "o.csv", "--unsafe")
    assert r.code == 0, r.err


def test_internal_error_is_one_line_and_logged(cli, monkeypatch, tmp_path):
    from bigmodel_cli import api

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(api, "templates", lambda: 1 / 0)
    r = cli("templates")
    assert r.code == 1 and "internal error: ZeroDivisionError" in r.err and "Traceback" not in r.err
    log = tmp_path / "bigmodel" / "last-error.log"
    assert str(log) in r.err and "Traceback" in log.read_text()
    r = cli("templates", "--debug")
    assert r.code == 1 and "Traceback" in r.err


def test_an_internal_error_is_logged_in_the_run_it_happened_in(
    cli, monkeypatch, make_exp, tmp_path
):
    """Where an internal error is logged: in the run folder a reading command was given,
    in the new run a failing train made (the error says which: nothing is kept in the
    process between commands), else in the cache folder."""
    from bigmodel_cli.inference import predict
    from bigmodel_cli.training import trainer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    exp = make_exp("linear")
    r = cli("train", exp, "--set", "train.epochs=1")
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    monkeypatch.setattr(predict, "predict_file", lambda *a, **k: 1 / 0)
    r = cli("predict", exp, "--input", exp / "data/predict.csv", "--output", tmp_path / "o.csv")
    assert r.code == 1 and "internal error: ZeroDivisionError" in r.err, r.err
    assert (
        str(run / "error.log") in r.err and "ZeroDivisionError" in (run / "error.log").read_text()
    )

    monkeypatch.setattr(trainer.Trainer, "describe", lambda self: [][1])
    r = cli("train", exp, "--set", "train.epochs=1")
    assert r.code == 1 and "internal error: IndexError" in r.err, r.err
    newer = sorted((exp / "runs").iterdir(), key=lambda p: p.stat().st_mtime)[-1]
    assert newer != run and str(newer / "error.log") in r.err
    assert not (tmp_path / "cache" / "bigmodel" / "last-error.log").exists()
    from bigmodel_cli import api

    monkeypatch.setattr(api, "templates", lambda: 1 / 0)  # a later command names no run
    before = (newer / "error.log").read_text()
    r = cli("templates")
    assert r.code == 1 and (newer / "error.log").read_text() == before
    assert "ZeroDivisionError" in (tmp_path / "cache" / "bigmodel" / "last-error.log").read_text()
