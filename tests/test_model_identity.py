"""A collection's model: content identity (ONNX sha256 + preprocessing hash), moving a
--model-path folder, and first runs that fail leaving nothing behind. Through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tiny_models

from lookalike import Collection
from lookalike.models import identity

Cli = Callable[..., Any]


def _model(folder: Path, seed: int = 0, size: int = 32) -> Path:
    return tiny_models.write_local_model(
        folder,
        tiny_models.make_pooling_model(dim=8, seed=seed),
        preprocessor=tiny_models.tiny_preprocessor_config(size),
    )


def _index(cli: Cli, coll: Path, *args: str) -> Any:
    return cli("index", *args, "--collection", str(coll), "--workers", "0", "--no-progress")


def _marker(coll: Path) -> dict[str, Any]:
    return json.loads((coll / "collection.json").read_text())


@pytest.fixture
def built(cli: Cli, photos: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A collection of photos/hat built with --model-path tmp/models/tiny."""
    model = _model(tmp_path / "models" / "tiny")
    coll = tmp_path / "c"
    r = _index(cli, coll, str(photos / "hat"), "--model-path", str(model))
    assert r.code == 0, r.err
    return coll, model


# -- 1. moving the model folder ------------------------------------------------------------


def test_commands_that_need_no_model_work_when_the_model_folder_moved(
    cli: Cli, built: tuple[Path, Path], photos: Path, tmp_path: Path
) -> None:
    coll, model = built
    model.rename(tmp_path / "elsewhere")
    info = cli("info", "--collection", str(coll), "--json")
    assert info.code == 0, info.err
    assert info.json()["model_path"] == str(model.resolve())
    assert info.json()["model_present"] is False
    text = cli("info", "--collection", str(coll))
    assert text.code == 0 and "missing" in text.out and str(model.resolve()) in text.out
    item = f"{next(iter(sorted((photos / 'hat').glob('*.jpg')))).name}"
    r = cli("search", f"id:{item}", "--collection", str(coll), "-k", "2", "--json")
    assert r.code == 0, r.err
    assert len(r.json_lines()[0]["results"]) == 2
    assert (
        cli("export", "--format", "npy", str(tmp_path / "out"), "--collection", str(coll)).code == 0
    )
    assert cli("remove", item, "--collection", str(coll)).code == 0
    # Embedding a new image does need the model: a clear error with the way out.
    r = cli("search", str(next((photos / "shoes").glob("*.jpg"))), "--collection", str(coll))
    assert r.code == 3
    assert "--model-path" in r.err and str(model.resolve()) in r.err


def test_pointing_the_collection_at_the_moved_model(
    cli: Cli, built: tuple[Path, Path], photos: Path, tmp_path: Path
) -> None:
    coll, model = built
    moved = tmp_path / "moved" / "renamed-model"
    moved.parent.mkdir()
    model.rename(moved)
    r = _index(cli, coll, "--model-path", str(moved))
    assert r.code == 0, r.err
    assert "moved" in r.out and str(moved.resolve()) in r.out
    assert _marker(coll)["model"]["model_path"] == str(moved.resolve())
    query = next((photos / "hat").glob("*.jpg"))
    r = cli("search", str(query), "--collection", str(coll), "-k", "1", "--json")
    assert r.code == 0, r.err
    assert r.json_lines()[0]["results"][0]["id"] == query.name
    r = _index(cli, coll, str(photos / "hat"), str(photos / "shoes"), "--model-path", str(moved))
    assert r.code == 0, r.err
    assert "indexed 6" in r.out


# -- 2. content identity ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "size", "needle"),
    [(0, 40, "preprocessing"), (1, 32, "ONNX")],
    ids=["other-preprocessing", "other-weights"],
)
def test_a_different_model_in_a_folder_of_the_same_name_is_refused(
    cli: Cli,
    built: tuple[Path, Path],
    photos: Path,
    tmp_path: Path,
    seed: int,
    size: int,
    needle: str,
) -> None:
    coll, _ = built
    before = _marker(coll)
    other = _model(tmp_path / "other" / "tiny", seed=seed, size=size)  # same folder name
    r = _index(cli, coll, str(photos / "shoes"), "--model-path", str(other))
    assert r.code != 0
    assert needle in r.err and len(r.err.strip().splitlines()) == 1, r.err
    if needle == "preprocessing":
        assert "shortest_edge" in r.err
    assert _marker(coll) == before
    assert cli("info", "--collection", str(coll), "--json").json()["items"] == 6


