"""``lookalike spark-index`` and ``lookalike import``.

The Spark tests share one ``local[2]`` SparkSession and one job output per module (Spark
starts slowly); they skip when pyspark (``pip install 'lookalike[spark]'``) or Java is
missing. The checks that need no JVM (missing extra, missing model, model mismatch) always run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagegen
import numpy as np
import pytest
import tiny_models

from lookalike import Collection
from lookalike.errors import InvalidInput, MissingDependency, ModelMismatch, ModelUnavailable
from lookalike.ingest import shards
from lookalike.ingest.parquet_import import import_parquet

# corrupt, truncated, empty, huge (bomb) and non-image files, and a banner (--max-aspect 3)
BAD_FILES = {f"bad/{name}": v for name, v in imagegen.BAD_FILES.items()}
BAD_FILES["bad/banner.png"] = (imagegen.banner, "aspect")


def _spark_missing() -> str | None:
    try:
        import pandas  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark/pandas not installed: pip install 'lookalike[spark]'"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "no Java (Spark 4 needs Java 17+ on PATH or JAVA_HOME)"
    return None


needs_spark = pytest.mark.skipif(_spark_missing() is not None, reason=str(_spark_missing()))


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from lookalike.ingest.spark import session

    os.environ["PYSPARK_PYTHON"] = sys.executable
    sess = session("local[2]", "lookalike tests")
    sess.sparkContext.setLogLevel("ERROR")
    yield sess
    sess.stop()


def _images(root: Path, n: int = 8) -> Path:
    for i in range(n):
        label = "tops" if i % 2 else "shoes"
        imagegen.save(imagegen.photo_like(500 + i, (240, 320)), root / label / f"p{i}.jpg")
    imagegen.save(imagegen.photo_like(600, (200, 150)), root / "tops" / "p.png")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "tiny"
    return tiny_models.write_local_model(folder, tiny_models.make_pooling_model(16))


@pytest.fixture(scope="module")
def job(spark: Any, model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One job over good and bad files; read only."""
    from lookalike.ingest.decode import DecodeLimits
    from lookalike.ingest.spark import run

    root = _images(tmp_path_factory.mktemp("job") / "images")
    for name, (make, _) in BAD_FILES.items():
        imagegen.write_bytes(root / name, make())
    out = root.parent / "out"
    limits = DecodeLimits(max_aspect=3.0)
    report = run(spark, [str(root)], str(out), model_path=str(model), limits=limits, partitions=3)
    return {"root": root, "out": out, "report": report, "limits": limits}


def _vector(coll: Collection, slot: int) -> np.ndarray:
    return np.asarray(coll.vectors.read([slot], coll.catalog.next_slot)[0])


