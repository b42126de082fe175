"""Indexing real sources end to end: bad files, filters, manifests, URL manifests."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import imagegen
import pytest
from http_server import LocalHTTPServer

from lookalike import Collection
from lookalike.ingest.decode import DecodeLimits

# name -> (bytes factory, expected skip reason); the file name says the expected answer
BAD_FILES = {
    "empty.jpg": (lambda: b"", "empty"),
    "truncated.jpg": (lambda: imagegen.truncated_jpeg(), "truncated"),
    "random-bytes.jpg": (lambda: imagegen.random_bytes(), "not-an-image"),
    "text.png": (lambda: imagegen.text_file(), "not-an-image"),
    "bomb.png": (lambda: imagegen.png_bomb(), "too-large"),
}

GOOD_FILES = {
    "cmyk.jpg": imagegen.cmyk_jpeg,
    "palette-alpha.png": imagegen.palette_png_transparent,
    "rgba.png": imagegen.rgba_png,
    "sixteen-bit.png": imagegen.png16,
    "grey.jpg": imagegen.grayscale_jpeg,
}


def test_bad_files_are_skipped_with_reasons_and_never_stop_the_run(
    cli, photos: Path, tmp_path: Path
) -> None:
    bad_dir = photos / "junk"
    bad_dir.mkdir()
    for name, (make, _) in BAD_FILES.items():
        (bad_dir / name).write_bytes(make())
    for name, make in GOOD_FILES.items():
        (bad_dir / name).write_bytes(make())
    coll = tmp_path / "c"
    r = cli("index", str(photos), "--model", "phash", "--collection", str(coll), "--json")
    assert r.code == 0, r.err
    assert {k: v for k, v in r.json().items() if k != "seconds"} == {
        "indexed": 60 + len(GOOD_FILES),
        "unchanged": 0,
        "renamed": 0,
        "removed": 0,
        "skipped": len(BAD_FILES),
    }
    info = cli("info", "--collection", str(coll), "--json").json()
    reasons = {Path(s["path"]).name: s["reason"] for s in info["skipped"]}
    assert reasons == {name: reason for name, (_, reason) in BAD_FILES.items()}
    human = cli("info", "--collection", str(coll))
    assert "bomb.png: too-large" in human.out
    # a re-run does not decode bad files again, and still reports them
    r = cli("index", str(photos), "--model", "phash", "--collection", str(coll), "--json")
    assert r.json()["skipped"] == len(BAD_FILES) and r.json()["indexed"] == 0
    # a fixed file is picked up; a removed bad file leaves the skipped list
    shutil.copyfile(next((photos / "hat").glob("*.jpg")), bad_dir / "empty.jpg")
    (bad_dir / "text.png").unlink()
    r = cli("index", str(photos), "--model", "phash", "--collection", str(coll), "--json")
    assert r.json()["indexed"] == 1 and r.json()["skipped"] == len(BAD_FILES) - 2
    info = cli("info", "--collection", str(coll), "--json").json()
    assert {Path(s["path"]).name for s in info["skipped"]} == {
        "truncated.jpg",
        "random-bytes.jpg",
        "bomb.png",
    }


def test_megapixel_limit_is_configurable(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    imagegen.save(imagegen.photo_like(1, (1200, 1000)), src / "big.jpg")
    imagegen.save(imagegen.photo_like(2, (300, 200)), src / "small.jpg")
    with Collection.open(tmp_path / "c", "phash") as c:
        report = c.add(src, workers=0, limits=DecodeLimits(max_megapixels=1.0))
        assert report.indexed == 1
        assert [(Path(p).name, r) for p, r, _ in report.skipped_files] == [("big.jpg", "too-large")]


def test_min_side_and_max_aspect_filters(cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    imagegen.save(imagegen.photo_like(1, (320, 240)), src / "ok.jpg")
    (src / "banner.jpg").write_bytes(imagegen.banner((1000, 100)))
    imagegen.save(imagegen.photo_like(3, (60, 40)), src / "tiny.jpg")
    coll = tmp_path / "c"
    r = cli(
        "index",
        str(src),
        "--model",
        "phash",
        "--collection",
        str(coll),
        "--min-side",
        "64",
        "--max-aspect",
        "2.0",
        "--json",
    )
    assert r.code == 0, r.err
    assert r.json()["indexed"] == 1 and r.json()["skipped"] == 2
    reasons = {
        Path(s["path"]).name: s["reason"]
        for s in cli("info", "--collection", str(coll), "--json").json()["skipped"]
    }
    assert reasons == {"banner.jpg": "aspect", "tiny.jpg": "too-small"}


def test_csv_manifest_with_labels_and_metadata(photos: Path, tmp_path: Path) -> None:
    files = sorted(photos.rglob("*.jpg"))[:5]
    manifest = tmp_path / "list.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "path", "label", "price", "brand"])
        for i, f in enumerate(files):
            w.writerow([f"sku-{i}", str(f), f"cls{i % 2}", f"{i}.99", "acme"])
    with Collection.open(tmp_path / "c", "phash") as c:
        assert c.add(manifest, workers=0).indexed == 5
        item = c.get("sku-3")
        assert item.label == "cls1" and item.metadata == {"price": "3.99", "brand": "acme"}
        hits = c.search(str(files[3]), k=1)
        assert hits[0].id == "sku-3" and hits[0].metadata["brand"] == "acme"
        hits = c.search("id:sku-0", k=4, label="cls0")
        assert {h.id for h in hits} == {"sku-2", "sku-4"}


@pytest.fixture
def server(photos: Path):
    files = {f"{i}.jpg": p.read_bytes() for i, p in enumerate(sorted(photos.rglob("*.jpg"))[:8])}
    with LocalHTTPServer(files) as srv:
        yield srv


def test_url_manifest_amazon_format(cli, server: LocalHTTPServer, tmp_path: Path) -> None:
    lines = [
        repr(
            {
                "asin": f"B00{i}",
                "imUrl": server.url(f"{i}.jpg"),
                "title": f"thing {i}",
                "categories": [["Clothing"]],
            }
        )
        for i in range(8)
    ]
    lines.append(repr({"asin": "B00bad", "imUrl": server.url("missing.jpg")}))
    manifest = tmp_path / "meta_Clothing.json"
    manifest.write_text("\n".join(lines) + "\n")
    coll = tmp_path / "c"
    r = cli("index", str(manifest), "--model", "phash", "--collection", str(coll), "--json")
    assert r.code == 0, r.err
    assert r.json()["indexed"] == 8 and r.json()["skipped"] == 1
    cached = sorted(p.name for p in (coll / "cache" / "urls").iterdir())
    assert len(cached) == 8
    info = cli("info", "--collection", str(coll), "--json").json()
    assert (
        info["skipped"][0]["reason"] == "download-failed" and "404" in info["skipped"][0]["detail"]
    )
    r = cli("search", "id:B003", "--collection", str(coll), "-k", "3", "--json")
    assert r.code == 0
    # second run: nothing downloaded again, nothing re-embedded
    before = server.count("0.jpg")
    r = cli("index", str(manifest), "--model", "phash", "--collection", str(coll), "--json")
    assert r.json()["unchanged"] == 8 and r.json()["indexed"] == 0
    assert server.count("0.jpg") == before
    with Collection.open(coll) as c:
        item = c.get("B005")
        assert item.url == server.url("5.jpg") and item.metadata["title"] == "thing 5"


def test_url_query_with_allow_urls(
    cli, server: LocalHTTPServer, photos: Path, tmp_path: Path
) -> None:
    coll = tmp_path / "c"
    assert cli("index", str(photos), "--model", "phash", "--collection", str(coll)).code == 0
    r = cli(
        "search",
        server.url("2.jpg"),
        "--allow-urls",
        "--collection",
        str(coll),
        "-k",
        "1",
        "--json",
    )
    assert r.code == 0, r.err
    assert r.json_lines()[0]["results"][0]["score"] == 1.0
    r = cli("search", server.url("nope.jpg"), "--allow-urls", "--collection", str(coll))
    assert r.code == 2 and "404" in r.err


def test_jsonl_manifest_bad_rows_reported(photos: Path, tmp_path: Path) -> None:
    f = next(photos.rglob("*.jpg"))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"id": "a", "path": str(f)}) + "\n{not json\n" + json.dumps({"id": "b"}) + "\n"
    )
    with Collection.open(tmp_path / "c", "phash") as c:
        report = c.add(manifest, workers=0)
        assert report.indexed == 1
        assert report.skipped == 2
        assert all(r == "bad-manifest-row" for _, r, _ in report.skipped_files)
