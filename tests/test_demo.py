"""The core of scripts/demo.sh through the real ``lookalike`` command: on the sample set
(scikit-image's public-domain/CC0 photos and five edited copies of each), phash finds every
copy's original at rank 1, and ``lookalike duplicates`` groups each photo with its copies."""

from __future__ import annotations

from pathlib import Path


def test_demo_flow(cli, sample_set: list, tmp_path: Path) -> None:
    out = sample_set[0].path.parents[2]
    originals = {s.original for s in sample_set if s.edit == "original"}
    copies = [s for s in sample_set if s.edit != "original"]
    coll = str(tmp_path / "c")

    r = cli("index", str(out / "originals"), "--model", "phash", "--collection", coll, "--json")
    assert r.code == 0, r.err
    assert r.json()["indexed"] == len(originals)

    # every edited copy: its original at rank 1
    r = cli("search", *(str(s.path) for s in copies), "-k", "2", "--json", "--collection", coll)
    assert r.code == 0, r.err
    rows = r.json_lines()
    assert len(rows) == len(copies)
    for s, row in zip(copies, rows, strict=True):
        assert row["query"] == str(s.path)
        first, second = row["results"]
        assert first["id"] == f"{s.original}/original.jpg", (s.path, row["results"])
        assert first["label"] == s.original
        assert first["score"] >= 0.85 and second["score"] < 0.7, (s.path, row["results"])

    # add the copies: an original's nearest other items are its five copies
    r = cli("index", str(out / "copies"), "--collection", coll, "--json")
    assert r.code == 0, r.err
    assert r.json()["indexed"] == len(copies)
    for name in sorted(originals):
        r = cli("search", f"id:{name}/original.jpg", "-k", "5", "--json", "--collection", coll)
        assert r.code == 0, r.err
        found = {hit["id"] for hit in r.json_lines()[0]["results"]}
        assert found == {f"{name}/{s.edit}.jpg" for s in copies if s.original == name}

    # duplicates: one group per photo, all six files, the original kept
    r = cli("duplicates", "--collection", coll, "--json")
    assert r.code == 0, r.err
    groups = r.json()
    assert len(groups) == len(originals)
    for group in groups:
        keeper = group["keeper"]
        name = keeper["label"]
        assert keeper["id"] == f"{name}/original.jpg"
        assert sorted(m["id"] for m in group["duplicates"]) == sorted(
            f"{name}/{s.edit}.jpg" for s in copies if s.original == name
        )
