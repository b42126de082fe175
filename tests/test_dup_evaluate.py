"""Pair/group precision, recall and F1 on tiny ground truths with known answers, and the
near-duplicate test-set generator end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import imagegen
import pytest

from lookalike import Collection
from lookalike.cli.entry import main
from lookalike.dedup.evaluate import Truth, evaluate, read_ground_truth
from lookalike.dedup.testset import EDITS, make_duplicate_set
from lookalike.errors import InvalidInput


def _truth(groups: dict[str, str | None], edits: dict[str, str] | None = None) -> Truth:
    return Truth("path", groups, edits or {})


def test_pair_and_group_scores_known_answer() -> None:
    truth = _truth({"a": "g1", "b": "g1", "c": "g1", "d": "g2", "e": "g2", "f": None})
    # predicted pairs: ab, de, df, ef -> 4; true pairs: ab ac bc de -> 4; right: ab, de -> 2
    res = evaluate([["a", "b"], ["d", "e", "f"]], truth)
    assert (res["pairs"].tp, res["pairs"].predicted, res["pairs"].actual) == (2, 4, 4)
    assert res["pairs"].precision == 0.5 and res["pairs"].recall == 0.5
    assert res["pairs"].f1 == 0.5
    # no predicted group equals a true group
    assert (res["groups"].tp, res["groups"].predicted, res["groups"].actual) == (0, 2, 2)
    perfect = evaluate([["a", "b", "c"], ["d", "e"]], truth)
    assert perfect["pairs"].f1 == 1.0 and perfect["groups"].f1 == 1.0
    nothing = evaluate([], truth)
    assert nothing["pairs"].precision is None and nothing["pairs"].recall == 0.0


def test_per_edit_recall_counts_copies_put_with_their_original() -> None:
    truth = _truth(
        {"o1": "g1", "r1": "g1", "f1": "g1", "o2": "g2", "r2": "g2", "f2": "g2", "x": None},
        {
            "o1": "original",
            "o2": "original",
            "r1": "resize",
            "r2": "resize",
            "f1": "flip",
            "f2": "flip",
            "x": "distractor",
        },
    )
    # both resized copies found; one flip found; the distractor wrongly joined to o2
    res = evaluate([["o1", "r1", "f1"], ["o2", "r2", "x"]], truth)
    per = res["per_edit"]
    assert per["resize"].recall == 1.0 and per["resize"].precision == 1.0
    assert per["flip"].recall == 0.5 and per["flip"].precision == 1.0
    assert per["distractor"].precision == 0.0 and per["distractor"].recall is None


def test_ground_truth_formats_and_errors(tmp_path: Path) -> None:
    (tmp_path / "gt.json").write_text(json.dumps([["x.jpg", "y.jpg"], ["z.jpg"]]))
    t = read_ground_truth(tmp_path / "gt.json")
    assert (
        t.group[str((tmp_path / "x.jpg").resolve())] == t.group[str((tmp_path / "y.jpg").resolve())]
    )
    assert t.group[str((tmp_path / "z.jpg").resolve())] is None
    (tmp_path / "bad.csv").write_text("file,cluster\na,1\n")
    with pytest.raises(InvalidInput, match="'path'"):
        read_ground_truth(tmp_path / "bad.csv")
    with pytest.raises(InvalidInput, match="does not exist"):
        read_ground_truth(tmp_path / "missing.csv")


def test_generator_and_evaluate_cli(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    for i in range(3):
        imagegen.save(imagegen.photo_like(40 + i, (240, 200)), src / f"p{i}.jpg", quality=92)
    out = tmp_path / "set"
    gt = make_duplicate_set(src, out, originals=2, distractors=1, seed=3)
    rows = list(csv.DictReader(gt.open()))
    assert len(rows) == 2 * (1 + len(EDITS)) + 1
    assert {r["edit"] for r in rows} == {"original", "distractor", *EDITS}
    assert all((out / r["path"]).is_file() for r in rows)
    assert sum(r["group"] == "" for r in rows) == 1
    with pytest.raises(InvalidInput, match="not empty"):
        make_duplicate_set(src, out, originals=1, distractors=0)

    coll = tmp_path / "c"
    with Collection.open(coll, "phash") as c:
        assert c.add(out, workers=0).indexed == len(rows)
    args = ["evaluate", "duplicates", "--collection", str(coll), "--ground-truth", str(gt)]
    assert main([*args, "--level", "exact", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert exact["per_edit"]["copy"]["recall"] == 1.0
    assert exact["per_edit"]["lossless"]["recall"] == 1.0
    assert exact["per_edit"]["resize"]["recall"] == 0.0
    assert exact["pairs"]["precision"] == 1.0

    assert main(args) == 0  # near, the printed table
    table = capsys.readouterr().out
    assert "edit: resize" in table and "pairs (all)" in table

    # a `duplicates --out` file evaluates the same as running the finder
    pred = tmp_path / "pred.csv"
    assert main(["duplicates", "--collection", str(coll), "--out", str(pred)]) == 0
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert main([*args, "--predictions", str(pred), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert direct["pairs"] == from_file["pairs"]
    assert direct["per_edit"]["recompress"]["recall"] == 1.0


def test_make_duplicates_cli(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    imagegen.save(imagegen.photo_like(50, (120, 100)), src / "only.jpg")
    code = main(["evaluate", "make-duplicates", str(src), str(tmp_path / "o"), "--originals", "1"])
    assert code == 0 and (tmp_path / "o" / "ground_truth.csv").is_file()
    assert (
        main(["evaluate", "make-duplicates", str(src), str(tmp_path / "p"), "--originals", "5"])
        == 2
    )
    assert "only 1 usable" in capsys.readouterr().err
