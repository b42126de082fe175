"""``lookalike evaluate retrieval``: the metrics against a plain reference implementation on
hand-built rankings, the bootstrap, ground-truth files, and the command end to end."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from imagegen import save
from PIL import Image
from server_util import make_gallery

from lookalike import Collection
from lookalike.cli.entry import main
from lookalike.errors import InvalidInput
from lookalike.evaluation.metrics import (
    average_precision_at_k,
    bootstrap_ci,
    ndcg_at_k,
    parse_ks,
    per_query_metrics,
    precision_at_k,
    recall_at_k,
)
from lookalike.evaluation.queries import read_truth

# -- reference implementation: one query at a time, straight from the definitions ------------


def ref_precision(rel: list[int], k: int) -> float:
    return sum(rel[:k]) / k


def ref_recall(rel: list[int], n_rel: int, k: int) -> float:
    return sum(rel[:k]) / n_rel


def ref_ap(rel: list[int], n_rel: int, k: int) -> float:
    total, found = 0.0, 0
    for i, r in enumerate(rel[:k], 1):
        if r:
            found += 1
            total += found / i
    return total / min(n_rel, k)


def ref_ndcg(rel: list[int], n_rel: int, k: int) -> float:
    dcg = sum(r / math.log2(i + 1) for i, r in enumerate(rel[:k], 1))
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(n_rel, k) + 1))
    return dcg / ideal


def test_hand_computed_values() -> None:
    hits = np.array([[1, 0, 1, 0, 0]], dtype=bool)
    n = np.array([3])
    assert precision_at_k(hits, n, 1)[0] == 1.0
    assert precision_at_k(hits, n, 5)[0] == pytest.approx(0.4)
    assert recall_at_k(hits, n, 5)[0] == pytest.approx(2 / 3)
    assert average_precision_at_k(hits, n, 5)[0] == pytest.approx((1 + 2 / 3) / 3)
    assert ndcg_at_k(hits, n, 5)[0] == pytest.approx(
        (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    )
    # all relevant items first: AP and nDCG are 1 even when there are fewer than k of them
    perfect = np.array([[1, 1, 0, 0]], dtype=bool)
    assert average_precision_at_k(perfect, np.array([2]), 4)[0] == 1.0
    assert ndcg_at_k(perfect, np.array([2]), 4)[0] == pytest.approx(1.0)
    # nothing relevant found
    assert average_precision_at_k(~perfect & False, np.array([2]), 4)[0] == 0.0


def test_metrics_match_the_reference_on_random_rankings() -> None:
    rng = np.random.default_rng(7)
    hits = rng.random((200, 10)) < 0.3
    n_rel = np.maximum(hits.sum(axis=1), 1) + rng.integers(0, 20, 200)
    got = per_query_metrics(hits, n_rel, [1, 3, 10])
    assert list(got) == [
        "precision@1",
        "precision@3",
        "precision@10",
        "recall@1",
        "recall@3",
        "recall@10",
        "mAP@10",
        "nDCG@1",
        "nDCG@3",
        "nDCG@10",
    ]
    for q in range(len(hits)):
        rel = [int(x) for x in hits[q]]
        n = int(n_rel[q])
        for k in (1, 3, 10):
            assert got[f"precision@{k}"][q] == pytest.approx(ref_precision(rel, k))
            assert got[f"recall@{k}"][q] == pytest.approx(ref_recall(rel, n, k))
            assert got[f"nDCG@{k}"][q] == pytest.approx(ref_ndcg(rel, n, k))
        assert got["mAP@10"][q] == pytest.approx(ref_ap(rel, n, 10))


def test_ndcg_agrees_with_sklearn_when_installed() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(20):
        relevance = (rng.random(30) < 0.3).astype(float)
        scores = rng.random(30)
        order = np.argsort(-scores)
        hits = relevance[order][None, :10].astype(bool)
        n_rel = np.array([max(int(relevance.sum()), 1)])
        if relevance.sum() == 0:
            continue
        expect = sklearn_metrics.ndcg_score(relevance[None], scores[None], k=10)
        assert ndcg_at_k(hits, n_rel, 10)[0] == pytest.approx(expect)


def test_bootstrap_interval() -> None:
    values = np.random.default_rng(1).random(300)
    low, high = bootstrap_ci(values, resamples=500, seed=0)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / math.sqrt(300), rel=0.2)
    assert bootstrap_ci(values, resamples=500, seed=0) == (low, high)  # seeded
    assert bootstrap_ci(np.full(50, 0.5)) == (0.5, 0.5)


@pytest.mark.parametrize("text", ["", "1,x", "0", "-1", "1.5"])
def test_bad_k(text: str) -> None:
    with pytest.raises(InvalidInput, match="positive whole number"):
        parse_ks(text)
    assert parse_ks(" 10,1,5,1") == [1, 5, 10]


def test_truth_files(tmp_path: Path) -> None:
    j = tmp_path / "t.json"
    j.write_text(json.dumps({"a.jpg": ["x", "y"], "b.jpg": []}))
    assert read_truth(j) == {"a.jpg": {"x", "y"}, "b.jpg": set()}
    c = tmp_path / "t.csv"
    c.write_text("query,relevant_id\na.jpg,x\na.jpg,y\nb.jpg,z\n")
    assert read_truth(c) == {"a.jpg": {"x", "y"}, "b.jpg": {"z"}}
    for bad, message in (
        ('["a"]', "expected a JSON object"),
        ('{"a": "x"}', "expected a JSON object"),
        ("query,id\na,b\n", "query,relevant_id"),
    ):
        (tmp_path / "bad").write_text(bad)
        with pytest.raises(InvalidInput, match=message):
            read_truth(tmp_path / "bad")


# -- end to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two phash collections of a red/blue gallery, and held-out queries: shrunk copies of
    gallery images in their label's folder, one of them filed under the wrong label."""
    tmp = tmp_path_factory.mktemp("retrieval")
    gallery = make_gallery(tmp / "gallery")
    paths = {}
    for name in ("a", "b"):
        with Collection.open(tmp / name, "phash") as coll:
            coll.add([str(gallery)], workers=0)
        paths[name] = tmp / name
    queries = tmp / "queries"
    for src, dest in (
        ("red/1.jpg", "red/q1.jpg"),
        ("red/2.jpg", "red/q2.jpg"),
        ("blue/11.jpg", "blue/q11.jpg"),
        ("red/3.jpg", "blue/wrong.jpg"),  # a red image filed as blue
    ):
        with Image.open(gallery / src) as im:
            save(im.resize((140, 105)), queries / dest, quality=92)
    paths["queries"] = queries
    (tmp / "empty").mkdir()
    paths["empty"] = tmp / "empty"
    return paths


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["evaluate", "retrieval", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_queries_folder_against_and_exact(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    c = ["--collection", str(setup["a"]), "--queries", str(setup["queries"])]
    report = run_json(capsys, *c, "-k", "1,4", "--against", str(setup["b"]), "--exact")
    assert report["queries"] == 4 and report["left_out"] == 0 and report["k"] == [1, 4]
    assert report["labels"] == {"blue": 2, "red": 2}
    assert report["confidence_interval"]["method"] == "percentile bootstrap over queries"
    names = [(r["name"], r["search"]) for r in report["results"]]
    assert names == [("a", "index"), ("a exact", "exact"), ("b", "index"), ("b exact", "exact")]
    first = report["results"][0]
    # three copies find their original first; the mislabelled one finds a red image
    assert first["metrics"]["precision@1"]["value"] == pytest.approx(0.75)
    assert first["per_label"]["red"]["precision@1"] == 1.0
    assert first["per_label"]["blue"]["precision@1"] == 0.5
    m = first["metrics"]["precision@1"]
    assert m["ci_low"] <= m["value"] <= m["ci_high"]
    # the same queries, the same resamples: identical collections give identical columns
    assert [r["metrics"] for r in report["results"]] == [first["metrics"]] * 4
    assert report["results"][1]["index_agreement"] == 1.0

    assert main(["evaluate", "retrieval", *c, "-k", "1,4", "--against", str(setup["b"])]) == 0
    text = capsys.readouterr().out
    assert re.search(r"precision@1 +0\.750 \[0\.\d{3}, 1\.000\] +0\.750", text)
    assert "mAP@4" in text
    assert "label" in text and "blue" in text and "red" in text


def test_sample_leaves_each_item_out(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    c = ["--collection", str(setup["a"]), "--sample", "5", "--seed", "3"]
    report = run_json(capsys, *c, "-k", "7")
    assert report["queries"] == 5
    # 4 items per label: 3 relevant ones once the query itself is left out; at depth 7
    # (all other items) every one of them is found
    assert report["results"][0]["metrics"]["recall@7"]["value"] == 1.0
    assert run_json(capsys, *c, "-k", "7") == report  # seeded
    big = run_json(capsys, "--collection", str(setup["a"]), "--sample", "100")
    assert big["queries"] == 8


def test_truth_file(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"red/q1.jpg": ["red/1.jpg"], "blue/wrong.jpg": ["red/3.jpg"]}))
    c = ["--collection", str(setup["a"]), "--truth", str(truth), "-k", "1"]
    report = run_json(capsys, *c, "--queries", str(setup["queries"]))
    assert report["relevance"] == "truth" and report["queries"] == 2
    assert report["results"][0]["metrics"]["precision@1"]["value"] == 1.0
    csv_truth = tmp_path / "truth.csv"
    csv_truth.write_text("query,relevant_id\nred/1.jpg,red/2.jpg\nred/1.jpg,red/3.jpg\n")
    report = run_json(capsys, "--collection", str(setup["a"]), "--truth", str(csv_truth), "-k", "2")
    assert report["queries"] == 1  # the item ids of the file, left out one at a time
    assert report["results"][0]["metrics"]["recall@2"]["value"] <= 1.0


def test_exact_search_matches_brute_force_on_float_vectors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((60, 8)).astype(np.float32)
    with Collection.open_vectors(tmp_path / "v", 8) as coll:
        coll.add_vectors([f"p{i}" for i in range(60)], vecs, labels=[str(i % 3) for i in range(60)])
    report = run_json(capsys, "--collection", str(tmp_path / "v"), "--sample", "20", "--exact")
    index, exact = report["results"]
    assert exact["index_agreement"] == 1.0 and index["metrics"] == exact["metrics"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--queries", "{queries}", "-k", "1,x"], "'x' is not a positive whole number"),
        (["--queries", "{empty}"], "no images in this folder"),
        (["--queries", "{queries}", "--sample", "3"], "not both"),
        ([], "give --queries DIR, --sample N or --truth FILE"),
        (["--queries", "{queries}", "--truth", "{unknown_id}"], "names item 'nope'"),
        (["--queries", "{queries}", "--truth", "{unknown_query}"], "names query 'zzz.jpg'"),
    ],
)
def test_bad_input_is_one_line(
    setup: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    (tmp_path / "u.json").write_text(json.dumps({"red/q1.jpg": ["nope"]}))
    (tmp_path / "q.json").write_text(json.dumps({"zzz.jpg": ["red/1.jpg"]}))
    fill = {**{k: str(v) for k, v in setup.items()}, "unknown_id": str(tmp_path / "u.json")}
    fill["unknown_query"] = str(tmp_path / "q.json")
    args = [a.format(**fill) for a in extra]
    rc = main(["evaluate", "retrieval", "--collection", str(setup["a"]), *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
