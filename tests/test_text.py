"""Text columns: the Python and TensorFlow tokenisers agree id for id; text models
train, predict through onnxruntime and TensorFlow alike, and export."""

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from bigmodel_cli.features import registry
from bigmodel_cli.features import text as T

# Hard cases: CJK without spaces, accents (precomposed and combining), full-width
# forms, emoji with joiners and variation selectors, HTML/URLs/e-mail, control
# characters, other scripts, empty and very long texts.
HARD = [
    "这个手机很好用，电池也不错！👍👍",
    "日本語のテキストです。カタカナとひらがな、ｶﾀｶﾅ",
    "Héllo, Wörld! café naïve coöperate Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "e\u0301te\u0301 (combining accents) vs été",
    "İstanbul ΣΊΣΥΦΟΣ ёлка Ελληνικά",
    "mixed 中文 and English 混合 text",
    "❤️👨‍👩‍👧 family 🇫🇷 flag \u00a0nbsp\u3000ideographic\u200bzero-width",
    "<p>HTML &amp; <a href='http://x.com/a?b=c'>link</a></p>\n\nFrom: foo@bar.com\r\nSubject: hi",
    "한국어 텍스트 입니다",
    "ภาษาไทย ไม่มีช่องว่าง",
    "\x00\x1f\ufeffbom\ttab\nnewline",
    "",
    "   ",
    "a" * 30000,
    ("word " * 3000) + "中" * 3000,
    "𠀀𠀁 ext-B ideographs, 𝐛𝐨𝐥𝐝 maths letters",
    "don't stop-believing 3.14 1,000 #hashtag @user",
]


@pytest.fixture(scope="module")
def tf():
    from bigmodel_cli.training.strategy import import_tensorflow

    return import_tensorflow()


def test_tokens_need_no_configuration():
    tok = T.PyTokenizer(T.TextSpec(), [])
    assert tok.tokens("这个手机很好用，电池也不错！") == list("这个手机很好用电池也不错")
    assert tok.tokens("Héllo, WÖRLD! café") == ["hello", "world", "cafe"]
    assert tok.tokens("e\u0301te\u0301") == tok.tokens("été") == ["ete"]
    assert tok.tokens("Ｆｕｌｌ ＡＢＣ １２３") == ["full", "abc", "123"]
    assert tok.tokens("mixed 中文 text") == ["mixed", "中", "文", "text"]
    assert tok.tokens("ｶﾀｶﾅ") == list("カタカナ")  # half-width kana folded, one token each
    assert tok.tokens("が") != tok.tokens("か")  # kana voicing marks are not accents
    assert tok.tokens("❤️👍") == ["❤", "👍"]
    assert tok.tokens("") == tok.tokens(None) == tok.tokens(float("nan")) == []
    assert tok.grams("a b c") == ["a", "b", "c", "a b", "b c"]


def test_limits_cut_long_texts():
    spec = T.TextSpec(ngrams=2, max_tokens=10, max_chars=100)
    tok = T.PyTokenizer(spec, [])
    assert len(tok.tokens("word " * 1000)) == 10
    assert len(tok.grams("word " * 1000)) == 10 + 9 == tok.max_length
    assert len(tok.tokens("中" * 1000)) == 10
    assert tok.tokens("x" * 500) == ["x" * 100]


def test_vocabulary_is_deterministic_and_counts_rows():
    texts = ["好 好 好", "好 评", "差 评", "差"]
    v = T.build_vocabulary(texts, T.TextSpec(ngrams=1), min_count=2)
    assert v == ["好", "差", "评"]  # by row count, ties by text; 好 counts once per row
    assert T.build_vocabulary(list(reversed(texts)), T.TextSpec(ngrams=1), min_count=2) == v