def test_a_model_changed_in_place_is_refused(
    cli: Cli, built: tuple[Path, Path], photos: Path
) -> None:
    coll, model = built
    _model(model, seed=3)
    query = str(next((photos / "hat").glob("*.jpg")))
    r = cli("search", query, "--collection", str(coll))
    assert r.code != 0 and "ONNX" in r.err
    r = _index(cli, coll, str(photos / "shoes"))
    assert r.code != 0 and "ONNX" in r.err


def test_content_hashes_are_recorded_and_old_collections_get_them(
    cli: Cli, built: tuple[Path, Path], photos: Path
) -> None:
    coll, model = built
    stored = _marker(coll)["model"]
    assert stored["onnx_sha256"] == identity.file_sha256(model / "model.onnx")
    assert stored["preprocess"]["shortest_edge"] == 32
    assert stored["preprocess"]["output"] == "image_embeds"
    assert len(stored["preprocess_sha256"]) == 64
    # An old collection (no hashes) keeps working and records them on first use.
    old = _marker(coll)
    for key in identity.CONTENT_KEYS:
        old["model"].pop(key, None)
    (coll / "collection.json").write_text(json.dumps(old))
    r = cli("search", str(next((photos / "hat").glob("*.jpg"))), "--collection", str(coll))
    assert r.code == 0, r.err
    assert _marker(coll)["model"]["onnx_sha256"] == stored["onnx_sha256"]


def test_hashes_are_cached_by_path_size_and_mtime(
    built: tuple[Path, Path], photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    coll, _ = built
    calls: list[Path] = []
    real = identity.file_sha256
    monkeypatch.setattr(identity, "file_sha256", lambda p: calls.append(p) or real(p))
    with Collection.open(coll) as c:
        c.search(next((photos / "hat").glob("*.jpg")), k=1)
    assert calls == []


def test_hub_models_record_their_files_and_commit(cli: Cli, photos: Path, tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    tiny_models.install_hub_model(
        cache,
        "Qdrant/clip-ViT-B-32-vision",
        tiny_models.make_pooling_model(dim=512, output_name="image_embeds"),
    )
    coll = tmp_path / "c"
    r = cli("index", str(photos / "hat"), "--collection", str(coll), env=tiny_models.hub_env(cache))
    assert r.code == 0, r.err
    stored = _marker(coll)["model"]
    assert len(stored["onnx_sha256"]) == 64 and len(stored["preprocess_sha256"]) == 64
    assert stored["resolved"].startswith("hf:Qdrant/clip-ViT-B-32-vision@")


# -- 3. a failed first run leaves nothing --------------------------------------------------


@pytest.mark.parametrize(
    "preprocessor",
    [
        {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 0}},
        {"image_processor_type": "MobileNetV2ImageProcessor", "do_convert_grayscale": True},
        {"image_processor_type": "CLIPImageProcessor", "crop_size": 48, "size": 48},  # 64 expected
    ],
    ids=["invalid-size", "unknown-key", "wrong-input-size"],
)
def test_a_bad_model_on_a_first_index_creates_nothing(
    cli: Cli, photos: Path, tmp_path: Path, preprocessor: dict[str, Any]
) -> None:
    model = tiny_models.write_local_model(
        tmp_path / "bad",
        tiny_models.make_pooling_model(dim=8, size=64),
        preprocessor=preprocessor,
    )
    coll = tmp_path / "new" / "c"
    r = _index(cli, coll, str(photos / "hat"), "--model-path", str(model))
    assert r.code != 0
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert not coll.exists()
    assert (
        not any(p.name.startswith(".c") for p in coll.parent.glob("*"))
        if coll.parent.exists()
        else True
    )
