"""Tests for lookalike.ingest.sources: folders, single files and manifests."""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from lookalike.errors import SourceError
from lookalike.ingest.sources import IMAGE_EXTENSIONS, Entry, is_manifest, iter_entries


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def collect(
    *sources: str | os.PathLike[str], exclude: Sequence[str | os.PathLike[str]] = ()
) -> tuple[list[Entry], list[tuple[str, str]]]:
    errors: list[tuple[str, str]] = []
    report = lambda where, why: errors.append((where, why))  # noqa: E731
    entries = list(iter_entries(list(sources), exclude=exclude, on_error=report))
    return entries, errors


# --------------------------------------------------------------------------- folders


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for rel in [
        "cats/b.PNG",
        "cats/a.jpg",
        "dogs/x/c.webp",
        "top.gif",
        "z.TIFF",
        ".hidden.jpg",
        ".cache/d.jpg",
        "notes.txt",
        "cats/readme",
        "collection/e.jpg",
    ]:
        touch(root / rel)
    return root


def test_folder_walk_sorted_with_labels(tree: Path) -> None:
    entries, errors = collect(tree)
    assert errors == []
    assert [e.relpath for e in entries] == [
        "cats/a.jpg",
        "cats/b.PNG",
        "collection/e.jpg",
        "dogs/x/c.webp",
        "top.gif",
        "z.TIFF",
    ]
    assert [e.label for e in entries] == ["cats", "cats", "collection", "x", "photos", "photos"]
    root = tree.resolve()
    for e in entries:
        assert e.source == str(root)
        assert e.path is not None and e.path.is_absolute()
        assert e.path == root / e.relpath
        assert e.url is None and e.id is None and e.metadata == {}


def test_folder_exclude_and_hidden(tree: Path) -> None:
    entries, _ = collect(tree, exclude=[tree / "collection"])
    rels = [e.relpath for e in entries]
    assert "collection/e.jpg" not in rels
    assert not any(part.startswith(".") for r in rels for part in r.split("/"))
    # exclude given as a string and through another spelling of the same folder
    entries2, _ = collect(tree, exclude=[str(tree / "cats" / ".." / "collection")])
    assert [e.relpath for e in entries2] == rels


def test_folder_symlink_loop_is_not_followed_forever(tree: Path) -> None:
    (tree / "dogs" / "loop").symlink_to(tree, target_is_directory=True)
    (tree / "alias").symlink_to(tree / "cats", target_is_directory=True)
    entries, _ = collect(tree)
    rels = [e.relpath for e in entries]
    assert len(rels) == len(set(rels))
    # each real folder is walked once: cats/ is reached first through alias/
    assert rels.count("dogs/x/c.webp") == 1
    assert sum(r.endswith("a.jpg") for r in rels) == 1


def test_image_extensions() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} <= IMAGE_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


# --------------------------------------------------------------------------- single files


def test_single_file_any_extension(tmp_path: Path) -> None:
    f = touch(tmp_path / "stuff" / "picture.weird", b"\x89PNG\r\n\x1a\n\x00\x00")
    entries, errors = collect(f)
    assert errors == []
    assert len(entries) == 1
    e = entries[0]
    assert e.source == str(f.resolve())
    assert e.path == f.resolve()
    assert e.relpath == "picture.weird"
    assert e.label == "stuff"


