"""Model resolution and the ONNX embedder, with tiny models built in the tests (no network)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from PIL import Image
from tiny_models import (
    hub_env,
    install_hub_model,
    make_model_with_input,
    make_pooling_model,
    make_token_model,
    model_bytes,
    repo_folder,
    tiny_hub_spec,
    tiny_preprocessor_config,
    use_offline_hub,
    write_hub_cache,
    write_local_model,
)

from lookalike.errors import InvalidInput, ModelUnavailable
from lookalike.models import hub as hub_module
from lookalike.models import registry
from lookalike.models.embedders.base import Embedder
from lookalike.models.embedders.onnx import OnnxEmbedder
from lookalike.models.hub import ModelFiles, hub_cache_dir, hub_offline, resolve_hub_model
from lookalike.models.loader import load_embedder
from lookalike.models.local import resolve_local_model

REPO_ID = "lookalike-tests/tiny-vision"
_real_check_hub_reachable = hub_module._check_hub_reachable


# -- helpers -----------------------------------------------------------------------------


def sample_images() -> list[Image.Image]:
    """Four different deterministic RGB images (noise, gradient, its mirror, flat colour)."""
    rng = np.random.default_rng(7)
    noise = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    ramp = np.zeros((40, 40, 3), np.uint8)
    ramp[..., 0] = np.linspace(0, 255, 40, dtype=np.uint8)[None, :]
    ramp[..., 2] = np.linspace(255, 0, 40, dtype=np.uint8)[:, None]
    gradient = Image.fromarray(ramp)
    mirrored = gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    flat = Image.new("RGB", (50, 30), (200, 40, 90))
    return [noise, gradient, mirrored, flat]


def embed_images(embedder: Embedder, images: list[Image.Image] | None = None) -> np.ndarray:
    prepare = embedder.preparer()
    return embedder.embed([prepare(im) for im in images or sample_images()], batch_size=3)


def assert_paragraph(message: str) -> None:
    """A user-facing paragraph: a few lines, pointing at the alternatives, no traceback."""
    lines = message.splitlines()
    assert 2 <= len(lines) <= 6, message
    assert "Traceback" not in message
    assert 'File "' not in message
    assert "--model-path" in message
    assert "phash" in message


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, offline Hugging Face cache."""
    return use_offline_hub(monkeypatch, tmp_path / "hf-cache")