def _rows(out: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    job = shards.read_job(str(out))
    return [r for name in job["shards"] for r in pq.read_table(out / name).to_pylist()]


@needs_spark
def test_vectors_and_hashes_equal_local_index(job: dict[str, Any], model: Path, tmp_path: Path):
    with Collection.open(tmp_path / "local", model_path=model) as local:
        local.add(job["root"], limits=job["limits"], workers=0)
        expected = {i.id: i for i in local.items()}
        vectors = {i.id: _vector(local, i.slot) for i in expected.values()}
    rows = {r["id"]: r for r in _rows(job["out"]) if r["status"] == "ok"}
    assert sorted(rows) == sorted(expected) and len(rows) == 9
    for item_id, item in expected.items():
        row = rows[item_id]
        vec = np.asarray(row["vector"], dtype=np.float32)
        cosine = float(vec @ vectors[item_id]) / float(np.linalg.norm(vec))
        assert cosine >= 0.9999, item_id
        for key in ("path", "label", "content_hash", "pixel_hash", "phash", "width", "height"):
            assert row[key] == getattr(item, key), (item_id, key)
        assert row["size"] == item.size and row["mtime_ns"] == item.mtime_ns
    report = job["report"]
    assert (report.files, report.ok, report.skipped) == (9 + len(BAD_FILES), 9, len(BAD_FILES))


@needs_spark
def test_bad_files_become_skip_rows(job: dict[str, Any]) -> None:
    skipped = {r["id"]: r["reason"] for r in _rows(job["out"]) if r["status"] == "skipped"}
    assert skipped == {name: reason for name, (_, reason) in BAD_FILES.items()}


@needs_spark
def test_import_is_incremental(job: dict[str, Any], model: Path, tmp_path: Path) -> None:
    with Collection.open(tmp_path / "c", model_path=model) as coll:
        first = import_parquet(coll, str(job["out"]))
        assert (first.added, first.skipped) == (9, len(BAD_FILES))
        again = import_parquet(coll, str(job["out"]))
        assert (again.added, again.replaced, again.unchanged) == (0, 0, 9)
        assert len(coll) == 9 and len(coll.catalog.skipped()) == len(BAD_FILES)
        assert {s["reason"] for s in coll.info()["skipped"]} >= {"truncated", "aspect"}
        hits = coll.search(str(job["root"] / "tops" / "p1.jpg"), k=1)
        assert hits[0].id == "tops/p1.jpg" and hits[0].score > 0.9999
        # `lookalike index` over the same folder finds everything already there
        report = coll.add(job["root"], limits=job["limits"], workers=0)
        assert (report.indexed, report.unchanged) == (0, 9)


@needs_spark
def test_import_command(job: dict[str, Any], cli: Any, tmp_path: Path) -> None:
    """A new collection takes the job's model; the second import adds nothing."""
    first = cli("import", str(job["out"]), "--collection", "c", "--json")
    assert first.code == 0, first.err
    assert (first.json()["added"], first.json()["skipped"]) == (9, len(BAD_FILES))
    assert cli("import", str(job["out"]), "--collection", "c", "--json").json()["added"] == 0
    info = cli("info", "--collection", "c", "--json").json()
    assert info["items"] == 9 and len(info["skipped"]) == len(BAD_FILES)


@needs_spark
def test_changed_file_is_replaced_and_rerun_redoes_only_missing_shards(
    spark: Any, model: Path, tmp_path: Path
) -> None:
    from lookalike.ingest.spark import run

    root = _images(tmp_path / "images")
    out = tmp_path / "out"

    def job() -> Any:
        return run(spark, [str(root)], str(out), model_path=str(model), partitions=4)

    first = job()
    names = shards.read_job(str(out))["shards"]
    assert first.written == len(names) >= 2
    with Collection.open(tmp_path / "c", model_path=model) as coll:
        assert import_parquet(coll, str(out)).added == 9
        # a lost shard (killed job, lost executor): only it is redone
        before = {n: (out / n).stat().st_mtime_ns for n in names}
        (out / names[0]).unlink()
        (out / shards.JOB_FILE).unlink()
        with pytest.raises(InvalidInput, match="rerun"):
            import_parquet(coll, str(out))
        second = job()
        assert (second.written, second.reused) == (1, len(names) - 1)
        assert all((out / n).stat().st_mtime_ns == before[n] for n in names[1:])
        # one file changes: its shard is redone, the import replaces that one item
        target = root / "shoes" / "p0.jpg"
        imagegen.save(imagegen.photo_like(999, (240, 320)), target)
        third = job()
        assert (third.written, third.reused) == (1, len(names) - 1)
        assert len(os.listdir(out)) == len(names) + 1  # the old shard is gone
        report = import_parquet(coll, str(out))
        assert (report.added, report.replaced, report.unchanged) == (0, 1, 8)
        assert len(coll) == 9
        hits = coll.search(str(target), k=1)
        assert hits[0].id == "shoes/p0.jpg" and hits[0].score > 0.9999


@needs_spark
def test_phash_model_and_spark_listing(spark: Any, tmp_path: Path) -> None:
    """Hash models write binary vectors; the binaryFile listing (used for hdfs:/s3a:) gives
    the ids and labels of the local walk."""
    from lookalike.ingest.spark import run
    from lookalike.ingest.spark_plan import _Ids, _remote_folder_tasks, plan_tasks

    root = _images(tmp_path / "images", n=4)
    out = tmp_path / "out"
    report = run(spark, [str(root)], str(out), model="phash")
    assert report.ok == 5
    with Collection.open(tmp_path / "local", "phash") as local:
        local.add(root, workers=0)
        with Collection.open(tmp_path / "c", "phash") as coll:
            import_parquet(coll, str(out))
            for item in local.items():
                other = coll.get(item.id)
                assert bytes(_vector(coll, other.slot)) == bytes(_vector(local, item.slot))
    listed = _remote_folder_tasks(spark, root.as_uri(), _Ids())
    walked = plan_tasks(spark, [str(root)])
    assert [(t.id, t.label, t.size) for t in listed] == [(t.id, t.label, t.size) for t in walked]


# -- no JVM needed ------------------------------------------------------------------------


def test_missing_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from lookalike.ingest import spark

    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(MissingDependency, match=r"pip install 'lookalike\[spark\]'"):
        spark.require_pyspark()


def test_missing_model_fails_at_once(cli: Any, tmp_path: Path) -> None:
    imagegen.save(imagegen.photo_like(1), tmp_path / "img" / "a.jpg")
    res = cli("spark-index", "img", "--out", "out", "--model-path", "nowhere")
    assert res.code == 3, res.err
    assert res.err.startswith("lookalike: error: Model folder nowhere does not exist")
    assert "Traceback" not in res.err and "Spark" not in res.err  # no JVM was started
    assert res.err == cli("index", "img", "--model-path", "nowhere").err  # index's message
    assert not (tmp_path / "out").exists()


def test_import_refuses_another_model(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    record = {"name": "phash", "dim": 64, "metric": "hamming"}
    shards.write_job(str(out), {"model": record, "shards": [], "ok": 0, "skipped": 0})
    coll = Collection.open(tmp_path / "c", model_path=model)
    with coll, pytest.raises(ModelMismatch, match="different model"):
        import_parquet(coll, str(out))
    with pytest.raises(InvalidInput, match="finished"):
        shards.read_job(str(tmp_path))
    assert ModelUnavailable.exit_code == 3
    assert json.loads((out / shards.JOB_FILE).read_text())["format"] == shards.FORMAT


@needs_spark
def test_a_fast_resize_job_gives_index_fast_resize_vectors(
    spark: Any, model: Path, cli: Any, tmp_path: Path
) -> None:
    """`spark-index --fast-resize` embeds as `index --fast-resize`; its import makes a
    collection that resizes fast, and an exact collection refuses its rows."""
    pytest.importorskip("cv2", reason="--fast-resize needs OpenCV")
    from lookalike.ingest.spark import run

    root = _images(tmp_path / "images", 4)
    out = tmp_path / "out"
    run(spark, [str(root)], str(out), model_path=str(model), partitions=1, fast_resize=True)
    assert shards.read_job(str(out))["model"]["preprocess"]["fast_resize"] is True
    r = cli("import", str(out), "--collection", "imported", "--json")
    assert r.code == 0, r.err
    assert cli("info", "--collection", "imported", "--json").json()["fast_resize"] is True
    with Collection.open(tmp_path / "local", model_path=model, fast_resize=True) as local:
        local.add(root, workers=0)
        vectors = {i.id: _vector(local, i.slot) for i in local.items()}
    with Collection.open(tmp_path / "exact", model_path=model) as exact:
        exact.add(root, workers=0)
        exact_vectors = {i.id: _vector(exact, i.slot) for i in exact.items()}
    rows = {r["id"]: r for r in _rows(out) if r["status"] == "ok"}
    assert sorted(rows) == sorted(vectors) and len(rows) == 5
    for item_id, row in rows.items():
        vec = np.asarray(row["vector"], dtype=np.float32) / np.linalg.norm(row["vector"])
        assert float(vec @ vectors[item_id]) >= 0.9999, item_id
        assert not np.allclose(vec, exact_vectors[item_id], atol=1e-6)  # another resize
    r = cli("import", str(out), "--collection", str(tmp_path / "exact"))
    assert r.code != 0 and r.err.count("\n") == 1 and "preprocessing" in r.err
