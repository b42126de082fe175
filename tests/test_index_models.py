"""Indexing and searching with real ONNX embedders (tiny models built in the tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tiny_models

from lookalike import Collection


def test_local_model_folder_through_the_cli(cli, photos: Path, tmp_path: Path) -> None:
    model = tiny_models.write_local_model(tmp_path / "tiny", tiny_models.make_pooling_model(dim=16))
    coll = tmp_path / "c"
    r = cli(
        "index",
        str(photos),
        "--model-path",
        str(model),
        "--collection",
        str(coll),
        "--json",
        "--batch-size",
        "7",
    )
    assert r.code == 0, r.err
    assert r.json()["indexed"] == 60
    info = cli("info", "--collection", str(coll), "--json").json()
    assert info["dim"] == 16 and info["metric"] == "cosine"
    query = sorted((photos / "shirt").glob("*.jpg"))[0]
    r = cli("search", str(query), "--collection", str(coll), "-k", "3", "--json")
    assert r.code == 0, r.err
    top = r.json_lines()[0]["results"][0]
    assert top["id"] == f"shirt/{query.name}"
    assert (
        abs(top["score"] - 1.0) < 1e-3
    )  # query decode may use JPEG draft: tiny difference allowed
    # id: queries use the stored vector: exactly the same ranking as by file, minus itself
    by_id = cli("search", f"id:shirt/{query.name}", "--collection", str(coll), "-k", "2", "--json")
    assert [h["id"] for h in by_id.json_lines()[0]["results"]] == [
        h["id"] for h in r.json_lines()[0]["results"][1:]
    ]


def test_registry_model_from_offline_hub_cache(cli, photos: Path, tmp_path: Path) -> None:
    """The default model's real loading path (huggingface_hub, HF_HUB_OFFLINE=1), with a
    tiny stand-in laid out in the cache under the real repository name."""
    cache = tmp_path / "hub"
    tiny_models.install_hub_model(
        cache,
        "Qdrant/clip-ViT-B-32-vision",
        tiny_models.make_pooling_model(dim=512, output_name="image_embeds"),
    )
    env = tiny_models.hub_env(cache)
    coll = tmp_path / "c"
    r = cli(
        "index",
        str(photos / "hat"),
        str(photos / "shoes"),
        "--collection",
        str(coll),
        "--json",
        env=env,
    )
    assert r.code == 0, r.err
    assert r.json()["indexed"] == 12
    info = cli("info", "--collection", str(coll), "--json", env=env).json()
    assert info["model"] == "clip-vit-b32" and info["dim"] == 512
    query = next((photos / "hat").glob("*.jpg"))
    r = cli("search", str(query), "--collection", str(coll), "-k", "1", "--json", env=env)
    assert r.code == 0, r.err
    assert r.json_lines()[0]["results"][0]["id"] == query.name  # the root folder given was hat/


def test_every_item_also_gets_phash_and_pixel_hash(photos: Path, tmp_path: Path) -> None:
    model = tiny_models.write_local_model(tmp_path / "tiny", tiny_models.make_pooling_model(dim=8))
    with Collection.open(tmp_path / "c", model_path=model) as c:
        c.add(photos / "pants", workers=0)
        items = list(c.items())
        assert len(items) == 6
        assert all(i.phash is not None and i.pixel_hash and len(i.pixel_hash) == 16 for i in items)
        vecs = c.vectors.read([i.slot for i in items], c.catalog.next_slot)
        assert vecs.shape == (6, 8)
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
