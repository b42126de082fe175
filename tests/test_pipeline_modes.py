"""Decode threads vs processes, inference in its own thread, and pixel hash kinds.

Threads and processes (and in-process decoding) must give the same items, vectors and
hashes; the pixel hash kind a collection records must be the one it keeps using, so that
collections made before XXH3 (SHA-1 pixel hashes) still find exact duplicates across old
and new items.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import imagegen
import numpy as np
import pytest
import tiny_models

from lookalike import Collection
from lookalike.ingest import pipeline
from lookalike.ingest.decode import DecodeLimits, decode_image, pixel_hash
from lookalike.ingest.inference import InferenceQueue
from lookalike.store.catalog import SCHEMA_VERSION


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return tiny_models.write_local_model(tmp_path / "tiny", tiny_models.make_pooling_model(dim=8))


def _rows(coll: Collection) -> dict[str, tuple[np.ndarray, bytes | None, int | None, str | None]]:
    out = {}
    for item in coll.catalog.items():
        vec = coll.vectors.read([item.slot], coll.catalog.next_slot)[0]
        out[Path(item.path or "").name] = (vec, item.pixel_hash, item.phash, item.content_hash)
    return out


def test_threads_processes_and_in_process_give_identical_items(
    photos: Path, tiny_model: Path, tmp_path: Path
) -> None:
    (photos / "dress" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    runs = {}
    for name, kwargs in {
        "threads": {"workers": 2, "decode": "threads"},
        "processes": {"workers": 2, "decode": "processes"},
        "in-process": {"workers": 0},
    }.items():
        with Collection.open(tmp_path / name, model_path=tiny_model) as c:
            report = c.add(photos, batch_size=7, **kwargs)  # type: ignore[arg-type]
            assert (report.indexed, report.skipped) == (60, 1)
            runs[name] = _rows(c)
    reference = runs.pop("in-process")
    for rows in runs.values():
        assert rows.keys() == reference.keys()
        for key, (vec, ph, phash, content) in rows.items():
            ref = reference[key]
            np.testing.assert_array_equal(vec, ref[0])  # same bytes in, same vector out
            assert (ph, phash, content) == ref[1:]


def test_default_decode_mode_is_threads(photos: Path, tiny_model: Path, tmp_path: Path) -> None:
    seen: list[str] = []
    real_run = pipeline.run

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["mode"])
        return real_run(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "run", spy)
        with Collection.open(tmp_path / "c", model_path=tiny_model) as c:
            assert c.add(photos, workers=1).indexed == 60
    assert seen == ["threads"]


def test_unknown_decode_mode_is_refused(photos: Path) -> None:
    with pytest.raises(ValueError, match="decode mode"):
        list(
            pipeline.run(
                [pipeline.Task(0, str(next(photos.rglob("*.jpg"))))],
                lambda im: np.zeros(1),  # type: ignore[arg-type]
                DecodeLimits(),
                workers=1,
                mode="fibers",  # type: ignore[arg-type]
            )
        )


# -- the inference thread ---------------------------------------------------------------


def test_inference_queue_commits_in_order_off_the_embedding_thread() -> None:
    committed: list[tuple[list[int], list[float]]] = []
    embed_threads: set[str] = set()
    gate = threading.Event()

    def embed(batch: list[int]) -> np.ndarray:
        embed_threads.add(threading.current_thread().name)
        gate.wait(5)
        return np.asarray(batch, dtype=np.float32) * 2

    def commit(batch: list[int], vecs: np.ndarray) -> None:
        assert threading.current_thread() is threading.main_thread()
        committed.append((batch, vecs.tolist()))

    with InferenceQueue(embed, commit, depth=3) as q:
        q.submit([1, 2])
        q.submit([3])
        assert committed == []  # nothing done yet: the submitting thread did not wait
        gate.set()
        q.submit([4, 5, 6])
        q.finish()
    assert committed == [([1, 2], [2, 4]), ([3], [6]), ([4, 5, 6], [8, 10, 12])]
    assert embed_threads and threading.main_thread().name not in embed_threads


def test_inference_errors_reach_the_caller() -> None:
    def embed(batch: list[int]) -> np.ndarray:
        raise RuntimeError("model failed")

    with (
        pytest.raises(RuntimeError, match="model failed"),
        InferenceQueue(embed, lambda b, v: None, depth=2) as q,
    ):
        q.submit([1])
        q.submit([2])
        q.finish()


def test_a_failing_model_stops_add_without_committing(
    photos: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Collection.open(tmp_path / "c", model_path=tiny_model) as c:
        calls = 0
        real = c.embedder.embed

        def flaky(inputs, batch_size=32):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 3:
                raise RuntimeError("boom")
            return real(inputs, batch_size=batch_size)

        monkeypatch.setattr(c.embedder, "embed", flaky)
        with pytest.raises(RuntimeError, match="boom"):
            c.add(photos, batch_size=8, workers=1)
        # Batches before the failure are committed whole, nothing after it.
        assert len(c) % 8 == 0 and len(c) <= 16
        monkeypatch.undo()
        before = len(c)
        assert c.add(photos, workers=1).indexed == 60 - before
        assert len(c) == 60


# -- pixel hash kinds -------------------------------------------------------------------


def test_new_collections_record_xxh3(photos: Path, tmp_path: Path) -> None:
    with Collection.open(tmp_path / "c", "phash") as c:
        assert c.catalog.pixel_hash_kind == "xxh3-128"
        assert c.catalog.schema_version == SCHEMA_VERSION
        png = photos / "dress" / "copy.png"
        first = next((photos / "dress").glob("*.jpg"))
        decode_image(first.read_bytes()).image.save(png)
        c.add(photos, workers=0)
        item = c.catalog.by_path(str(png))
        assert item is not None and item.pixel_hash is not None
        assert bytes(item.pixel_hash) == pixel_hash(decode_image(png.read_bytes()).image)


def _make_legacy(coll_dir: Path) -> None:
    """Turn a collection into what lookalike made before pixel hash kinds: schema 1, no
    kind recorded, SHA-1 pixel hashes."""
    db = sqlite3.connect(coll_dir / "catalog.sqlite")
    with db:
        for slot, path in db.execute("SELECT slot, path FROM items").fetchall():
            image = decode_image(Path(path).read_bytes()).image
            db.execute(
                "UPDATE items SET pixel_hash = ? WHERE slot = ?",
                (pixel_hash(image, "sha1-16"), slot),
            )
        db.execute("DELETE FROM meta WHERE key = 'pixel_hash_kind'")
        db.execute("DROP TABLE outbox")  # schema 3's
    db.execute("PRAGMA user_version = 1")
    db.close()


def test_old_collections_keep_sha1_and_still_find_exact_duplicates(
    photos: Path, tiny_model: Path, tmp_path: Path
) -> None:
    coll_dir = tmp_path / "c"
    with Collection.open(coll_dir, model_path=tiny_model) as c:
        c.add(photos, workers=0)
    _make_legacy(coll_dir)
    # A new file showing the same pixels as an old item, in another container format.
    original = next((photos / "hat").glob("*.jpg"))
    extra = tmp_path / "extra"
    extra.mkdir()
    decode_image(original.read_bytes()).image.save(extra / "same-pixels.png")
    with Collection.open(coll_dir) as c:
        assert c.catalog.schema_version == SCHEMA_VERSION  # migrated
        assert c.catalog.pixel_hash_kind == "sha1-16"  # and kept the old kind
        assert c.add(extra, workers=1).indexed == 1
        new = c.catalog.by_path(str(extra / "same-pixels.png"))
        old = c.catalog.by_path(str(original))
        assert new is not None and old is not None
        assert new.pixel_hash == old.pixel_hash
        groups = c.duplicates("exact")
        assert any({m.id for m in g.members} == {new.id, old.id} for g in groups)


def test_empty_old_catalog_adopts_the_new_kind(photos: Path, tmp_path: Path) -> None:
    coll_dir = tmp_path / "c"
    with Collection.open(coll_dir, "phash"):
        pass
    _make_legacy(coll_dir)
    with Collection.open(coll_dir) as c:
        assert c.catalog.pixel_hash_kind == "xxh3-128"


def test_on_demand_pixel_hashes_use_the_collection_kind(photos: Path, tmp_path: Path) -> None:
    # phash collections leave JPEG pixel hashes empty at indexing (drafted decoding) and
    # compute them on demand: of the collection's kind.
    coll_dir = tmp_path / "c"
    shutil.rmtree(photos / "hat")
    imagegen.save(imagegen.photo_like(7), photos / "dress" / "a.png")  # hashed at indexing
    with Collection.open(coll_dir, "phash") as c:
        c.add(photos, workers=0)
    _make_legacy(coll_dir)  # an old collection: the PNG's stored hash is SHA-1...
    db = sqlite3.connect(coll_dir / "catalog.sqlite")
    with db:  # ...and the JPEGs' are not computed yet
        db.execute("UPDATE items SET pixel_hash = NULL WHERE path LIKE '%.jpg'")
    db.close()
    with Collection.open(coll_dir) as c:
        assert c.catalog.pixel_hash_kind == "sha1-16"
        items = list(c.catalog.items())
        got = c.pixel_hashes(items)
        for item in items:
            assert item.path is not None
            image = decode_image(Path(item.path).read_bytes()).image
            assert got[item.id] == pixel_hash(image, "sha1-16")


# -- one resize for the model input and the phash ----------------------------------------


def test_phash_comes_from_the_image_resized_for_the_model(tmp_path: Path) -> None:
    from lookalike.models.phash import hamming, phash_bits, phash_int
    from lookalike.models.preprocess import ImageProcessorSpec

    spec = ImageProcessorSpec.from_hf_config(
        {
            "image_processor_type": "ConvNextImageProcessor",
            "size": {"shortest_edge": 224},
            "crop_pct": 0.875,
            "resample": 2,
        }
    )
    path = tmp_path / "p.jpg"
    imagegen.save(imagegen.photo_like(5, (400, 533)), path)
    result = pipeline.process(pipeline.Task(0, str(path)), spec, DecodeLimits())
    image = decode_image(path.read_bytes()).image
    prepared, resized = spec.prepare(image)
    assert resized.size == (256, 341)
    np.testing.assert_array_equal(prepared, spec(image))
    assert result.prepared is not None
    np.testing.assert_array_equal(result.prepared, prepared)
    assert result.phash == phash_int(resized)
    assert hamming(phash_bits(resized), phash_bits(image)) <= 6  # measured: mean 0.3, max 4


def test_small_or_upscaled_model_inputs_keep_the_full_image_phash(tmp_path: Path) -> None:
    from lookalike.models.phash import phash_int
    from lookalike.models.preprocess import ImageProcessorSpec

    tiny = ImageProcessorSpec.from_hf_config(tiny_models.tiny_preprocessor_config(32))
    big = ImageProcessorSpec.from_hf_config(tiny_models.tiny_preprocessor_config(512))
    path = tmp_path / "p.jpg"
    imagegen.save(imagegen.photo_like(6, (240, 320)), path)
    image = decode_image(path.read_bytes()).image
    for spec in (tiny, big):  # 32 px: too small to hash from; 512 px: an enlargement
        result = pipeline.process(pipeline.Task(0, str(path)), spec, DecodeLimits())
        assert result.phash == phash_int(image)