@pytest.mark.parametrize(
    "ngrams,unique", [(1, False), (2, False), (3, False), (2, True), (3, True)]
)
def test_python_and_tensorflow_give_the_same_ids(tf, ngrams, unique):
    """Both tokenisers, repeats kept (mean bag) or each id once a row
    in order of first sight (TF-IDF bag)."""
    spec = T.TextSpec(ngrams=ngrams, max_tokens=600, max_chars=20000, unique=unique)
    vocab = T.build_vocabulary(HARD + [t.upper() for t in HARD], spec, min_count=1)
    assert len(vocab) > 100
    py = T.PyTokenizer(spec, vocab[: len(vocab) // 2])  # half the n-grams unknown: OOV ids too
    layer = T.keras_tokenizer(spec, vocab[: len(vocab) // 2])
    texts = HARD + [t[::-1] for t in HARD]
    a = py.ids(texts)
    b = layer(tf.constant(texts)).numpy()
    assert a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    assert (a == T.OOV).any() and (a > T.OOV).any()
    if unique:
        for row in a:
            kept = row[row != T.PAD]
            assert len(set(kept.tolist())) == len(kept)  # no id twice, OOV included
        full = T.PyTokenizer(
            T.TextSpec(ngrams=ngrams, max_tokens=600, max_chars=20000), vocab[: len(vocab) // 2]
        ).ids(texts)
        assert [list(dict.fromkeys(r[r != T.PAD].tolist())) for r in full] == [
            r[r != T.PAD].tolist() for r in a
        ]


def test_tfidf_bag_is_scikit_learns_tfidf(tf):
    """idf fitted with the vocabulary = TfidfVectorizer's smoothed idf; the bag with
    one-hot vectors = its binary-tf, L2-normalised rows (the TF-IDF linear model's features)."""
    sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")
    texts = [
        "good phone good battery",
        "bad phone",
        "good value",
        "bad bad battery life",
        "phone",
    ] * 3 + ["value life"]
    spec = T.TextSpec(ngrams=1, unique=True)
    vocab, idf = T.fit_vocabulary(texts, spec, min_count=1)
    ref = sklearn_text.TfidfVectorizer(binary=True, token_pattern=r"\S+")
    x_ref = ref.fit_transform(texts).toarray()
    order = [ref.vocabulary_[g] for g in vocab]
    np.testing.assert_allclose(idf[2:], ref.idf_[order], rtol=1e-6)
    assert idf[T.PAD] == 0 and idf[T.OOV] == pytest.approx(np.log((1 + len(texts)) / 2) + 1)

    _, _, TfidfBag = T.layers()
    ids = T.PyTokenizer(spec, vocab, idf=idf).ids(texts)
    bag = TfidfBag(len(idf))
    onehot = np.eye(len(idf), dtype="float32")[ids]
    out = bag(onehot, ids)  # builds it; then the fitted idf
    bag.idf.assign(idf)
    out = np.asarray(bag(onehot, ids))
    np.testing.assert_allclose(out[:, 2:], x_ref[:, order], atol=1e-6)


def test_auto_settings_follow_the_script_and_the_lengths():
    zh = ["这个手机很好用，电池也不错" * (1 + i % 3) for i in range(200)]
    en = [" ".join(["word"] * (10 + i)) for i in range(200)]  # 10..209 tokens
    c = T.choose(zh)
    assert c["script"] == "characters" and c["ngrams"] == 2 and "character pairs" in c["why"][0]
    assert c["max_tokens"] == 64  # 39 characters at most: the floor
    c = T.choose(en)
    assert c["script"] == "words" and "word pairs" in c["why"][0]
    assert (
        c["max_tokens"] == 256 and "99th percentile" in c["why"][1]
    )  # 207 tokens -> the next multiple of 64
    assert T.choose([" ".join(["w"] * 5000)] * 3)["max_tokens"] == T.AUTO_MAX_TOKENS
    assert T.choose([])["script"] == "words"
    mixed = ["mixed 中文 and English 混合"] * 10  # 4 characters of 7 tokens
    assert (
        T.choose(mixed)["script"] == "mixed"
        and "words and word pairs elsewhere" in T.choose(mixed)["why"][0]
    )


@pytest.mark.parametrize("block", [7, 40, 1000])
def test_a_fit_in_blocks_is_the_fit_at_once(monkeypatch, block):
    """TextFitter (a streamed table's conversion) fed block by block: the auto settings
    chosen from the first SAMPLE_ROWS (reached inside a block, or never), the vocabulary,
    idf and what was said, as one call on every text; its width bounds every row's ids."""
    from bigmodel_cli.config.experiment import ExperimentConfig
    from bigmodel_cli.features import text_type

    monkeypatch.setattr(T, "SAMPLE_ROWS", 50)
    monkeypatch.setattr(text_type, "SAMPLE_ROWS", 50)
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)] + ["好", "评"]
    texts = [" ".join(rng.choice(words, rng.integers(0, 12))) for _ in range(300)]
    cfg = ExperimentConfig.model_validate(
        {
            "name": "t",
            "task": "binary",
            "data": {"train": "x.csv", "target": "y", "text": {"ngrams": "auto"}},
            "model": {"architecture": "mlp"},
        }
    )
    t = cfg.data.text
    chosen = T.choose(texts, t.max_chars)  # the reference: every text at once
    spec = T.spec_of(t, chosen)
    vocab, idf = T.fit_vocabulary(texts, spec, t.vocabulary_size, t.min_count)
    once = text_type.TEXT.fit(texts, "review", "text", cfg)
    fitter = text_type.TextFitter("review", cfg)
    for i in range(0, len(texts), block):
        fitter.add(texts[i : i + block])
        fitter.measure(texts[i : i + block])
    blocks = fitter.finish()
    for tok in (once, blocks):
        assert tok.vocabulary == vocab and tok.spec == spec
        np.testing.assert_array_equal(tok.idf, idf)
    assert blocks.chosen == once.chosen and len(once.chosen) == len(chosen["why"]) + 1
    assert fitter.width >= once.ids(texts).shape[1] > 1


def test_auto_settings_in_the_config():
    from bigmodel_cli.config.load import validate
    from bigmodel_cli.errors import ConfigError

    base = {
        "name": "x",
        "task": "classification",
        "data": {"train": "t.csv", "target": "y", "text": {"ngrams": "auto", "max_tokens": "auto"}},
        "model": {"architecture": "linear"},
    }
    cfg = validate(base)
    spec = T.spec_of(cfg.data.text, T.choose(["a b c"] * 5))
    assert (spec.ngrams, spec.max_tokens, spec.unique) == (2, 64, True)
    for bad in ({"ngrams": 0}, {"ngrams": 6}, {"max_tokens": "many"}, {"weighting": "bm25"}):
        with pytest.raises(ConfigError):
            validate({**base, "data": {**base["data"], "text": bad}})


def test_every_code_point_folds_alike(tf):
    """Each code point of the table (and a few beyond it) alone, through both paths."""
    cps = [cp for cp in range(0, T.TABLE_SIZE, 7) if not 0xD800 <= cp <= 0xDFFF] + [
        0x30000,
        0x10FFFD,
        0xE0001,
    ]
    texts = [f"x{chr(cp)}y {chr(cp)}" for cp in cps]
    py = T.PyTokenizer(T.TextSpec(ngrams=1), [])
    layer = T.keras_tokenizer(T.TextSpec(ngrams=1), [])
    # Same token counts (all ids are OOV with an empty vocabulary) ...
    np.testing.assert_array_equal(
        (py.ids(texts) > 0).sum(1), (layer(tf.constant(texts)).numpy() > 0).sum(1)
    )
    # ... and the same token strings, checked through a vocabulary of them.
    vocab = sorted({g for t in texts for g in py.grams(t)})
    py, layer = (
        T.PyTokenizer(T.TextSpec(ngrams=1), vocab),
        T.keras_tokenizer(T.TextSpec(ngrams=1), vocab),
    )
    np.testing.assert_array_equal(py.ids(texts), layer(tf.constant(texts)).numpy())


def test_all_empty_batch_has_one_column(tf):
    py = T.PyTokenizer(T.TextSpec(), ["a"])
    assert py.ids(["", "  "]).shape == (2, 1)
    assert tuple(T.keras_tokenizer(T.TextSpec(), ["a"])(tf.constant(["", "  "])).shape) == (2, 1)


def test_a_run_without_text_saves_its_encoders_without_the_fold_table(tmp_path, monkeypatch):
    """Categories and dates fold nothing: saving them never builds the 1-second fold table
    (every such run paid it), and they load back the same."""
    from collections import Counter

    from bigmodel_cli.features.category import CategoryEncoder
    from bigmodel_cli.features.date import DateEncoder

    def not_built():
        raise AssertionError("the fold table was built")

    monkeypatch.setattr(T, "fold_table", not_built)
    encoders = {
        "colour": CategoryEncoder.from_counts(Counter({"red": 5, "green": 3}), 10),
        "day": DateEncoder("date_iso", [2000.0, 5.0, 11000.0, 900.0]),
    }
    registry.save_tokenizers(tmp_path, encoders)
    back = registry.load_tokenizers(tmp_path)
    assert back["colour"].vocabulary == encoders["colour"].vocabulary
    assert back["day"].stats == encoders["day"].stats and back["day"].format == "date_iso"


def test_tokenizers_round_trip_through_files(tmp_path):
    spec = T.TextSpec(ngrams=2, max_tokens=50, max_chars=400, unique=True)
    vocab, idf = T.fit_vocabulary(HARD, spec, min_count=1)
    tok = T.PyTokenizer(spec, vocab, idf=idf)
    registry.save_tokenizers(tmp_path, {"review text": tok})
    back = registry.load_tokenizers(tmp_path)["review text"]
    assert back.spec == spec and back.vocabulary == tok.vocabulary
    np.testing.assert_array_equal(back.idf, idf)
    np.testing.assert_array_equal(back.table, tok.table)
    np.testing.assert_array_equal(back.ids(HARD), tok.ids(HARD))
    assert T.ids_name("review text") == "ids_review_text"


# ------------------------------------------------------------ end to end


def _reviews(path: Path, rows: list[tuple]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "stars", "review", "label"])
        w.writerows(rows)


def _make_text_exp(tmp_path: Path, cli) -> Path:
    """A small mixed table: an id, a number, a text column in several languages."""
    rng = np.random.default_rng(0)
    good = [
        "great product, works well",
        "很好用，推荐！",
        "excellent qualité, très bien",
        "素晴らしい商品です 👍",
        "love it, five stars",
    ]
    bad = [
        "terrible, broke after a day",
        "质量很差，不推荐",
        "mauvaise qualité, déçu",
        "最悪の商品でした 👎",
        "waste of money",
    ]
    rows = []
    for i in range(400):
        pos = i % 2 == 0
        words = list(rng.choice(good if pos else bad, size=2))
        rows.append(
            (
                f"r{i}",
                int(rng.integers(3, 6) if pos else rng.integers(1, 4)),
                " ".join(words),
                "pos" if pos else "neg",
            )
        )
    rows[3] = ("r3", 2, "", "neg")  # an empty review
    rows[5] = ("r5", 1, None, "neg")  # a missing one
    rows[7] = (
        "r7",
        2,
        'terrible,\nbroke after a day\r\n"quoted"',
        "neg",
    )  # line breaks and quotes inside
    exp = tmp_path / "reviews"
    (exp / "data").mkdir(parents=True)
    _reviews(exp / "data" / "train.csv", rows[:320])
    _reviews(exp / "data" / "test.csv", rows[320:])
    (exp / "experiment.yaml").write_text(
        "name: reviews\ntask: classification\ndata:\n  train: data/train.csv\n  test: "
        "data/test.csv\n  target: label\n"
        "  id_columns: [id]\n  validation: 0.2\n  normalize: true\nmodel:\n  architecture: "
        "linear\n  embedding_dim: 8\n"
        "train:\n  epochs: 3\n  batch_size: 16\n  learning_rate: 0.01\n"
    )
    return exp


def test_text_table_trains_predicts_and_exports(tmp_path, cli):
    exp = _make_text_exp(tmp_path, cli)
    r = cli("train", exp)
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    cfg = (run / "config.yaml").read_text()
    assert "review: text" in cfg and "stars: number" in cfg  # inferred, and recorded
    assert (run / "preprocessing" / "text.json").is_file() and (run / "inference.onnx").is_file()
    meta = json.loads((run / "inference.json").read_text())
    assert meta["max_abs_diff"] < 1e-5 and set(meta["text_sha256"]) == {
        "text.json",
        "fold_table.npz",
    }

    r = cli("eval", run, "--json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["accuracy"] > 0.9 and [c["class"] for c in m["per_class"]] == ["neg", "pos"]

    test = exp / "data" / "test.csv"
    fast, slow = tmp_path / "fast.csv", tmp_path / "slow.csv"
    r = cli("predict", run, "--input", test, "--output", fast, "--probabilities", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["engine"] == "onnxruntime"
    r = cli(
        "predict",
        run,
        "--input",
        test,
        "--output",
        slow,
        "--probabilities",
        "--engine",
        "tensorflow",
    )
    assert r.code == 0, r.err
    a, b = list(csv.DictReader(open(fast))), list(csv.DictReader(open(slow)))
    assert [x["id"] for x in a] == [f"r{i}" for i in range(320, 400)] == [x["id"] for x in b]
    assert [x["prediction"] for x in a] == [x["prediction"] for x in b]
    assert max(abs(float(x["prob_pos"]) - float(y["prob_pos"])) for x, y in zip(a, b)) < 1e-5

    # New rows: unseen words, an empty and a missing text, a very long one, gzip input.
    new = tmp_path / "new.csv.gz"
    with gzip.open(new, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["review", "stars", "id"])
        w.writerows(
            [
                ["brand new words only", 3, "a"],
                ["", 4, "b"],
                [None, 2, "c"],
                ["很好用 " * 20000, 5, "d"],
                ['two\nlines, "quoted"', 1, "e"],
            ]
        )
    r = cli("predict", run, "--input", new, "--output", tmp_path / "new.csv")
    assert r.code == 0, r.err
    assert [x["id"] for x in csv.DictReader(open(tmp_path / "new.csv"))] == [
        "a",
        "b",
        "c",
        "d",
        "e",
    ]

    for fmt in ("savedmodel", "onnx", "keras"):
        r = cli("export", run, "--format", fmt, "--json")
        assert r.code == 0, (fmt, r.err)
        out = json.loads(r.out)
        assert out["parity_ok"], out
    assert (
        run / "export" / "model.encoders" / "text.json"
    ).is_file()  # the text column stays ids: its tokeniser beside the file
    r = cli("export", run, "--format", "tflite")
    assert (
        r.code == 2
        and "tflite" in r.err
        and "savedmodel" in r.err
        and not (run / "export" / "model.tflite").exists()
    )


def test_stale_vocabulary_is_not_used_by_the_fast_path(tmp_path, cli):
    """Also the other side of data.text.weighting (mean: repeats
    kept, no idf): its ONNX copy agrees too."""
    exp = _make_text_exp(tmp_path, cli)
    r = cli(
        "train",
        exp,
        "--set",
        "train.epochs=1",
        "--set",
        "data.text.weighting=mean",
        "--set",
        "data.text.ngrams=auto",
        "--set",
        "data.text.max_tokens=auto",
    )
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    said = r.out + r.err  # the auto settings, and why
    assert (
        "text column 'review': n-grams 1-2 of words and characters" in said
        and "text column 'review': max_tokens 64" in said
    ), said
    saved = json.loads((run / "preprocessing" / "text.json").read_text())["columns"]["review"]
    assert (saved["ngrams"], saved["max_tokens"]) == (2, 64)
    assert json.loads((run / "inference.json").read_text())["max_abs_diff"] < 1e-5
    assert (
        json.loads((run / "preprocessing" / "text.json").read_text())["columns"]["review"]["unique"]
        is False
    )
    f = run / "preprocessing" / "text.json"
    doc = json.loads(f.read_text())
    doc["columns"]["review"]["vocabulary"].reverse()
    f.write_text(json.dumps(doc))
    r = cli(
        "predict",
        run,
        "--input",
        exp / "data" / "test.csv",
        "--output",
        tmp_path / "p.csv",
        "--json",
    )
    assert r.code == 0, r.err
    assert json.loads(r.out)["engine"] == "tensorflow"  # model.keras's own vocabulary


def test_text_bad_input(tmp_path, cli):
    exp = _make_text_exp(tmp_path, cli)
    train = exp / "data" / "train.csv"
    good = train.read_bytes()
    train.write_bytes(good.replace("很好用".encode(), "很好用".encode("gb18030"), 1))
    r = cli("train", exp)
    assert r.code == 2 and "not UTF-8" in r.err and "Traceback" not in r.err
    assert not (exp / "runs").exists()
    train.write_bytes(good)
    r = cli("train", exp, "--set", "data.columns={revue: text}")
    assert r.code == 2 and "revue" in r.err
    r = cli("train", exp, "--set", "data.columns={review: picture}")
    assert r.code == 2 and "data.columns" in r.err
    lines = good.decode().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ","  # a missing label
    train.write_text("\n".join(lines) + "\n")
    r = cli("train", exp)
    assert r.code == 2 and "line 5" in r.err and "label" in r.err
    train.write_bytes(good)
    r = cli("train", exp, "--set", "train.epochs=1")
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes('id,review,stars\nx,fine,3\ny,"two\nlines",2\nz,很好用,5\n'.encode("gb18030"))
    for engine in ("onnxruntime", "tensorflow"):
        r = cli("predict", run, "--input", gbk, "--output", tmp_path / "o.csv", "--engine", engine)
        assert r.code == 2 and "line 5 is not UTF-8" in r.err and "Traceback" not in r.err, r.err
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("id,stars\nx,3\n")
    r = cli("predict", run, "--input", no_text, "--output", tmp_path / "o.csv")
    assert r.code == 2 and "review" in r.err and not (tmp_path / "o.csv").exists()


@pytest.mark.slow  # 15-30 s: in make test-slow, to keep make test under 10 minutes
def test_text_model_two_workers_match_one_process(tmp_path, cli):
    """Each worker's batch holds a different number of ids: the embedding's gradient
    must still reduce across workers (it aborted with a collective shape mismatch)."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    from bigmodel_cli.model.loading import load_trained

    exp = _make_text_exp(tmp_path, cli)
    sets = [
        "--set",
        "data.validation=null",
        "--set",
        "train.batch_size=16",
        "--set",
        "train.epochs=2",
    ]
    r = cli("train", exp, *sets)
    assert r.code == 0, r.err
    single = Path(r.out.strip().splitlines()[-1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(
        [sys.executable, "-m", "bigmodel_cli", "train", str(exp), "--workers", "2", *sets],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    multi = [r for r in sorted((exp / "runs").iterdir()) if r != single][0]
    a, b = (
        load_trained(single / "model.keras").get_weights(),
        load_trained(multi / "model.keras").get_weights(),
    )
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)