def test_missing_source_raises_at_call_time(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        iter_entries([tmp_path / "nope"])
    with pytest.raises(SourceError, match="manifest"):
        iter_entries(["https://example.com/a.jpg"])


def test_is_manifest() -> None:
    for name in [
        "m.csv",
        "M.CSV",
        "m.jsonl",
        "m.ndjson",
        "m.json",
        "m.csv.gz",
        "m.jsonl.gz",
        "meta.json.gz",
    ]:
        assert is_manifest(Path(name)), name
    for name in ["a.jpg", "a.gz", "a.txt", "csv", "a.tar.gz"]:
        assert not is_manifest(Path(name)), name


# --------------------------------------------------------------------------- manifests


def test_csv_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    touch(folder / "imgs" / "a.jpg")
    absolute = touch(tmp_path / "elsewhere" / "b.png")
    manifest = folder / "manifest.csv"
    manifest.write_text(
        "path,url,ID,label,caption,price\n"
        "imgs/a.jpg,,a1,cat,a cat,3.5\n"
        f'{absolute},,b1,dog,"a dog, sleeping",4\n'
        ",https://example.com/c.jpg?x=1,,bird,flying,\n"
        "\n",
        encoding="utf-8",
    )
    entries, errors = collect(manifest)
    assert errors == []
    assert len(entries) == 3
    a, b, c = entries
    src = str(manifest.resolve())
    assert {e.source for e in entries} == {src}
    assert a.path == (folder / "imgs" / "a.jpg").resolve()
    assert a.relpath == "imgs/a.jpg"
    assert (a.id, a.label, a.url) == ("a1", "cat", None)
    assert a.metadata == {"caption": "a cat", "price": "3.5"}
    assert b.path == absolute and b.metadata["caption"] == "a dog, sleeping"
    assert c.path is None and c.url == "https://example.com/c.jpg?x=1"
    assert c.relpath == c.url and c.id is None and c.label == "bird"


def test_csv_gz_with_bom_and_tabs(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv.gz"
    with gzip.open(manifest, "wt", encoding="utf-8") as fh:
        fh.write("\ufeffurl\tid\tnote\nhttp://h/a.jpg\t1\tfirst\n")
    entries, errors = collect(manifest)
    assert errors == []
    assert [(e.url, e.id, e.metadata) for e in entries] == [
        ("http://h/a.jpg", "1", {"note": "first"})
    ]


def test_jsonl_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "sub" / "items.jsonl"
    rows = [
        {"path": "../pics/one.jpg", "label": "x", "tags": ["a", "b"], "score": 0.5},
        {"url": "https://example.com/two.webp", "id": 7, "nested": {"k": 1}},
    ]
    touch(manifest, "\n".join(json.dumps(r) for r in rows).encode() + b"\n\n")
    entries, errors = collect(manifest)
    assert errors == []
    one, two = entries
    assert one.path == (tmp_path / "pics" / "one.jpg").resolve()
    assert one.relpath == "../pics/one.jpg"
    assert one.label == "x" and one.metadata == {"tags": ["a", "b"], "score": 0.5}
    assert two.id == "7" and two.url == "https://example.com/two.webp"
    assert two.metadata == {"nested": {"k": 1}}


def test_json_array_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "items.json"
    manifest.write_text(json.dumps([{"url": "http://h/1.jpg", "id": "1"}, 5, {"id": "2"}]))
    entries, errors = collect(manifest)
    assert [e.id for e in entries] == ["1"]
    assert len(errors) == 2


AMAZON_LINES = [
    "{'asin': '0000031852', 'imUrl': 'http://ecx.images-amazon.com/images/I/51k0qa%2BXh4L._SY300_.jpg', "
    "'title': 'Girls Ballet Tutu Zebra Hot Pink', 'categories': [['Clothing, Shoes & Jewelry', 'Girls']], "
    "'salesRank': {'Sports &amp; Outdoors': 8547}, 'price': 3.17, 'related': {'also_bought': ('B00JHONN1S',)}}",
    '{"asin": "0000032034", "imUrl": "http://ecx.images-amazon.com/images/I/21aQc%2B9OWuL._SY300_.jpg", '
    '"title": "Adult Ballet Tutu", "salesRank": {"Sports": 1}}',
    "{'asin': '0000032050', 'title': 'no image here'}",
]


@pytest.mark.parametrize("name", ["meta.json", "meta.json.gz", "meta.jsonl"])
def test_amazon_metadata_format(tmp_path: Path, name: str) -> None:
    manifest = tmp_path / name
    text = "\n".join(AMAZON_LINES) + "\n"
    if name.endswith(".gz"):
        with gzip.open(manifest, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        manifest.write_text(text, encoding="utf-8")
    entries, errors = collect(manifest)
    assert [e.id for e in entries] == ["0000031852", "0000032034"]
    first = entries[0]
    assert first.url == "http://ecx.images-amazon.com/images/I/51k0qa%2BXh4L._SY300_.jpg"
    assert first.path is None
    assert first.metadata["title"] == "Girls Ballet Tutu Zebra Hot Pink"
    assert first.metadata["categories"] == [["Clothing, Shoes & Jewelry", "Girls"]]
    assert first.metadata["salesRank"] == {"Sports &amp; Outdoors": 8547}
    assert first.metadata["related"] == {"also_bought": ["B00JHONN1S"]}  # tuple -> list
    json.dumps(first.metadata)  # JSON-friendly
    assert "asin" not in first.metadata and "imUrl" not in first.metadata
    assert entries[1].metadata == {"title": "Adult Ballet Tutu", "salesRank": {"Sports": 1}}
    assert errors == [(f"{manifest.resolve()}:3", "no path or url")]


def test_python_literal_lines_are_never_executed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"
    manifest = tmp_path / "evil.json"
    manifest.write_text(
        "{'asin': 'ok1', 'imUrl': 'http://h/1.jpg'}\n"
        "{'asin': __import__('os').system('touch PWNED')}\n"
        "{'asin': 'x', 'imUrl': open('PWNED', 'w').write('x')}\n"
        "{'asin': 'y', 'imUrl': (lambda: __import__('os').system('touch PWNED'))()}\n"
        "__import__('os').system('touch PWNED')\n",
        encoding="utf-8",
    )
    entries, errors = collect(manifest)
    assert not marker.exists()
    assert [e.id for e in entries] == ["ok1"]
    assert [where.rsplit(":", 1)[1] for where, _ in errors] == ["2", "3", "4", "5"]
    assert all("not valid JSON or a Python literal" in why for _, why in errors)


def test_malformed_rows_are_reported_not_fatal(tmp_path: Path) -> None:
    csv_manifest = tmp_path / "m.csv"
    csv_manifest.write_text(
        "path,label\na.jpg,one\nb.jpg,two,extra\n,three\nc.jpg\n",
        encoding="utf-8",
    )
    entries, errors = collect(csv_manifest)
    assert [e.relpath for e in entries] == ["a.jpg", "c.jpg"]
    assert entries[1].label is None
    where = str(csv_manifest.resolve())
    assert [loc for loc, _ in errors] == [f"{where}:3", f"{where}:4"]
    assert "3 fields" in errors[0][1] and errors[1][1] == "no path or url"

    jsonl = tmp_path / "m.jsonl"
    jsonl.write_bytes(
        b'{"url": "http://h/1.jpg", "id": "a"}\n'
        b"{not json\n"
        b"[1, 2]\n"
        b'{"url": "http://h/2.jpg", "id": "a"}\n'
        b'{"url": ["not", "a", "string"]}\n'
        b'{"url": "http://h/\xff.jpg"}\n'
        b'{"url": "http://h/3.jpg", "id": "b"}\n'
    )
    entries, errors = collect(jsonl)
    assert [e.id for e in entries] == ["a", "b"]
    where = str(jsonl.resolve())
    assert [loc for loc, _ in errors] == [f"{where}:{n}" for n in (2, 3, 4, 5, 6)]
    reasons = [why for _, why in errors]
    assert "not an object" in reasons[1]
    assert "duplicate id 'a'" in reasons[2] and f"{where}:1" in reasons[2]
    assert "must be a string" in reasons[3]
    assert "UTF-8" in reasons[4]


def test_bad_rows_are_logged_without_on_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"url": "http://h/1.jpg"}\n{"label": "x"}\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="lookalike.ingest.sources"):
        entries = list(iter_entries([manifest]))
    assert len(entries) == 1
    assert "no path or url" in caplog.text


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("junk.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("latin.csv", b"path\n" + b"\xe9t\xe9.jpg\n" * 10, "UTF-8"),
        ("nocol.csv", b"name,label\na.jpg,x\n", "no 'path' or 'url' column"),
        ("empty.csv", b"", "empty"),
        ("bad.csv.gz", b"this is not gzip", "cannot read manifest"),
        ("arr.json", b"[1, 2", "invalid JSON"),
    ],
)
def test_unreadable_manifest_raises_at_call_time(
    tmp_path: Path, name: str, content: bytes, match: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SourceError, match=match):
        iter_entries([path])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"hello world\nthis is not json\n", "expected one JSON object per line"),
        (b'{"name": "a.jpg"}\n{"name": "b.jpg"}\n', "no 'path' or 'url' field"),
    ],
)
def test_jsonl_that_is_not_a_manifest_raises(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(content)
    errors: list[tuple[str, str]] = []
    with pytest.raises(SourceError, match=match):
        list(iter_entries([path], on_error=lambda where, why: errors.append((where, why))))
    assert errors == []  # one error, not one report per line


def test_multiple_sources_in_order(tmp_path: Path, tree: Path) -> None:
    single = touch(tmp_path / "one.jpg")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"url": "http://h/1.jpg"}\n', encoding="utf-8")
    entries, _ = collect(single, manifest, tree)
    assert [e.source for e in entries[:2]] == [str(single.resolve()), str(manifest.resolve())]
    assert all(e.source == str(tree.resolve()) for e in entries[2:])


def test_jsonl_gives_up_after_many_lines_without_a_usable_row(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"name": "a.jpg"}\n' * 1500 + '{"url": "http://h/1.jpg"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match="first 1000 rows"):
        list(iter_entries([path]))
    # a few bad rows before the first good one are reported, in order, and not fatal
    path.write_text('{"name": "a.jpg"}\n' * 3 + '{"url": "http://h/1.jpg"}\n', encoding="utf-8")
    errors: list[tuple[str, str]] = []
    entries = list(iter_entries([path], on_error=lambda where, why: errors.append((where, why))))
    assert len(entries) == 1
    assert [where.rsplit(":", 1)[1] for where, _ in errors] == ["1", "2", "3"]


def test_truncated_gzip_reports_and_keeps_what_was_read(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl.gz"
    lines = "".join(f'{{"url": "http://h/{i}.jpg", "id": "{i}"}}\n' for i in range(20000))
    blob = gzip.compress(lines.encode())
    path.write_bytes(blob[: len(blob) // 2])
    errors: list[tuple[str, str]] = []
    entries = list(iter_entries([path], on_error=lambda where, why: errors.append((where, why))))
    assert 0 < len(entries) < 20000
    assert len(errors) == 1 and "rest of the file skipped" in errors[0][1]
