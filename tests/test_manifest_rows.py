"""Manifest rows: every bad row is reported with its line number, never dropped silently;
manifests are recognised by content; ids never expose server paths."""

from __future__ import annotations

from pathlib import Path

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
