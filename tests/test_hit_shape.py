"""One hit shape everywhere: ``Hit.to_dict()``, ``search --json``/``--out``, ``neighbors
--json``/``--all`` and the HTTP API show the same keys, with the manifest's metadata."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from imagegen import photo_like, save

from lookalike import Collection
from lookalike.cli.entry import main
from lookalike.search.hits import HIT_KEYS, PUBLIC_HIT_KEYS

SHAPE = ["rank", "id", "score", "label", "metadata", "url", "path"]


@pytest.fixture
def coll_dir(tmp_path: Path) -> Path:
    """A phash collection from a manifest with a URL and metadata (title, price) per item."""
    rows = []
    for i in range(6):
        path = save(photo_like(i, (96, 72)), tmp_path / "img" / f"{i}.jpg", quality=90)
        rows.append(
            {
                "id": f"item{i}",
                "path": str(path),
                "url": f"https://shop.example/{i}.jpg",
                "label": "even" if i % 2 == 0 else "odd",
                "title": f"thing {i}",
                "price": str(10 + i),
            }
        )
    manifest = tmp_path / "items.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    root = tmp_path / "coll"
    with Collection.open(root, "phash") as coll:
        coll.add([str(manifest)], workers=0)
    return root


def _check(hit: dict[str, Any], keys: list[str]) -> None:
    assert list(hit) == keys
    assert hit["metadata"]["title"].startswith("thing ")
    assert hit["url"].startswith("https://shop.example/")


def test_the_shape_is_defined_once() -> None:
    assert list(HIT_KEYS) == SHAPE
    assert list(PUBLIC_HIT_KEYS) == SHAPE[:-1]


def test_python_and_command_line_surfaces(
    coll_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Collection.open(coll_dir, create=False) as coll:
        hits = coll.search("id:item0", k=3)
        _check(hits[0].to_dict(), SHAPE)
        _check(hits[0].to_dict(include_path=False), SHAPE[:-1])
        query = coll.get("item0").path
    c = ["--collection", str(coll_dir)]

    assert main(["search", str(query), "-k", "3", "--json", *c]) == 0
    line = json.loads(capsys.readouterr().out)
    assert list(line) == ["query", "results"]
    _check(line["results"][0], SHAPE)

    assert main(["neighbors", "item0", "-k", "3", "--json", *c]) == 0
    _check(json.loads(capsys.readouterr().out)["neighbors"][0], SHAPE)

    for ext in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"nb.{ext}"
        assert main(["neighbors", "--all", "-k", "2", "--out", str(out), *c]) == 0
        rows = _read_table(out)
        assert len(rows) == 12
        assert all(list(r) == ["query", *SHAPE] for r in rows)
        assert all(r["query"] != r["id"] for r in rows)
        _check({k: rows[0][k] for k in SHAPE}, SHAPE)
        assert rows[0]["metadata"]["price"] in {str(p) for p in range(10, 16)}

    for ext in ("csv", "jsonl"):
        out = tmp_path / f"results.{ext}"
        assert main(["search", str(query), "id:item1", "-k", "2", "--out", str(out), *c]) == 0
        rows = _read_table(out)
        assert [r["query"] for r in rows] == [str(query)] * 2 + ["id:item1"] * 2
        assert all(list(r) == ["query", *SHAPE] for r in rows)
        _check({k: rows[0][k] for k in SHAPE}, SHAPE)


def _read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a hit table, with ``metadata`` decoded and numbers typed."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if path.suffix == ".parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        table = pq.read_table(path).to_pylist()
    else:
        with open(path, newline="", encoding="utf-8") as fh:
            table = list(csv.DictReader(fh))
    for row in table:
        row["metadata"] = json.loads(row["metadata"])
        row["rank"], row["score"] = int(row["rank"]), float(row["score"])
    return table


def test_http_surface_has_the_public_shape(coll_dir: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lookalike.server import ServerSettings, create_app

    links = ["image_url", "thumbnail_url"]
    with Collection.open(coll_dir, create=False) as coll:
        client = TestClient(create_app(coll, ServerSettings()))
        for resp in (
            client.post("/search", json={"id": "item0", "k": 2}),
            client.get("/items/item0/similar", params={"k": 2}),
        ):
            assert resp.status_code == 200, resp.text
            hit = resp.json()["results"][0]
            _check(hit, SHAPE[:-1] + links)
            assert "path" not in hit
