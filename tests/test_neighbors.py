"""The similar-items table (`neighbors --all`) and single-item `neighbors`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lookalike import Collection
from lookalike.cli.entry import main
from lookalike.neighbors import write_neighbors_table
from lookalike.search.hits import HIT_KEYS

pq = pytest.importorskip("pyarrow.parquet")


def small_collection(tmp_path: Path, n: int = 300, dim: int = 16) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    root = tmp_path / "c"
    coll = Collection.open_vectors(root, dim)
    coll.add_vectors([f"p{i}" for i in range(n)], vecs)
    coll.remove(["p3", "p10"])  # holes in the slots
    coll.close()
    return root, vecs


def test_table_matches_exact_search(tmp_path: Path) -> None:
    root, vecs = small_collection(tmp_path)
    out = tmp_path / "similar.parquet"
    coll = Collection.open(root)
    rows = write_neighbors_table(coll, 5, out, batch_size=64)  # several batches
    live = [i for i in range(len(vecs)) if i not in (3, 10)]
    assert rows == len(live) * 5
    table = pq.read_table(out).to_pydict()
    assert list(table) == ["query", *HIT_KEYS]
    got: dict[str, list[tuple[int, str, float]]] = {}
    for item, rank, nb, score in zip(
        table["query"], table["rank"], table["id"], table["score"], strict=True
    ):
        got.setdefault(item, []).append((rank, nb, score))
    assert len(got) == len(live)
    sims = vecs[live] @ vecs[live].T
    np.fill_diagonal(sims, -np.inf)
    for row, i in enumerate(live):
        order = np.argsort(-sims[row], kind="stable")[:5]
        expect = [f"p{live[j]}" for j in order]
        ranks, ids, scores = zip(*sorted(got[f"p{i}"]), strict=True)
        assert ranks == (1, 2, 3, 4, 5)
        assert list(ids) == expect
        assert np.allclose(scores, sims[row, order], atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_all_and_single_item(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, vecs = small_collection(tmp_path, n=50)
    out = tmp_path / "nb.parquet"
    assert (
        main(["neighbors", "--all", "-k", "3", "--out", str(out), "--collection", str(root)]) == 0
    )
    assert "wrote 144 rows" in capsys.readouterr().out
    assert pq.read_table(out).num_rows == 144
    assert main(["neighbors", "p0", "-k", "2", "--json", "--collection", str(root)]) == 0
    result = json.loads(capsys.readouterr().out)
    sims = vecs @ vecs[0]
    sims[[0, 3, 10]] = -np.inf
    assert [h["id"] for h in result["neighbors"]] == [f"p{j}" for j in np.argsort(-sims)[:2]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all"], "--all needs --out"),
        ([], "give one item ID"),
        (["p0", "--all", "--out", "x.parquet"], "give one item ID"),
        (["nope"], "no item with id 'nope'"),
        (["--all", "--out", "/no/such/dir/x.parquet"], "does not exist"),
    ],
)
def test_cli_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    root, _ = small_collection(tmp_path, n=20)
    assert main(["neighbors", *args, "--collection", str(root)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def _read_table(path: Path) -> list[tuple[str, int, str, float]]:
    """(query, rank, neighbour id, score) rows of a neighbours table in any supported format,
    parsed by format-specific readers; every format has the hit table's columns."""
    import csv

    from lookalike.search.table import TABLE_COLUMNS

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        t = pq.read_table(path).to_pydict()
        assert list(t) == list(TABLE_COLUMNS)
        cols = (t["query"], t["rank"], t["id"], t["score"])
        return [(a, int(b), c, float(d)) for a, b, c, d in zip(*cols, strict=True)]
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            assert reader.fieldnames == list(TABLE_COLUMNS)
            return [(r["query"], int(r["rank"]), r["id"], float(r["score"])) for r in reader]
    assert suffix == ".jsonl"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(list(d) == list(TABLE_COLUMNS) for d in lines)
    return [(d["query"], d["rank"], d["id"], d["score"]) for d in lines]


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl", ".CSV"])
def test_all_writes_the_format_its_extension_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    root, _ = small_collection(tmp_path, n=40)
    out = tmp_path / f"table{suffix}"
    argv = ["neighbors", "--all", "-k", "3", "--out", str(out), "--collection", str(root)]
    assert main(argv) == 0
    assert "wrote 114 rows" in capsys.readouterr().out
    head = out.read_bytes()[:4]
    assert (head == b"PAR1") == (suffix == ".parquet")  # no Parquet under another name
    reference = tmp_path / "ref.parquet"
    with Collection.open(root) as coll:
        write_neighbors_table(coll, 3, reference)
    got = _read_table(out)
    want = _read_table(reference)
    assert [r[:3] for r in got] == [r[:3] for r in want]
    assert np.allclose([r[3] for r in got], [r[3] for r in want], atol=1e-6)


@pytest.mark.parametrize("name", ["x.txt", "x.json", "x", "x.parquet.gz"])
def test_all_refuses_an_unknown_extension(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    root, _ = small_collection(tmp_path, n=20)
    out = tmp_path / name
    assert main(["neighbors", "--all", "--out", str(out), "--collection", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".parquet, .csv or .jsonl" in err
    assert not out.exists()