@pytest.fixture
def tiny(hub: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[registry.ModelSpec]:
    """A registry model "tiny" (16 dims) installed in the offline cache."""
    install_hub_model(hub, REPO_ID, make_pooling_model(dim=16))
    spec = tiny_hub_spec("tiny", REPO_ID, 16)
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    yield spec


@pytest.fixture
def session_count(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every onnxruntime.InferenceSession created (model paths)."""
    import onnxruntime

    created: list[str] = []
    real = onnxruntime.InferenceSession

    def counting(path: Any, *args: Any, **kwargs: Any) -> Any:
        created.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", counting)
    return created


# -- registry ----------------------------------------------------------------------------


def test_registry_entries_are_plain_frozen_dataclasses() -> None:
    assert registry.DEFAULT_MODEL in registry.MODELS
    for name, spec in registry.MODELS.items():
        assert dataclasses.is_dataclass(spec)
        assert spec.name == name
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.dim = 1  # type: ignore[misc]
        if spec.kind == "onnx":
            # repo None: no hub download, bring your own export (vgg16, docs/models.md)
            assert spec.model_file and spec.preprocessor_file
            assert spec.repo or spec.output
            assert spec.metric == "cosine"
        else:
            assert spec.metric == "hamming" and spec.repo is None


def test_a_model_without_download_explains_the_export() -> None:
    from lookalike.errors import ModelUnavailable
    from lookalike.models.loader import load_embedder

    with pytest.raises(ModelUnavailable, match="docs/models.md.*--model-path.*MaxPool"):
        load_embedder("vgg16")


def test_importing_does_not_load_onnxruntime_or_huggingface_hub() -> None:
    code = (
        "import sys, lookalike.models.loader, lookalike.models.embedders.onnx;"
        "print(sorted(m for m in ('onnxruntime', 'huggingface_hub', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# -- laziness ----------------------------------------------------------------------------


def test_load_embedder_is_lazy_even_when_the_model_is_missing(
    hub: Path, session_count: list[str]
) -> None:
    embedder = load_embedder()
    assert isinstance(embedder, OnnxEmbedder)
    assert not embedder.loaded
    assert embedder.name == registry.DEFAULT_MODEL
    assert embedder.dim == 512
    ident = embedder.identity()
    assert ident["name"] == "clip-vit-b32" and ident["dim"] == 512 and ident["metric"] == "cosine"
    assert ident["source"] == "hf:Qdrant/clip-ViT-B-32-vision/model.onnx"
    assert session_count == []
    assert not list(hub.iterdir())  # nothing downloaded or created


def test_no_session_until_first_embed(tiny: registry.ModelSpec, session_count: list[str]) -> None:
    embedder = load_embedder("tiny")
    assert isinstance(embedder, OnnxEmbedder)
    prepare = embedder.preparer()
    assert session_count == [] and not embedder.loaded
    inputs = [prepare(im) for im in sample_images()]
    assert session_count == []
    embedder.embed(inputs)
    embedder.embed(inputs)
    assert len(session_count) == 1 and embedder.loaded


def test_preparer_needs_only_the_preprocessor_config(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only preprocessor_config.json is cached: the preparer works, loading does not.
    config = json.dumps(tiny_preprocessor_config(32)).encode()
    write_hub_cache(hub, REPO_ID, {"preprocessor_config.json": config})
    spec = tiny_hub_spec("tiny", REPO_ID, 16)
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    embedder = load_embedder("tiny")
    prepare = embedder.preparer()
    x = prepare(sample_images()[0])
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    assert isinstance(embedder, OnnxEmbedder) and not embedder.loaded
    with pytest.raises(ModelUnavailable) as info:
        embedder.load()
    assert f"{REPO_ID}/model.onnx" in str(info.value)


def test_local_preparer_does_not_open_the_model(tmp_path: Path, session_count: list[str]) -> None:
    folder = write_local_model(tmp_path / "m", b"this is not an onnx model")
    embedder = load_embedder(model_path=folder)
    assert embedder.preparer()(sample_images()[1]).shape == (3, 32, 32)
    assert session_count == []


# -- hub cache ---------------------------------------------------------------------------


def test_hub_cache_offline_resolves_and_embeds(tiny: registry.ModelSpec, hub: Path) -> None:
    files = resolve_hub_model(tiny)
    commit = (repo_folder(hub, REPO_ID) / "refs" / "main").read_text()
    assert files.source == f"hf:{REPO_ID}@{commit}"
    assert files.model_path == repo_folder(hub, REPO_ID) / "snapshots" / commit / "model.onnx"
    assert (
        files.preprocessor_config is not None
        and files.preprocessor_config.name == "preprocessor_config.json"
    )

    embedder = load_embedder("tiny")
    vectors = embed_images(embedder)
    assert vectors.shape == (4, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.source == files.source
    assert embedder.identity()["source"] == f"hf:{REPO_ID}/model.onnx"


def test_hub_cache_nested_model_file_with_cls_pooling(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_hub_model(hub, REPO_ID, make_token_model(dim=8), model_file="onnx/model.onnx")
    spec = tiny_hub_spec(
        "tiny-vit",
        REPO_ID,
        8,
        model_file="onnx/model.onnx",
        output="last_hidden_state",
        pooling="cls",
    )
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    vectors = embed_images(load_embedder("tiny-vit"))
    assert vectors.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_hub_cache_without_symlinks(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = json.dumps(tiny_preprocessor_config()).encode()
    files = {"model.onnx": model_bytes(make_pooling_model()), "preprocessor_config.json": config}
    write_hub_cache(hub, REPO_ID, files, symlinks=False)
    spec = tiny_hub_spec("tiny", REPO_ID, 16)
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    assert embed_images(load_embedder("tiny")).shape == (4, 16)


def _external_data_model(tmp_path: Path) -> dict[str, bytes]:
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(
        make_pooling_model(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx_data",
        size_threshold=0,
    )
    return {
        "model.onnx": path.read_bytes(),
        "model.onnx_data": (path.parent / "model.onnx_data").read_bytes(),
    }


def test_hub_external_data_is_fetched(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _external_data_model(tmp_path)
    assert hub_module._external_data_files(tmp_path / "ext" / "model.onnx") == ["model.onnx_data"]
    install_hub_model(
        hub, REPO_ID, files["model.onnx"], extra_files={"model.onnx_data": files["model.onnx_data"]}
    )
    spec = tiny_hub_spec("tiny", REPO_ID, 16)
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    reference = embed_images(
        load_embedder(model_path=write_local_model(tmp_path / "ref", make_pooling_model()))
    )
    np.testing.assert_allclose(embed_images(load_embedder("tiny")), reference, atol=1e-6)


def test_hub_missing_external_data_is_reported(
    tmp_path: Path, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _external_data_model(tmp_path)
    install_hub_model(hub, REPO_ID, files["model.onnx"])
    spec = tiny_hub_spec("tiny", REPO_ID, 16)
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    with pytest.raises(ModelUnavailable) as info:
        load_embedder("tiny").load()
    assert f"{REPO_ID}/model.onnx_data" in str(info.value)
    assert_paragraph(str(info.value))


def test_external_data_scan_of_a_self_contained_model(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(model_bytes(make_pooling_model()))
    assert hub_module._external_data_files(path) == []
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert hub_module._external_data_files(empty) == []


# -- hub failures ------------------------------------------------------------------------


def test_missing_model_offline_gives_a_paragraph(hub: Path) -> None:
    embedder = load_embedder("clip-vit-b32")
    with pytest.raises(ModelUnavailable) as info:
        embedder.load()
    message = str(info.value)
    assert_paragraph(message)
    assert "'clip-vit-b32'" in message
    assert "Qdrant/clip-ViT-B-32-vision/model.onnx" in message
    assert str(hub) in message
    assert "HF_HUB_OFFLINE" in message
    assert "hf download Qdrant/clip-ViT-B-32-vision model.onnx preprocessor_config.json" in message
    assert info.value.exit_code == 3


def test_missing_model_via_embed_and_preparer(hub: Path) -> None:
    embedder = load_embedder("dinov2-small")
    with pytest.raises(ModelUnavailable) as info:
        embedder.preparer()
    assert "Xenova/dinov2-small/preprocessor_config.json" in str(info.value)
    with pytest.raises(ModelUnavailable) as info:
        embedder.embed([np.zeros((3, 224, 224), np.float32)])
    assert "hf download Xenova/dinov2-small onnx/model.onnx preprocessor_config.json" in str(
        info.value
    )


def _go_online(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_module, "_check_hub_reachable", lambda: None)


def test_network_failure_gives_a_paragraph(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.utils import LocalEntryNotFoundError

    _go_online(monkeypatch)
    calls: list[bool] = []

    def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append(bool(kwargs.get("local_files_only")))
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        try:
            raise ConnectionError("[Errno -3] Temporary failure in name resolution")
        except ConnectionError as exc:
            raise LocalEntryNotFoundError(
                "An error happened while trying to locate the file"
            ) from exc

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(ModelUnavailable) as info:
        load_embedder().load()
    message = str(info.value)
    assert calls == [True, False]  # the cache first, then one download attempt
    assert_paragraph(message)
    assert "downloading it failed" in message and "name resolution" in message
    assert "HF_HUB_OFFLINE is set" not in message


def test_unresolvable_hub_fails_fast(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import huggingface_hub
    from huggingface_hub.utils import LocalEntryNotFoundError

    _go_online(monkeypatch)
    monkeypatch.setattr(hub_module, "_check_hub_reachable", _real_check_hub_reachable)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    calls: list[bool] = []

    def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append(bool(kwargs.get("local_files_only")))
        raise LocalEntryNotFoundError("not cached")

    def no_dns(host: str, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(ModelUnavailable) as info:
        load_embedder().load()
    assert calls == [True]  # never handed to huggingface_hub's slow retry loop
    assert "hub is unreachable (cannot resolve hub.invalid" in str(info.value)
    assert_paragraph(str(info.value))


def test_unexpected_download_error_gives_a_paragraph(
    hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub
    from huggingface_hub.utils import LocalEntryNotFoundError

    _go_online(monkeypatch)

    def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        raise OSError("No space left on device")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(ModelUnavailable) as info:
        load_embedder().load()
    assert "OSError: No space left on device" in str(info.value)
    assert_paragraph(str(info.value))


def test_cached_model_is_used_without_network_when_online(
    tiny: registry.ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    _go_online(monkeypatch)
    real = huggingface_hub.hf_hub_download

    def cache_only(repo_id: str, filename: str, **kwargs: Any) -> str:
        assert kwargs.get("local_files_only"), "tried to reach the hub for a cached file"
        return real(repo_id, filename, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cache_only)
    assert embed_images(load_embedder("tiny")).shape == (4, 16)


def test_environment_is_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hub_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    assert hub_offline()

    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub_cache_dir() == tmp_path / "cache"


def test_hub_env_helper_matches_use_offline_hub(hub: Path) -> None:
    env = hub_env(hub)
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HUB_CACHE"] == str(hub)


def test_corrupt_hub_model(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_hub_model(hub, REPO_ID, model_bytes(make_pooling_model())[:200])  # truncated
    spec = tiny_hub_spec("tiny", REPO_ID, 16)
    monkeypatch.setitem(registry.MODELS, spec.name, spec)
    with pytest.raises(ModelUnavailable) as info:
        load_embedder("tiny").load()
    message = str(info.value)
    assert "not a valid ONNX model" in message
    assert f"hf download {REPO_ID} model.onnx --force-download" in message
    assert "Traceback" not in message


# -- local folders -----------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["root", "onnx"])
def test_local_folder(tmp_path: Path, layout: str, session_count: list[str]) -> None:
    folder = write_local_model(tmp_path / "my-model", make_pooling_model(dim=16), layout=layout)  # type: ignore[arg-type]
    embedder = load_embedder(model_path=folder)
    assert isinstance(embedder, OnnxEmbedder) and not embedder.loaded
    vectors = embed_images(embedder)
    assert embedder.name == "local:my-model"
    assert embedder.dim == 16
    assert embedder.spec.output == "image_embeds" and embedder.spec.pooling == "none"
    assert embedder.spec.model_file == ("model.onnx" if layout == "root" else "onnx/model.onnx")
    assert vectors.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # different images give different vectors (the mirror included: spatial structure counts)
    sims = vectors @ vectors.T
    assert np.all(sims[~np.eye(4, dtype=bool)] < 0.9999)
    # deterministic across embedders (fresh sessions)
    again = embed_images(load_embedder(model_path=str(folder), threads=1))
    np.testing.assert_array_equal(vectors, again)
    assert len(session_count) == 2
    assert embedder.identity() == {
        "name": "local:my-model",
        "dim": 16,
        "metric": "cosine",
        "source": "local:my-model/" + embedder.spec.model_file,
    }


def test_resolve_local_model(tmp_path: Path) -> None:
    folder = write_local_model(tmp_path / "vit", make_token_model(dim=8, tokens=5), layout="onnx")
    spec, files = resolve_local_model(folder)
    assert isinstance(files, ModelFiles)
    assert files.model_path == folder / "onnx" / "model.onnx"
    assert files.preprocessor_config == folder / "preprocessor_config.json"
    assert files.source == f"local:{folder.resolve()}"
    assert (spec.name, spec.kind, spec.dim, spec.metric) == ("local:vit", "onnx", 8, "cosine")
    assert (spec.output, spec.pooling) == ("last_hidden_state", "cls")


def test_cls_pooling_picks_token_zero(tmp_path: Path) -> None:
    tokens = load_embedder(model_path=write_local_model(tmp_path / "vit", make_token_model(dim=8)))
    pooled = load_embedder(
        model_path=write_local_model(tmp_path / "cnn", make_pooling_model(dim=8))
    )
    assert tokens.spec.pooling == "cls"
    np.testing.assert_allclose(embed_images(tokens), embed_images(pooled), atol=1e-6)

    mean_folder = write_local_model(
        tmp_path / "vit-mean", make_token_model(dim=8), lookalike={"pooling": "mean"}
    )
    mean = load_embedder(model_path=mean_folder)
    assert mean.spec.pooling == "mean"
    assert not np.allclose(embed_images(mean), embed_images(pooled), atol=1e-3)


def test_local_model_with_several_outputs_uses_the_flat_one(tmp_path: Path) -> None:
    folder = write_local_model(tmp_path / "m", make_pooling_model(dim=16, extra_token_output=True))
    embedder = load_embedder(model_path=folder)
    assert (embedder.spec.output, embedder.spec.pooling, embedder.dim) == (
        "image_embeds",
        "none",
        16,
    )
    assert embed_images(embedder).shape == (4, 16)


def test_local_model_with_symbolic_output_size(tmp_path: Path) -> None:
    folder = write_local_model(tmp_path / "m", make_pooling_model(dim=12, symbolic_dim=True))
    embedder = load_embedder(model_path=folder)
    assert embedder.dim == 12
    assert embed_images(embedder).shape == (4, 12)


def test_lookalike_json_overrides(tmp_path: Path) -> None:
    folder = write_local_model(
        tmp_path / "m",
        make_pooling_model(dim=16, extra_token_output=True),
        lookalike={"name": "my-tokens", "output": "last_hidden_state", "pooling": "mean"},
    )
    embedder = load_embedder(model_path=folder)
    assert (embedder.name, embedder.spec.output, embedder.spec.pooling, embedder.dim) == (
        "my-tokens",
        "last_hidden_state",
        "mean",
        16,
    )
    assert embed_images(embedder).shape == (4, 16)

    wrong_dim = write_local_model(tmp_path / "w", make_pooling_model(dim=16), lookalike={"dim": 10})
    embedder = load_embedder(model_path=wrong_dim)
    assert embedder.dim == 10
    with pytest.raises(ModelUnavailable, match="expected"):
        embed_images(embedder)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"pooling": "max"}, "pooling"),
        ({"dim": -3}, "dim"),
        ({"colour": "blue"}, "unknown keys"),
        ({"output": "nope"}, "nope"),
    ],
)
def test_bad_lookalike_json(tmp_path: Path, overrides: dict[str, Any], needle: str) -> None:
    folder = write_local_model(tmp_path / "m", make_pooling_model(), lookalike=overrides)
    with pytest.raises(ModelUnavailable, match=needle):
        load_embedder(model_path=folder).load()


def test_float16_model(tmp_path: Path) -> None:
    half = load_embedder(
        model_path=write_local_model(tmp_path / "h", make_pooling_model(size=32, dtype="float16"))
    )
    full = load_embedder(model_path=write_local_model(tmp_path / "f", make_pooling_model(size=32)))
    np.testing.assert_allclose(embed_images(half), embed_images(full), atol=5e-3)


def test_fixed_input_size_must_match_the_preprocessor(tmp_path: Path) -> None:
    folder = write_local_model(tmp_path / "m", make_pooling_model(size=64))  # preprocessor gives 32
    with pytest.raises(ModelUnavailable, match="64x64"):
        embed_images(load_embedder(model_path=folder))


def test_model_whose_input_is_not_an_image(tmp_path: Path) -> None:
    folder = write_local_model(tmp_path / "m", make_model_with_input(["batch", 10]))
    with pytest.raises(ModelUnavailable, match=r"\(N, 3, H, W\)"):
        load_embedder(model_path=folder).load()


def test_corrupt_local_onnx(tmp_path: Path) -> None:
    folder = write_local_model(tmp_path / "m", b"\x08\x07garbage that is not a protobuf model")
    embedder = load_embedder(model_path=folder)  # lazy: fine so far
    with pytest.raises(ModelUnavailable) as info:
        embedder.load()
    message = str(info.value)
    assert "not a valid ONNX model" in message and str(folder / "model.onnx") in message
    assert "Traceback" not in message


def test_model_path_problems(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as info:
        load_embedder(model_path=tmp_path / "nowhere")
    assert "does not exist" in str(info.value)
    assert_paragraph(str(info.value))

    (tmp_path / "file.onnx").write_bytes(b"x")
    with pytest.raises(ModelUnavailable, match="not a folder"):
        load_embedder(model_path=tmp_path / "file.onnx")

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "vision.onnx").write_bytes(b"x")
    with pytest.raises(ModelUnavailable) as info:
        load_embedder(model_path=empty)
    assert "model.onnx" in str(info.value) and "sub/vision.onnx" in str(info.value)
    assert_paragraph(str(info.value))

    no_config = tmp_path / "no-config"
    no_config.mkdir()
    (no_config / "model.onnx").write_bytes(model_bytes(make_pooling_model()))
    with pytest.raises(ModelUnavailable, match="preprocessor_config.json"):
        load_embedder(model_path=no_config)


def test_model_file_override_picks_another_onnx_file(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_local_model(folder, make_pooling_model(dim=16), lookalike={"model_file": "vision.onnx"})
    (folder / "model.onnx").rename(folder / "vision.onnx")
    embedder = load_embedder(model_path=folder)
    assert embedder.dim == 16 and embedder.spec.model_file == "vision.onnx"


def test_threads_are_passed_to_onnxruntime(tmp_path: Path) -> None:
    embedder = load_embedder(
        model_path=write_local_model(tmp_path / "m", make_pooling_model()), threads=1
    )
    assert isinstance(embedder, OnnxEmbedder)
    embedder.load()
    assert embedder._session is not None
    options = embedder._session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


# -- names -------------------------------------------------------------------------------


def test_unknown_model_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput) as info:
        load_embedder("clip-vit-b33")
    assert "clip-vit-b32" in str(info.value) and "phash" in str(info.value)
    assert info.value.exit_code == 2

    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    with pytest.raises(InvalidInput, match="--model-path"):
        load_embedder("folder")


def test_bad_arguments(tmp_path: Path) -> None:
    folder = write_local_model(tmp_path / "m", make_pooling_model())
    with pytest.raises(InvalidInput, match="not both"):
        load_embedder("clip-vit-b32", folder)
    with pytest.raises(InvalidInput, match="threads"):
        load_embedder(threads=0)


def test_phash_model() -> None:
    phash = pytest.importorskip("lookalike.models.embedders.phash")
    embedder = load_embedder("phash")
    assert isinstance(embedder, phash.PhashEmbedder)
    assert embedder.binary and embedder.dim == 64
