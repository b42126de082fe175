"""End-to-end tests through the real ``lookalike`` entry point, with the weight-free phash model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


@pytest.fixture
def indexed(cli, photos: Path, tmp_path: Path) -> Path:
    coll = tmp_path / "coll"
    r = cli(
        "index",
        str(photos),
        "--model",
        "phash",
        "--collection",
        str(coll),
        "--json",
        "--workers",
        "0",
    )
    assert r.code == 0, r.err
    report = r.json()
    seconds = report.pop("seconds")
    assert report == {"indexed": 60, "unchanged": 0, "renamed": 0, "removed": 0, "skipped": 0}
    assert set(seconds) == {"scan", "model", "embed", "index"}
    assert all(isinstance(v, float) and v >= 0 for v in seconds.values())
    return coll


def test_search_by_file_returns_itself_first_with_scores(cli, indexed: Path, photos: Path) -> None:
    query = sorted((photos / "hat").glob("*.jpg"))[0]
    r = cli("search", str(query), "--collection", str(indexed), "-k", "5", "--json")
    assert r.code == 0, r.err
    (line,) = r.json_lines()
    assert line["query"] == str(query)
    results = line["results"]
    assert [h["rank"] for h in results] == [1, 2, 3, 4, 5]
    assert results[0]["id"] == f"hat/{query.name}"
    assert results[0]["path"] == str(query.resolve())
    assert results[0]["score"] == 1.0
    assert results[0]["label"] == "hat"
    scores = [h["score"] for h in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_search_by_id_leaves_the_item_out(cli, indexed: Path, photos: Path) -> None:
    item = f"dress/{sorted((photos / 'dress').glob('*.jpg'))[0].name}"
    r = cli("search", f"id:{item}", "--collection", str(indexed), "-k", "59", "--json")
    assert r.code == 0, r.err
    results = r.json_lines()[0]["results"]
    assert len(results) == 59
    assert item not in [h["id"] for h in results]


def test_threshold_and_several_queries(cli, indexed: Path, photos: Path) -> None:
    q1, q2 = sorted((photos / "shoes").glob("*.jpg"))[:2]
    r = cli(
        "search", str(q1), str(q2), "--collection", str(indexed), "--threshold", "0.99", "--json"
    )
    assert r.code == 0, r.err
    lines = r.json_lines()
    assert [line["query"] for line in lines] == [str(q1), str(q2)]
    for line in lines:
        assert all(h["score"] >= 0.99 for h in line["results"])
        assert len(line["results"]) >= 1


def test_human_output(cli, indexed: Path, photos: Path) -> None:
    query = sorted((photos / "pants").glob("*.jpg"))[0]
    r = cli("search", str(query), "--collection", str(indexed), "-k", "3")
    assert r.code == 0
    assert "1.0000" in r.out and f"pants/{query.name}" in r.out


def test_info_json(cli, indexed: Path) -> None:
    r = cli("info", "--collection", str(indexed), "--json")
    assert r.code == 0, r.err
    info = r.json()
    assert info["items"] == 60
    assert info["model"] == "phash"
    assert info["dim"] == 64
    assert info["index"]["type"] == "flat"
    assert info["index"]["count"] == 60
    assert info["index"]["bytes"] > 0
    assert info["skipped"] == []


def test_collection_from_environment(cli, photos: Path, tmp_path: Path) -> None:
    env = {"LOOKALIKE_COLLECTION": str(tmp_path / "envcoll")}
    r = cli("index", str(photos / "hat"), "--model", "phash", "--json", env=env)
    assert r.code == 0, r.err
    assert (tmp_path / "envcoll" / "collection.json").exists()
    r = cli("info", "--json", env=env)
    assert r.json()["items"] == 6


def test_default_collection_is_dot_lookalike(cli, photos: Path, tmp_path: Path) -> None:
    r = cli("index", str(photos / "hat"), "--model", "phash", "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    assert (tmp_path / ".lookalike" / "collection.json").exists()


def test_remove(cli, indexed: Path, photos: Path) -> None:
    item = f"skirt/{sorted((photos / 'skirt').glob('*.jpg'))[0].name}"
    r = cli("remove", item, "--collection", str(indexed))
    assert r.code == 0, r.err
    r = cli("search", f"id:{item}", "--collection", str(indexed))
    assert r.code == 2 and "no item" in r.err
    assert cli("info", "--collection", str(indexed), "--json").json()["items"] == 59


def test_remove_unknown_id_removes_nothing(cli, indexed: Path) -> None:
    r = cli("remove", "hat/nope.jpg", "--collection", str(indexed))
    assert r.code == 2
    assert "nothing removed" in r.err
    assert cli("info", "--collection", str(indexed), "--json").json()["items"] == 60


def test_export_npy(cli, indexed: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    r = cli("export", "--format", "npy", str(out), "--collection", str(indexed))
    assert r.code == 0, r.err
    vectors = np.load(out / "vectors.npy", allow_pickle=False)
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert vectors.shape == (60, 8) and vectors.dtype == np.uint8
    assert len(rows) == 60
    assert {"id", "path", "label", "metadata"} <= set(rows[0])


def test_export_parquet(cli, indexed: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "items.parquet"
    r = cli("export", "--format", "parquet", str(out), "--collection", str(indexed))
    assert r.code == 0, r.err
    table = pq.read_table(out)
    assert table.num_rows == 60
    assert set(table.column_names) >= {"id", "path", "label", "metadata", "vector"}
    assert len(table.column("vector")[0]) == 8


# -- bad input ---------------------------------------------------------------------------


def test_missing_query_image_exit_2_collection_untouched(
    cli, indexed: Path, tmp_path: Path
) -> None:
    before = _digest_tree(indexed)
    r = cli("search", str(tmp_path / "nope.jpg"), "--collection", str(indexed))
    assert r.code == 2
    assert "does not exist" in r.err
    assert "Traceback" not in r.err
    assert r.err.count("\n") == 1
    assert _digest_tree(indexed) == before


def test_corrupt_query_image_exit_2_collection_untouched(
    cli, indexed: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    before = _digest_tree(indexed)
    r = cli("search", str(bad), "--collection", str(indexed))
    assert r.code == 2
    assert "cannot be used" in r.err and "Traceback" not in r.err
    assert _digest_tree(indexed) == before


def test_url_query_needs_allow_urls(cli, indexed: Path) -> None:
    r = cli("search", "http://127.0.0.1:9/x.jpg", "--collection", str(indexed))
    assert r.code == 2 and "--allow-urls" in r.err


def test_search_missing_collection(cli, tmp_path: Path, photos: Path) -> None:
    query = next(photos.rglob("*.jpg"))
    r = cli("search", str(query), "--collection", str(tmp_path / "nothing-here"))
    assert r.code == 2
    assert "no collection" in r.err
    assert not (tmp_path / "nothing-here").exists()


def test_search_empty_collection(cli, tmp_path: Path, photos: Path) -> None:
    coll = tmp_path / "empty"
    empty_src = tmp_path / "empty-src"
    empty_src.mkdir()
    assert cli("index", str(empty_src), "--model", "phash", "--collection", str(coll)).code == 0
    r = cli("search", str(next(photos.rglob("*.jpg"))), "--collection", str(coll))
    assert r.code == 2
    assert "empty" in r.err


def test_not_a_collection_is_refused(cli, tmp_path: Path, photos: Path) -> None:
    folder = tmp_path / "my-documents"
    folder.mkdir()
    (folder / "letter.txt").write_text("dear ...")
    r = cli("index", str(photos), "--model", "phash", "--collection", str(folder))
    assert r.code == 2
    assert "not a lookalike collection" in r.err
    assert sorted(p.name for p in folder.iterdir()) == ["letter.txt"]
    r = cli("search", str(next(photos.rglob("*.jpg"))), "--collection", str(folder))
    assert r.code == 2 and "not a lookalike collection" in r.err


def test_model_mismatch_is_refused(cli, indexed: Path, photos: Path) -> None:
    before = _digest_tree(indexed)
    r = cli(
        "search",
        str(next(photos.rglob("*.jpg"))),
        "--collection",
        str(indexed),
        "--model",
        "dinov2-small",
    )
    assert r.code == 2
    assert "built with model 'phash'" in r.err
    r = cli("index", str(photos), "--collection", str(indexed), "--model", "resnet50")
    assert r.code == 2
    assert "built with model 'phash'" in r.err
    assert _digest_tree(indexed) == before


def test_unknown_model_and_bad_arguments(cli, tmp_path: Path, photos: Path) -> None:
    r = cli("index", str(photos), "--model", "no-such-model", "--collection", str(tmp_path / "c"))
    assert r.code == 2 and "unknown model" in r.err
    r = cli("search", "x.jpg", "-k", "0")
    assert r.code == 2 and "must be positive" in r.err
    r = cli(
        "index",
        str(tmp_path / "missing-folder"),
        "--model",
        "phash",
        "--collection",
        str(tmp_path / "c2"),
    )
    assert r.code == 2 and "missing-folder" in r.err


def test_offline_pretrained_model_gives_advice_not_traceback(
    cli, tmp_path: Path, photos: Path
) -> None:
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "hf")}
    r = cli("index", str(photos), "--collection", str(tmp_path / "c"), env=env)
    assert r.code != 0
    assert "Traceback" not in r.err
    assert "--model-path" in r.err and "phash" in r.err
    # nothing half-made is left behind, and the same folder can then be used with phash
    r = cli(
        "index",
        str(photos / "hat"),
        "--model",
        "phash",
        "--collection",
        str(tmp_path / "c"),
        "--json",
    )
    assert r.code == 0, r.err
