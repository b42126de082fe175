"""Text queries and composed queries through the Python API (tiny CLIP pair, no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_clip import install_hub_clip, write_colour_images, write_local_clip
from tiny_models import make_pooling_model, use_offline_hub, write_local_model

from lookalike.collection import Collection
from lookalike.errors import ModelUnavailable, NoTextTower, QueryError
from lookalike.models.loader import text_embedder_for_record
from lookalike.search.compose import Term, combine, parse_cli_terms


@pytest.fixture
def local_coll(tmp_path: Path) -> Collection:
    images = write_colour_images(tmp_path / "images")
    model = write_local_clip(tmp_path / "clip")
    coll = Collection.open(tmp_path / "coll", model_path=model)
    coll.add([images], workers=0)
    return coll


def _ids(hits: list) -> list[str]:
    return [Path(h.path).stem for h in hits]


def test_text_ranks_matching_image_first_local_folder(local_coll: Collection) -> None:
    assert _ids(local_coll.search(text="red summer dress", k=2))[0] == "red"
    assert _ids(local_coll.search(text="Blue", k=1)) == ["blue"]
    # red + blue: purple is nearest
    assert _ids(local_coll.search(text="red blue", k=1)) == ["purple"]


def test_text_and_image_vectors_share_one_space(local_coll: Collection) -> None:
    text = text_embedder_for_record(local_coll.config["model"])
    vec = text.embed_texts(["green"])[0]
    item = next(i for i in local_coll.items() if i.path.endswith("green.png"))
    stored = local_coll.vectors.read([item.slot], local_coll.catalog.next_slot)[0]
    assert float(vec @ stored) > 0.95
    assert np.isclose(np.linalg.norm(vec), 1.0)


def test_attention_mask_and_padding_in_a_batch(local_coll: Collection) -> None:
    text = text_embedder_for_record(local_coll.config["model"])
    alone = text.embed_texts(["red"])
    batch = text.embed_texts(["red", "red green blue dress dress dress"], batch_size=2)
    assert np.allclose(batch[0], alone[0], atol=1e-6)
    long = text.embed_texts([" ".join(["green"] * 300)])  # cut to 77 tokens, still green
    assert long[0][1] > 0.99


def test_hub_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = install_hub_clip(use_offline_hub(monkeypatch, tmp_path / "hub"))
    assert cache.is_dir()
    images = write_colour_images(tmp_path / "images")
    with Collection.open(tmp_path / "coll", "clip-vit-b32") as coll:
        coll.add([images], workers=0)
        assert _ids(coll.search(text="green", k=1)) == ["green"]
        terms: list[dict] = [{"text": "red", "weight": 1.5}, {}]
        ids = [i.id for i in coll.items()]
        blue = next(i for i in ids if i.endswith("blue.png"))
        terms[1] = {"id": blue}
        hits = coll.search(terms=terms, k=5)
        assert _ids(hits)[0] == "purple"
        assert blue not in [h.id for h in hits]  # a positive id term is left out


def test_hub_text_tower_missing_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_hub_clip(use_offline_hub(monkeypatch, tmp_path / "hub"), text=False)
    images = write_colour_images(tmp_path / "images")
    with Collection.open(tmp_path / "coll", "clip-vit-b32") as coll:
        coll.add([images], workers=0)
        with pytest.raises(ModelUnavailable, match="Qdrant/clip-ViT-B-32-text"):
            coll.search(text="red")


def test_no_text_tower_names_the_models_that_have_one(tmp_path: Path) -> None:
    images = write_colour_images(tmp_path / "images")
    model = write_local_model(tmp_path / "m", make_pooling_model(dim=8))
    with Collection.open(tmp_path / "coll", model_path=model) as coll:
        coll.add([images], workers=0)
        with pytest.raises(NoTextTower, match="clip-vit-b32") as info:
            coll.search(text="red")
        assert "\n" not in str(info.value)
        with pytest.raises(NoTextTower):
            coll.search(terms=[Term("text", "red"), Term("image", str(images / "red.png"))])


def test_composed_terms_and_mean(local_coll: Collection, tmp_path: Path) -> None:
    images = tmp_path / "images"
    # "more like these": red and blue images averaged -> purple first (after the two)
    hits = local_coll.search(terms=[images / "red.png", images / "blue.png"], k=5)
    assert _ids(hits)[0] in ("purple", "red", "blue")
    # red - blue: pure red first, blue last
    hits = local_coll.search(
        terms=[Term("image", str(images / "purple.png")), Term("text", "blue", -1)], k=5
    )
    assert _ids(hits)[0] == "red"
    assert _ids(hits)[-1] == "blue"
    vec = np.zeros(512, dtype=np.float32)
    vec[1] = 1
    assert _ids(local_coll.search(terms=[{"vector": vec.tolist()}], k=1)) == ["green"]


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ([{"text": "red"}, {"text": "red", "weight": -1}], "zero vector"),
        ([{"text": "red", "weight": "heavy"}], "must be a number"),
        ([{"text": "red", "weight": float("nan")}], "finite"),
        ([{"text": "red", "colour": 1}], "unknown key"),
        ([{"text": "red", "id": "x"}], "exactly one"),
        ([], "no terms"),
        ([{"vector": ["a"]}], "list of numbers"),
        ([{"vector": [1.0, 2.0]}], "expected 512"),
    ],
)
def test_bad_terms(local_coll: Collection, terms: list, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        local_coll.search(terms=terms)


def test_search_needs_exactly_one_kind(local_coll: Collection) -> None:
    with pytest.raises(Exception, match="exactly one"):
        local_coll.search("id:x", text="red")
    with pytest.raises(Exception, match="exactly one"):
        local_coll.search()


def test_parse_cli_terms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blurry.jpg").write_bytes(b"x")
    terms = parse_cli_terms(["2:red dress", "+", "id:dress/0a1b.jpg", "-", "blurry.jpg"])
    assert terms == [
        Term("text", "red dress", 2.0),
        Term("id", "dress/0a1b.jpg", 1.0),
        Term("image", "blurry.jpg", -1.0),
    ]
    assert parse_cli_terms(["missing.jpg"])[0].kind == "image"
    assert parse_cli_terms(["text:cat.jpg"])[0] == Term("text", "cat.jpg")
    assert parse_cli_terms(["-", "0.5:photos/x.png"])[0] == Term("image", "photos/x.png", -0.5)
    for bad, message in [
        (["2..5:red"], "must be a number"),
        (["red", "blue"], "between query terms"),
        (["red", "+"], "ends with"),
        (["+", "red"], "start with"),
        (["red", "+", "-", "blue"], "two operators"),
        (["-", "-", "red"], "two operators"),
        (["0:red"], "non-zero"),
    ]:
        with pytest.raises(QueryError, match=message):
            parse_cli_terms(bad)


def test_combine_normalises() -> None:
    out = combine([np.array([3.0, 0.0]), np.array([0.0, 1.0])], [1.0, 1.0])
    assert np.allclose(out, [[2**-0.5, 2**-0.5]])


def test_text_tower_is_loaded_once_per_model(local_coll: Collection) -> None:
    local_coll.search(text="red")
    first = text_embedder_for_record(local_coll.config["model"])
    assert first.loaded
    local_coll.search(text="green")
    assert text_embedder_for_record(local_coll.config["model"]) is first
