"""Without a terminal (CI logs, pipes), summaries never cut a path or a value (issue 25)."""

from pathlib import Path

import numpy as np
import pandas as pd


def test_no_tty_summaries_keep_whole_paths_and_names(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    from bigmodel_cli import ui

    monkeypatch.setattr(ui, "_err", None)  # a console made now, for this stderr (pytest's capture: no terminal)
    rng = np.random.default_rng(0)
    long = "number_of_customer_service_calls_in_the_last_billing_quarter"
    df = pd.DataFrame({long: rng.integers(0, 9, 120), "x": rng.normal(size=120).round(3)})
    df["y"] = np.where(df.x + df[long] / 4 > 1, "yes", "no")
    deep = tmp_path / "a_rather_long_folder_name_for_the_experiments_of_this_team" / "attrition-study"
    deep.parent.mkdir()
    df.to_csv(tmp_path / "t.csv", index=False)
    r = cli("init", deep, "--data", tmp_path / "t.csv", "--target", "y")
    assert r.code == 0, r.err
    assert long in r.err and "…" not in r.err, r.err
    r = cli("train", deep, "--set", "train.epochs=1", "--set", "model.ensemble=1", "--set", "model.tree_members=0")
    assert r.code == 0, r.err
    run = Path(r.out.strip().splitlines()[-1])
    assert str(run / "model.keras") in r.err and "…" not in r.err, r.err
    assert max(len(line) for line in r.err.splitlines()) > 80  # laid out wider than a terminal's 80 columns
