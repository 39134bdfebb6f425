"""Image folders (one subfolder per class): mnist-cnn trains on them with only the
data paths changed, and predict takes a folder or a glob of images."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest


def _digits_to_folders(exp: Path, csv_name: str, out: Path, rows: int) -> list[tuple[Path, str]]:
    from PIL import Image

    made = []
    with open(exp / "data" / csv_name) as f:
        reader = csv.reader(f)
        next(reader)
        for i, row in zip(range(rows), reader):
            label, pixels = row[0], np.asarray(row[1:], dtype=np.uint8).reshape(28, 28)
            (out / label).mkdir(parents=True, exist_ok=True)
            path = out / label / f"{i:05d}.png"
            Image.fromarray(pixels, mode="L").save(path)
            made.append((path, label))
    return made


def test_mnist_cnn_trains_and_predicts_on_image_folders(make_exp, cli, tmp_path):
    exp = make_exp("mnist-cnn")
    _digits_to_folders(exp, "train.csv", exp / "data" / "train_images", 600)
    test = _digits_to_folders(exp, "test.csv", exp / "data" / "test_images", 120)
    # A colour JPEG of another size is converted and resized like the rest.
    from PIL import Image

    Image.fromarray(np.full((40, 36, 3), 200, np.uint8)).save(
        exp / "data" / "test_images" / "3" / "odd.jpg"
    )
    r = cli(
        "train",
        exp,
        "--set",
        "data.train=data/train_images",
        "--set",
        "data.test=data/test_images",
        "--set",
        "train.epochs=2",
    )
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    assert (run / "inference.onnx").is_file()
    assert (
        "path" not in (run / "config.yaml").read_text().split("features:")[1].split("id_columns")[0]
    )
    r = cli("eval", run, "--json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["rows"] == 121 and m["accuracy"] > 0.5 and m["classes"] == [str(d) for d in range(10)]

    outs = []
    for engine in ("onnxruntime", "tensorflow"):
        out = tmp_path / f"{engine}.csv"
        r = cli(
            "predict",
            run,
            "--input",
            exp / "data" / "test_images",
            "--output",
            out,
            "--probabilities",
            "--engine",
            engine,
        )
        assert r.code == 0, r.err
        outs.append(list(csv.DictReader(open(out))))
    assert len(outs[0]) == 121 and {Path(o["path"]) for o in outs[0]} >= {p for p, _ in test}
    assert [o["prediction"] for o in outs[0]] == [o["prediction"] for o in outs[1]]
    assert max(abs(float(a["prob_7"]) - float(b["prob_7"])) for a, b in zip(*outs)) < 1e-5
    right = sum(o["prediction"] == Path(o["path"]).parent.name for o in outs[0])
    assert right / len(outs[0]) > 0.5
    r = cli(
        "predict",
        run,
        "--input",
        str(exp / "data" / "test_images" / "7" / "*.png"),
        "--output",
        tmp_path / "sevens.csv",
    )
    assert r.code == 0, r.err
    assert all(
        Path(row["path"]).parent.name == "7"
        for row in csv.DictReader(open(tmp_path / "sevens.csv"))
    )

    # explain: a column of an image is a region of a 4x4 grid; each row gets a saliency map
    docs = []
    for engine in ("onnxruntime", "tensorflow"):
        r = cli(
            "explain",
            run,
            "--data",
            exp / "data" / "test_images",
            "--rows",
            "2",
            "--repeats",
            "2",
            "--json",
            "--engine",
            engine,
        )
        assert r.code == 0, r.err
        docs.append(json.loads(r.out))
    doc = docs[0]
    assert len(doc["importance"]) == 16 and doc["rows"] == 121
    imp = doc["importance"]
    corners = [
        v
        for n, v in imp.items()
        if n.split(" (")[0] in ("region 1,1", "region 1,4", "region 4,1", "region 4,4")
    ]
    centre = [
        v
        for n, v in imp.items()
        if n.split(" (")[0] in ("region 2,2", "region 2,3", "region 3,2", "region 3,3")
    ]
    assert min(centre) > max(corners), (
        imp
    )  # the digits are in the middle; the corners are background
    for n in imp:
        assert docs[1]["importance"][n] == pytest.approx(imp[n], abs=1e-4)
    assert [r["class"] for r in doc["per_row"]] == [r["class"] for r in docs[1]["per_row"]]
    for row in doc["per_row"]:
        assert Path(row["saliency_png"]).stat().st_size > 5_000 and row["class"] in [
            str(d) for d in range(10)
        ]
    assert (run / "plots" / "importance.png").is_file()
    r = cli(
        "explain",
        run,
        "--data",
        exp / "data" / "test.csv",
        "--rows",
        "1",
        "--repeats",
        "1",
        "--max-rows",
        "200",
    )  # a pixel table, and the table on stderr
    assert r.code == 0, r.err
    assert "region 2,2" in r.err and "saliency" in r.err and "row-1.png" in r.err


def test_image_folder_errors(make_exp, cli):
    exp = make_exp("mnist-cnn")
    _digits_to_folders(exp, "train.csv", exp / "data" / "imgs", 40)
    r = cli(
        "train",
        exp,
        "--set",
        "data.train=data/imgs",
        "--set",
        "data.image_shape=null",
        "--set",
        "data.test=null",
    )
    assert r.code == 2 and "image_shape" in r.err and not (exp / "runs").exists()
    (exp / "data" / "imgs" / "1" / "broken.png").write_bytes(b"not a png")
    r = cli("train", exp, "--set", "data.train=data/imgs", "--set", "data.test=null")
    assert r.code == 2 and "broken.png" in r.err and "not a readable image" in r.err


def test_streamed_folder_trains_exactly_like_the_in_memory_one(make_exp, cli):
    """Decoded as training reads them (data.stream: auto), the images come in the
    in-memory order: the same weights."""
    from test_resume import assert_same_weights

    exp = make_exp("mnist-cnn")
    _digits_to_folders(exp, "train.csv", exp / "data" / "imgs", 240)
    sets = [
        "--set",
        "data.train=data/imgs",
        "--set",
        "data.test=null",
        "--set",
        "train.epochs=2",
        "--set",
        "train.batch_size=32",
    ]
    runs = []
    for stream in ("auto", "false"):
        r = cli("train", exp, *sets, "--set", f"data.stream={stream}")
        assert r.code == 0, r.err
        runs.append(Path(r.out.strip().splitlines()[-1]))
    assert "decoded as they are read" in cli("train", exp, *sets, "--set", "train.epochs=1").err
    assert_same_weights(runs[0] / "model.keras", runs[1] / "model.keras", rtol=1e-5, atol=1e-6)


def test_augmentation_acts_only_while_training(make_exp, cli, tmp_path):
    exp = make_exp("mnist-cnn")
    _digits_to_folders(exp, "train.csv", exp / "data" / "imgs", 200)
    r = cli(
        "train",
        exp,
        "--set",
        "data.train=data/imgs",
        "--set",
        "data.test=null",
        "--set",
        "train.epochs=1",
        "--set",
        "data.augment={flip: horizontal, rotation: 0.05, zoom: 0.1, translation: 0.1, "
        "contrast: 0.2}",
    )
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    assert (run / "inference.onnx").is_file()  # parity held: the random layers pass images through
    import keras

    from bigmodel_cli.model.loading import register_layers

    register_layers()
    model = keras.models.load_model(run / "model.keras", compile=False)
    layer = model.get_layer("augment")
    assert [s.name for s in layer.steps] == ["flip", "rotation", "zoom", "translation", "contrast"]
    x = np.random.default_rng(0).uniform(0, 255, size=(4, 784)).astype("float32")
    np.testing.assert_allclose(model(x), model(x, training=False))
    images = keras.Model(model.inputs, layer.output)
    np.testing.assert_allclose(
        images(x), x.reshape(4, 28, 28, 1) / 255, atol=1e-6
    )  # predicting: untouched
    assert not np.allclose(images(x, training=True), images(x))
    r = cli(
        "train",
        exp,
        "--set",
        "data.augment={flip: horizontal}",
        "--set",
        "data.image_shape=null",
        "--set",
        "train.epochs=1",
        "--set",
        "model.architecture=null",
        "--set",
        "model.layers=[{Dense: {units: 10, activation: softmax}}]",
    )
    assert r.code == 2 and "data.augment works on images" in r.err
