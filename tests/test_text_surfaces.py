"""Text and composed queries on the command line (the real entry point), over HTTP (the
in-process app) and ``lookalike models``, with the bad inputs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tiny_clip import install_hub_clip, write_colour_images, write_local_clip
from tiny_models import hub_env, make_pooling_model, use_offline_hub, write_local_model

from lookalike.collection import Collection

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lookalike.server import ServerSettings, create_app  # noqa: E402


@pytest.fixture
def clip_coll(tmp_path: Path) -> Path:
    images = write_colour_images(tmp_path / "images")
    model = write_local_clip(tmp_path / "clip")
    with Collection.open(tmp_path / "coll", model_path=model) as coll:
        coll.add([images], workers=0)
    return tmp_path / "coll"


def _stems(out: str) -> list[str]:
    return [Path(line).stem for line in out.splitlines()]


def test_cli_text_and_paths(cli: Callable[..., Any], clip_coll: Path) -> None:
    r = cli(
        "search", "--text", "red summer dress", "-k", "2", "--paths", "--collection", str(clip_coll)
    )
    assert r.code == 0, r.err
    assert _stems(r.out)[0] == "red"
    assert len(r.out.splitlines()) == 2 and all(Path(p).is_file() for p in r.out.splitlines())
    r = cli("search", "green", "--json", "--collection", str(clip_coll))  # a bare text
    assert r.code == 0, r.err
    assert Path(r.json_lines()[0]["results"][0]["path"]).stem == "green"


def test_cli_composed_and_mean(cli: Callable[..., Any], clip_coll: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    r = cli(
        "search", str(images / "purple.png"), "-", "0.9:blue", "-k", "5", "--paths",
        "--collection", str(clip_coll),
    )  # fmt: skip
    assert r.code == 0, r.err
    assert _stems(r.out)[0] == "red" and _stems(r.out)[-1] == "blue"
    r = cli(
        "search", "--mean", str(images / "red.png"), str(images / "blue.png"), "-k", "1",
        "--paths", "--collection", str(clip_coll),
    )  # fmt: skip
    assert r.code == 0, r.err
    assert _stems(r.out) == ["purple"]
    r = cli("search", "2:text:red", "+", "blue", "-k", "1", "--collection", str(clip_coll))
    assert r.code == 0, r.err
    assert r.out.startswith("2:text:red + blue:")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["red", "-", "red"], "zero vector"),
        (["1e:red"], "must be a number"),
        (["red", "blue.png", "+", "green"], "between query terms"),
        (["--text", "red", "blue"], "not both"),
        ([], "give a QUERY"),
        (["--mean", "red"], "at least two"),
        (["--paths", "--json", "red"], "do not go together"),
    ],
)
def test_cli_bad_input(
    cli: Callable[..., Any], clip_coll: Path, args: list[str], message: str
) -> None:
    r = cli("search", *args, "--collection", str(clip_coll))
    assert r.code == 2
    assert message in r.err
    assert r.err.count("\n") == 1 and "Traceback" not in r.err


def test_cli_no_text_tower(cli: Callable[..., Any], tmp_path: Path) -> None:
    images = write_colour_images(tmp_path / "images")
    model = write_local_model(tmp_path / "m", make_pooling_model(dim=8))
    assert cli("index", str(images), "--model-path", str(model), "--workers", "0").code == 0
    r = cli("search", "--text", "red dress")
    assert r.code == 2
    assert "has no text tower" in r.err and "clip-vit-b32" in r.err
    assert r.err.count("\n") == 1


def test_cli_hub_cache_offline_and_models(cli: Callable[..., Any], tmp_path: Path) -> None:
    env = hub_env(install_hub_clip(tmp_path / "hub"))
    images = write_colour_images(tmp_path / "images")
    r = cli("index", str(images), "--model", "clip-vit-b32", "--workers", "0", env=env)
    assert r.code == 0, r.err
    r = cli("search", "--text", "blue", "-k", "1", "--paths", env=env)
    assert r.code == 0, r.err
    assert _stems(r.out) == ["blue"]
    rows = {row["name"]: row for row in cli("models", "--json", env=env).json_lines()}
    assert rows["clip-vit-b32"]["cached"] is True and rows["clip-vit-b32"]["text"] is True
    assert rows["dinov2-small"]["cached"] is False and rows["dinov2-small"]["text"] is False
    assert rows["phash"]["cached"] is True
    assert all(row["license"] for row in rows.values())
    table = cli("models", env=env).out
    assert "licence" in table.splitlines()[0] and "clip-vit-b32" in table


def test_models_not_cached_without_text_tower(cli: Callable[..., Any], tmp_path: Path) -> None:
    env = hub_env(install_hub_clip(tmp_path / "hub", text=False))
    rows = {row["name"]: row for row in cli("models", "--json", env=env).json_lines()}
    assert rows["clip-vit-b32"]["cached"] is False  # the text tower is missing


# -- HTTP --------------------------------------------------------------------------------


@pytest.fixture
def api(clip_coll: Path) -> Iterator[TestClient]:
    coll = Collection.open(clip_coll)
    yield TestClient(create_app(coll, ServerSettings()), raise_server_exceptions=False)
    coll.close()


def _search(api: TestClient, body: dict[str, Any]) -> Any:
    return api.post(
        "/search", content=json.dumps(body), headers={"content-type": "application/json"}
    )


def test_http_text_and_terms(api: TestClient) -> None:
    r = _search(api, {"text": "green", "k": 1})
    assert r.status_code == 200, r.text
    assert Path(r.json()["results"][0]["id"]).stem == "green"
    assert r.json()["query"] == {"text": "green"}
    ids = [Path(h["id"]).stem for h in _search(api, {"text": "red", "k": 5}).json()["results"]]
    red_id = _search(api, {"text": "red", "k": 1}).json()["results"][0]["id"]
    assert ids[0] == "red"
    vec = [0.0] * 512
    vec[2] = 1.0
    body = {"terms": [{"id": red_id}, {"vector": vec}], "k": 3}
    r = _search(api, body)
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert Path(hits[0]["id"]).stem == "purple" and red_id not in [h["id"] for h in hits]
    assert r.json()["query"]["terms"][1] == {"vector": True, "weight": 1.0}
    r = _search(
        api, {"terms": [{"text": "purple red", "weight": 2}, {"text": "blue", "weight": -1}]}
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"terms": [{"text": "red"}, {"text": "red", "weight": -1}]}, 400, "zero vector"),
        ({"terms": [{"text": "red", "weight": "heavy"}]}, 422, ""),
        ({"terms": [{"text": "red", "weight": 0}]}, 400, "non-zero"),
        ({"terms": [{"path": "/etc/passwd"}]}, 422, ""),
        ({"terms": [{"text": "red", "id": "x"}]}, 400, "exactly one"),
        ({"terms": []}, 400, "no terms"),
        ({"text": "red", "id": "x"}, 400, "exactly one"),
        ({"text": ""}, 400, "non-empty"),
    ],
)
def test_http_bad_input(api: TestClient, body: dict[str, Any], status: int, message: str) -> None:
    r = _search(api, body)
    assert r.status_code == status, r.text
    assert message in r.text


def test_http_no_text_tower(tmp_path: Path) -> None:
    images = write_colour_images(tmp_path / "images")
    model = write_local_model(tmp_path / "m", make_pooling_model(dim=8))
    with Collection.open(tmp_path / "c", model_path=model) as coll:
        coll.add([images], workers=0)
        client = TestClient(create_app(coll, ServerSettings()), raise_server_exceptions=False)
        r = _search(client, {"text": "red"})
        assert client.get("/health").json()["text_search"] is False
    assert r.status_code == 400
    assert "no text tower" in r.text and "clip-vit-b32" in r.text


def test_http_hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_hub_clip(use_offline_hub(monkeypatch, tmp_path / "hub"))
    images = write_colour_images(tmp_path / "images")
    with Collection.open(tmp_path / "c", "clip-vit-b32") as coll:
        coll.add([images], workers=0)
        client = TestClient(create_app(coll, ServerSettings()), raise_server_exceptions=False)
        r = _search(client, {"text": "blue", "k": 1})
    assert r.status_code == 200, r.text
    assert Path(r.json()["results"][0]["id"]).stem == "blue"


def test_health_says_whether_text_search_works(clip_coll: Path, tmp_path: Path) -> None:
    """/health's ``text_search`` (the web page's text box) comes from the model record: a
    --model-path folder with text/model.onnx, or a registry model with a text tower."""
    from lookalike.models.loader import has_text_tower

    with Collection.open(clip_coll) as coll:
        client = TestClient(create_app(coll, ServerSettings()))
        assert client.get("/health").json()["text_search"] is True
        record = dict(coll.config["model"])
    assert has_text_tower({**record, "model_path": str(tmp_path / "nowhere")}) is False
    assert has_text_tower({"name": "clip-vit-b32", "metric": "cosine", "dim": 512}) is True
    assert has_text_tower({"name": "dinov2-small", "metric": "cosine", "dim": 384}) is False
    assert has_text_tower({"name": "phash", "metric": "hamming", "dim": 64}) is False
