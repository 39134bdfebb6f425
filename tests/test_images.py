"""Image folders (one subfolder per class): mnist-cnn trains on them with only the
data paths changed, and predict takes a folder or a glob of images."""

import csv
import json
from pathlib import Path

import numpy as np


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

    Image.fromarray(np.full((40, 36, 3), 200, np.uint8)).save(exp / "data" / "test_images" / "3" / "odd.jpg")
    r = cli("train", exp, "--set", "data.train=data/train_images", "--set", "data.test=data/test_images", "--set", "train.epochs=2")
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    assert (run / "inference.onnx").is_file()
    assert "path" not in (run / "config.yaml").read_text().split("features:")[1].split("id_columns")[0]
    r = cli("eval", run, "--json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["rows"] == 121 and m["accuracy"] > 0.5 and m["classes"] == [str(d) for d in range(10)]

    outs = []
    for engine in ("onnxruntime", "tensorflow"):
        out = tmp_path / f"{engine}.csv"
        r = cli("predict", run, "--input", exp / "data" / "test_images", "--output", out, "--probabilities", "--engine", engine)
        assert r.code == 0, r.err
        outs.append(list(csv.DictReader(open(out))))
    assert len(outs[0]) == 121 and {Path(o["path"]) for o in outs[0]} >= {p for p, _ in test}
    assert [o["prediction"] for o in outs[0]] == [o["prediction"] for o in outs[1]]
    assert max(abs(float(a["prob_7"]) - float(b["prob_7"])) for a, b in zip(*outs)) < 1e-5
    right = sum(o["prediction"] == Path(o["path"]).parent.name for o in outs[0])
    assert right / len(outs[0]) > 0.5
    r = cli("predict", run, "--input", str(exp / "data" / "test_images" / "7" / "*.png"), "--output", tmp_path / "sevens.csv")
    assert r.code == 0, r.err
    assert all(Path(row["path"]).parent.name == "7" for row in csv.DictReader(open(tmp_path / "sevens.csv")))


def test_image_folder_errors(make_exp, cli):
    exp = make_exp("mnist-cnn")
    _digits_to_folders(exp, "train.csv", exp / "data" / "imgs", 40)
    r = cli("train", exp, "--set", "data.train=data/imgs", "--set", "data.image_shape=null", "--set", "data.test=null")
    assert r.code == 2 and "image_shape" in r.err and not (exp / "runs").exists()
    (exp / "data" / "imgs" / "1" / "broken.png").write_bytes(b"not a png")
    r = cli("train", exp, "--set", "data.train=data/imgs", "--set", "data.test=null")
    assert r.code == 2 and "broken.png" in r.err and "not a readable image" in r.err
