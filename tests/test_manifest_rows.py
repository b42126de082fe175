"""Manifest rows: every bad row is reported with its line number, never dropped silently;
manifests are recognised by content; ids never expose server paths."""

from __future__ import annotations

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
