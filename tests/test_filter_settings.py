"""--min-side and --max-aspect are settings of the collection: remembered, and re-applied
to every item and every filtered file when they change."""

from __future__ import annotations

from pathlib import Path

import imagegen


def test_changing_the_filters_reapplies_them_to_items_and_skips(cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    imagegen.save(imagegen.photo_like(1, (64, 48)), src / "normal.jpg")
    imagegen.save(imagegen.photo_like(2, (400, 40)), src / "banner.jpg")
    imagegen.save(imagegen.photo_like(3, (20, 20)), src / "small.jpg")

    def index(*flags: str):  # type: ignore[no-untyped-def]
        r = cli("index", str(src), "--model", "phash", "--collection", "c", *flags)
        assert r.code == 0, r.err
        return r

    def skipped() -> dict[str, str]:
        info = cli("info", "--collection", "c", "--json").json()
        return {Path(s["path"]).name: s["reason"] for s in info["skipped"]}

    def items() -> int:
        return int(cli("info", "--collection", "c", "--json").json()["items"])

    assert "indexed 3" in index().out
    # stricter filters remove the items that now break them
    r = index("--max-aspect", "3", "--min-side", "30")
    assert "filters changed" in r.out and "removed 2" in r.out
    assert items() == 1
    assert skipped() == {"banner.jpg": "aspect", "small.jpg": "too-small"}
    # remembered: a plain re-run keeps them and changes nothing
    r = index()
    assert "filters changed" not in r.out and "indexed 0" in r.out
    assert items() == 1
    # looser: the skips that now pass are tried again; --min-side stays at 30
    r = index("--max-aspect", "20")
    assert "filters changed" in r.out and "indexed 1" in r.out
    assert skipped() == {"small.jpg": "too-small"}
    # 0 turns a filter off
    r = index("--min-side", "0")
    assert "indexed 1" in r.out
    assert skipped() == {} and items() == 3
    # through the library, too: the setting is read back
    from lookalike import Collection

    with Collection.open(tmp_path / "c") as coll:
        assert coll.filters() == {"min_side": None, "max_aspect": 20.0}
