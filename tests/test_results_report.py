"""Search results you can look at: ``search --plot`` (PNG grid), ``--html`` (one
self-contained page) and ``--out`` (CSV / JSON Lines), and ``report.plot_hits``."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import pytest
from PIL import Image
from server_util import GALLERY, make_gallery

from lookalike import Collection
from lookalike.cli.entry import main
from lookalike.errors import MissingDependency
from lookalike.report import plot_hits


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("results")
    images = make_gallery(tmp / "gallery")
    with Collection.open(tmp / "coll", "phash") as coll:
        coll.add([str(images)], workers=0)
    return images, tmp / "coll"


def test_plot_png_is_a_grid_of_plausible_size(
    gallery: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    images, coll = gallery
    png = tmp_path / "results.png"
    query = str(images / "red" / "1.jpg")
    rc = main(["search", query, "-k", "4", "--plot", str(png), "--collection", str(coll)])
    assert rc == 0 and f"wrote {png}" in capsys.readouterr().out
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        w, h = im.size
    # one row of 1 query + 4 hits, each cell ~2.4 in at 80 dpi
    assert 5 * 150 <= w <= 5 * 250 and 150 <= h <= 300

    two = tmp_path / "two.png"
    rc = main(
        ["search", query, "id:blue/11.jpg", "-k", "3", "--plot", str(two)]
        + ["--collection", str(coll)]
    )
    assert rc == 0
    with Image.open(two) as im:
        assert im.size[1] > 1.6 * h  # one row per query


def test_plot_hits_from_python(gallery: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    images, coll_dir = gallery
    with Collection.open(coll_dir, create=False) as coll:
        hits = coll.search(images / "blue" / "12.jpg", k=3)
    fig = plot_hits(images / "blue" / "12.jpg", hits, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("query")
    assert titles[1].startswith("#1  1.000\nblue")  # rank, score, label


def test_missing_matplotlib_is_one_line_naming_the_extra(
    gallery: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images, coll = gallery
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependency, match=r"lookalike\[plot\]"):
        plot_hits(None, [], tmp_path / "x.png")
    rc = main(
        ["search", str(images / "red" / "1.jpg"), "--plot", str(tmp_path / "x.png")]
        + ["--collection", str(coll)]
    )
    err = capsys.readouterr().err
    assert rc == 3 and "pip install 'lookalike[plot]'" in err and err.count("\n") == 1


def test_html_has_one_row_per_query_and_only_embedded_images(
    gallery: tuple[Path, Path], tmp_path: Path
) -> None:
    images, coll = gallery
    page = tmp_path / "results.html"
    queries = [str(images / "red" / "2.jpg"), "id:blue/13.jpg", str(images / "blue" / "14.jpg")]
    rc = main(["search", *queries, "-k", "3", "--html", str(page), "--collection", str(coll)])
    assert rc == 0
    text = page.read_text(encoding="utf-8")
    assert text.count('<tr class="query-row">') == 3
    assert text.count('src="data:image/jpeg;base64,') == 3 * (1 + 3)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "<link" not in text and "<script" not in text and "@import" not in text
    assert "id:blue/13.jpg" in text


def test_out_csv_and_jsonl_have_the_one_shape(gallery: tuple[Path, Path], tmp_path: Path) -> None:
    images, coll = gallery
    query = str(images / "red" / "3.jpg")
    n_items = sum(len(s) for s in GALLERY.values())
    for ext in ("csv", "jsonl"):
        out = tmp_path / f"r.{ext}"
        assert main(["search", query, "-k", "5", "--out", str(out), "--collection", str(coll)]) == 0
        if ext == "csv":
            with open(out, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        else:
            rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == min(5, n_items)
        assert list(rows[0]) == ["query", "rank", "id", "score", "label", "metadata", "url", "path"]
        assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
        assert rows[0]["id"] == "red/3.jpg" and float(rows[0]["score"]) == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "r.txt"], "unknown extension '.txt'; use .csv or .jsonl"),
        (["--out", "r.parquet"], "unknown extension '.parquet'"),
        (["--html", "/no/such/dir/r.html"], "does not exist"),
    ],
)
def test_bad_output_names_are_one_line_errors(
    gallery: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    images, coll = gallery
    args = [str(tmp_path / a) if a.startswith("r.") else a for a in args]
    rc = main(["search", str(images / "red" / "1.jpg"), *args, "--collection", str(coll)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
