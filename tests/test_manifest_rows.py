"""Manifest rows: every bad row is reported with its line number, never dropped silently;
manifests are recognised by content; ids never expose server paths."""

from __future__ import annotations

import json
from pathlib import Path

import imagegen

from lookalike import Collection
from lookalike.ingest.sources import Entry, iter_entries


def collect(source: Path) -> tuple[list[Entry], list[tuple[str, str]]]:
    errors: list[tuple[str, str]] = []
    entries = list(iter_entries([source], on_error=lambda where, why: errors.append((where, why))))
    return entries, errors


def test_a_stray_quote_in_a_csv_spoils_only_its_own_line(tmp_path: Path) -> None:
    manifest = tmp_path / "rows.csv"
    manifest.write_text(
        'path,label\na.jpg,one\nb.jpg,"two\nc.jpg,three\nd.jpg,"four, quoted"\ne.jpg,five\n'
    )
    entries, errors = collect(manifest)
    assert [e.relpath for e in entries] == ["a.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert entries[2].label == "four, quoted"
    assert len(errors) == 1
    where, why = errors[0]
    assert where == f"{manifest.resolve()}:3"
    assert "quote" in why


def test_a_manifest_with_another_extension_is_recognised_by_its_content(
    cli, tmp_path: Path
) -> None:
    imagegen.save(imagegen.photo_like(1, (64, 48)), tmp_path / "a.jpg")
    imagegen.save(imagegen.photo_like(2, (64, 48)), tmp_path / "b.jpg")
    (tmp_path / "list.txt").write_text("path,label\na.jpg,x\n")
    (tmp_path / "more.txt").write_text(json.dumps({"path": "b.jpg"}) + "\n")
    r = cli("index", "list.txt", "more.txt", "--model", "phash", "--collection", "c", "--json")
    assert r.code == 0, r.err
    assert r.json()["indexed"] == 2 and r.json()["skipped"] == 0

    (tmp_path / "notes.txt").write_text("just some notes\nnothing to index here\n")
    r = cli("index", "notes.txt", "--model", "phash", "--collection", "c")
    assert r.code != 0
    assert "Traceback" not in r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "notes.txt" in lines[0] and "manifest" in lines[0]


def test_rows_without_an_id_get_an_id_relative_to_the_manifest(tmp_path: Path) -> None:
    data = tmp_path / "srv" / "data"
    imagegen.save(imagegen.photo_like(1, (64, 48)), data / "imgs" / "a.jpg")
    imagegen.save(imagegen.photo_like(2, (64, 48)), tmp_path / "elsewhere" / "b.jpg")
    manifest = data / "rows.csv"
    manifest.write_text(f"path\n{data / 'imgs' / 'a.jpg'}\n{tmp_path / 'elsewhere' / 'b.jpg'}\n")
    with Collection.open(tmp_path / "c", "phash") as coll:
        assert coll.add(manifest, workers=0).indexed == 2
        ids = sorted(item.id for item in coll.items())
    assert "imgs/a.jpg" in ids
    for item_id in ids:
        assert str(tmp_path) not in item_id and not item_id.startswith("/")
    assert any(i.endswith("b.jpg") for i in ids)


def test_metadata_with_nan_infinity_or_deep_nesting_rejects_the_row(tmp_path: Path) -> None:
    deep: object = "leaf"
    for _ in range(20):
        deep = {"d": deep}
    lines = [
        '{"path": "a.jpg", "score": 1.5}',
        '{"path": "b.jpg", "score": NaN}',
        '{"path": "c.jpg", "score": -Infinity}',
        json.dumps({"path": "d.jpg", "tree": deep}),
        "{'path': 'e.jpg', 'score': float('nan')}",
        '{"path": "f.jpg", "nested": {"x": [Infinity]}}',
        '{"path": "g.jpg"}',
    ]
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    entries, errors = collect(manifest)
    assert [e.relpath for e in entries] == ["a.jpg", "g.jpg"]
    assert entries[0].metadata == {"score": 1.5}
    name = str(manifest.resolve())
    assert [where for where, _ in errors] == [f"{name}:{n}" for n in (2, 3, 4, 5, 6)]
    assert all("\n" not in why for _, why in errors)
    assert "NaN" in errors[0][1] or "nan" in errors[0][1]
    assert "deeper" in errors[2][1]

    array = tmp_path / "rows.json"
    array.write_text('[{"path": "a.jpg"}, {"path": "b.jpg", "x": NaN}]')
    entries, errors = collect(array)
    assert [e.relpath for e in entries] == ["a.jpg"]
    assert [where for where, _ in errors] == [f"{array.resolve()}:item 2"]
