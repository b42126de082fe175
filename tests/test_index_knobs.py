"""Index knobs a user can reproduce (hnswlib M / ef_construction / ef, Milvus nlist / nprobe)
and the recall target: they reach FAISS, are remembered, rebuild when changed, and bad
values are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faiss
import pytest
from test_ann import DIM, api_recall, make

import lookalike.store.planning as planning
from lookalike import Collection
from lookalike.cli.entry import main


@pytest.fixture(autouse=True)
def small_minimums(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(planning.MIN_ITEMS, "ivf-sq8", 1_000)
    monkeypatch.setitem(planning.MIN_ITEMS, "ivf-pq", 1_000)


def index(root: Path, *args: str) -> int:
    return main(["index", *args, "--collection", str(root)])


def info_json(root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["info", "--json", "--collection", str(root)]) == 0
    return dict(json.loads(capsys.readouterr().out)["index"])


def faiss_of(root: Path) -> tuple[Any, Any]:
    """The store a new process would load, and its FAISS index without the id map."""
    with Collection.open(root) as coll:
        store = coll.index.store()
        inner = store.index.index if isinstance(store.index, faiss.IndexIDMap) else store.index
        return store, faiss.downcast_index(inner)


def test_hnsw_knobs_reach_faiss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make(tmp_path, 1_500).close()
    root = tmp_path / "c"
    args = ["--index", "hnsw", "--hnsw-m", "24", "--ef-construction", "100"]
    assert index(root, *args, "--ef-search", "100") == 0
    out = capsys.readouterr().out
    assert "hnsw, 1500 vectors" in out and "given: M, ef, ef_construction" in out
    assert "recall@10 " in out
    idx = info_json(root, capsys)
    assert idx["type"] == "hnsw"
    assert idx["params"]["M"] == 24 and idx["params"]["ef_construction"] == 100
    assert idx["params"]["ef"] == 100 and idx["recall_at_10"] > 0.9
    assert idx["knobs"] == {"hnsw_m": 24, "ef_construction": 100, "ef_search": 100}
    store, hnsw = faiss_of(root)
    assert hnsw.hnsw.efConstruction == 100
    assert hnsw.hnsw.nb_neighbors(1) == 24  # upper levels hold M links, level 0 holds 2M
    assert store._search_params(10).efSearch == 100  # used as given, not tuned
    assert main(["info", "--collection", str(root)]) == 0
    assert "ef=100" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["ivf-sq8", "ivf-pq"])
def test_ivf_knobs_reach_faiss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    make(tmp_path, 1_500).close()
    root = tmp_path / "c"
    extra = ["--pq-m", "8"] if kind == "ivf-pq" else []
    assert index(root, "--index", kind, "--nlist", "32", "--nprobe", "16", *extra) == 0
    idx = info_json(root, capsys)
    assert idx["type"] == kind and idx["params"]["nlist"] == 32 and idx["params"]["nprobe"] == 16
    assert idx["recall_at_10"] is not None
    store, ivf = faiss_of(root)
    assert ivf.nlist == 32 and store._search_params(10).nprobe == 16
    if kind == "ivf-pq":
        assert ivf.pq.M == 8 and idx["params"]["pq_m"] == 8


def test_recall_target_is_met_and_remembered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make(tmp_path, 2_000).close()
    root = tmp_path / "c"
    assert index(root, "--index", "ivf-sq8", "--recall-target", "0.99") == 0
    idx = info_json(root, capsys)
    assert idx["recall_target"] == 0.99 and idx["recall_at_10"] >= 0.99
    with Collection.open(root) as coll:
        assert api_recall(coll) >= 0.98  # independent queries, through the API
        # remembered: growing the collection keeps the target
        from test_ann import mixture

        coll.add_vectors([f"n{i}" for i in range(2_000)], mixture(2_000, seed=9))
        assert coll.index.info()["recall_target"] == 0.99
        assert coll.index.info()["recall_at_10"] >= 0.99


def test_knobs_are_remembered_and_changes_rebuild_and_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make(tmp_path, 1_500).close()
    root = tmp_path / "c"
    assert index(root, "--index", "ivf-sq8", "--nlist", "32") == 0
    built = info_json(root, capsys)
    assert index(root, "--nprobe", "6") == 0
    err = capsys.readouterr().err
    assert "index settings changed (nprobe auto -> 6): the index is rebuilt" in err
    idx = info_json(root, capsys)
    assert idx["params"]["nlist"] == 32 and idx["params"]["nprobe"] == 6  # nlist remembered
    assert idx["params"] != built["params"]
    settings = json.loads((root / "index" / "settings.json").read_text())
    assert settings["knobs"] == {"nlist": 32, "nprobe": 6}
    # same settings again: nothing to rebuild, nothing said
    assert index(root, "--nprobe", "6") == 0
    assert "rebuilt" not in capsys.readouterr().err
    # auto forgets a knob: nprobe is tuned again
    assert index(root, "--nprobe", "auto") == 0
    assert info_json(root, capsys)["knobs"] == {"nlist": 32}
    # another type drops the knobs that do not apply to it, and says so
    assert index(root, "--index", "hnsw") == 0
    assert (
        "--nlist no longer set: it applies to ivf-sq8/ivf-pq, not hnsw" in capsys.readouterr().err
    )
    assert info_json(root, capsys)["knobs"] == {}


def test_nlist_larger_than_the_collection_is_clamped_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make(tmp_path, 1_200).close()
    root = tmp_path / "c"
    assert index(root, "--index", "ivf-sq8", "--nlist", "5000", "--nprobe", "1") == 0
    err = capsys.readouterr().err
    assert "--nlist 5000 is more than the 1200 items: using nlist 1200" in err
    idx = info_json(root, capsys)
    assert idx["params"]["nlist"] == 1200 and idx["params"]["nprobe"] == 1
    # a given knob that misses the target: said, with the measured recall
    assert "with the given nprobe=1, below the 0.95 target" in (idx["warning"] or "")


def test_bad_knobs_are_one_line_errors_through_the_real_cli(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Collection.open_vectors(tmp_path / "c", DIM) as coll:
        coll.index.configure("ivf-sq8")
    root = str(tmp_path / "c")
    settings = (tmp_path / "c" / "index" / "settings.json").read_text()
    cases = [
        (["--index", "hnsw", "--nlist", "64"], "--nlist applies to ivf-sq8/ivf-pq, not hnsw"),
        (["--nprobe", "4", "--index", "auto"], "--nprobe applies to ivf-sq8/ivf-pq, not auto"),
        (["--ef-search", "64"], "--ef-search applies to hnsw, not ivf-sq8"),
        (["--pq-m", "8"], "--pq-m applies to ivf-pq, not ivf-sq8"),
        (["--index", "hnsw", "--hnsw-m", "1"], "--hnsw-m must be 2..256, got 1"),
        (["--index", "hnsw", "--hnsw-m", "257"], "--hnsw-m must be 2..256, got 257"),
        (["--index", "hnsw", "--ef-construction", "0"], "--ef-construction must be 1..32768"),
        (["--index", "hnsw", "--ef-search", "40000"], "--ef-search must be 1..32768"),
        (["--nlist", "0"], "--nlist must be 1..65536, got 0"),
        (["--nlist", "32", "--nprobe", "64"], "--nprobe must be 1..nlist (32), got 64"),
        (["--index", "ivf-pq", "--pq-m", "7"], "--pq-m must divide the vector dimension 32"),
        (["--recall-target", "0"], "--recall-target must be above 0 and at most 1, got 0"),
        (["--recall-target", "1.5"], "--recall-target must be above 0 and at most 1"),
    ]
    for args, message in cases:
        r = cli("index", *args, "--collection", root)
        assert r.code == 2, (args, r.err)
        assert r.err.count("\n") == 1 and message in r.err, (args, r.err)
    # wrong types are refused by the parser, on its one error line (plus the --help hint)
    for args, message in [
        (["--nlist", "abc"], "argument --nlist: 'abc' is not a whole number (or auto)"),
        (["--hnsw-m", "1.5"], "argument --hnsw-m: '1.5' is not a whole number (or auto)"),
        (["--recall-target", "high"], "argument --recall-target: 'high' is not a number"),
    ]:
        r = cli("index", *args, "--collection", root)
        assert r.code == 2 and r.err.splitlines()[0].endswith(message), (args, r.err)
    assert (tmp_path / "c" / "index" / "settings.json").read_text() == settings


def test_python_api_configure(tmp_path: Path) -> None:
    from lookalike.errors import InvalidInput

    coll = make(tmp_path, 1_500)
    notes = coll.index.configure("hnsw", hnsw_m=16, ef_construction=100, ef_search=100)
    assert notes and "rebuilt" in notes[0]
    info = coll.index.ensure()
    assert info["params"]["M"] == 16 and info["params"]["ef"] == 100
    with pytest.raises(InvalidInput, match="--nlist applies to ivf-sq8/ivf-pq, not hnsw"):
        coll.index.configure(nlist=512)
    coll.index.configure("ivf-sq8", nlist=32, nprobe=16, recall_target=0.9)
    info = coll.index.ensure()
    assert (info["params"]["nlist"], info["params"]["nprobe"]) == (32, 16)
    assert info["recall_target"] == 0.9
    coll.close()


def test_unreachable_target_says_so_with_the_best_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lookalike.store.ann import HnswStore

    monkeypatch.setattr(HnswStore, "ladder", (8, 16))  # a short ladder: the top is weak
    make(tmp_path, 1_500).close()
    root = tmp_path / "c"
    args = ["--index", "hnsw", "--hnsw-m", "2", "--ef-construction", "8"]
    assert index(root, *args, "--recall-target", "1") == 0
    err = capsys.readouterr().err
    idx = info_json(root, capsys)
    assert idx["recall_at_10"] < 1.0 and idx["params"]["ef"] in (8, 16)
    best = f"hnsw reaches recall@10 {idx['recall_at_10']:.3f} at best (ef={idx['params']['ef']})"
    assert best in err and "below the 1 target" in err
    assert best in idx["warning"]
