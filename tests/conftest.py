"""Shared fixtures. Tests never touch the network (only 127.0.0.1) nor ../shared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import imagegen
import pytest

if TYPE_CHECKING:
    from lookalike.samples import Sample

# Real services, started by the tests themselves and stopped at the end of the session
# (fault tests stop and restart them): redis-server, and the Milvus standalone server.
pytest_plugins = ["services_redis", "services_milvus"]

# The `photos` fixture's layout: 10 labels x 6 generated photo-like JPEGs.
PHOTO_LABELS = ["dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts"]
PHOTO_LABELS += ["skirt", "t-shirt"]
PHOTOS_PER_LABEL = 6


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub access in tests, ever."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LOOKALIKE_COLLECTION", raising=False)


@pytest.fixture(scope="session")
def _generated_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generated-photos")
    for i, label in enumerate(PHOTO_LABELS):
        for j in range(PHOTOS_PER_LABEL):
            seed = 1000 + i * PHOTOS_PER_LABEL + j
            imagegen.save(imagegen.photo_like(seed, (240, 320)), root / label / f"{seed}.jpg")
    return root


@pytest.fixture
def photos(_generated_photos: Path, tmp_path: Path) -> Path:
    """60 distinct generated photo-like JPEGs (240x320), 6 in each of 10 label folders
    (dress, hat, ... t-shirt), copied for this test: safe to modify."""
    dest = tmp_path / "photos"
    shutil.copytree(_generated_photos, dest)
    return dest


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    """The demo's sample set (lookalike.samples): the public-domain and CC0 photos that
    scikit-image ships, each with five edited copies. Shared by the session: read only."""
    pytest.importorskip("skimage", reason="the sample photos need scikit-image ([dev] extra)")
    from lookalike.samples import make_sample_set

    return make_sample_set(tmp_path_factory.mktemp("samples"))


def _cli_command() -> list[str]:
    script = Path(sys.executable).parent / "lookalike"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "lookalike"]


class CliResult:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., CliResult]:
    """Run the real ``lookalike`` console script; returns code/out/err."""

    def run(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
    ) -> CliResult:
        full_env = dict(os.environ)
        full_env["HF_HUB_OFFLINE"] = "1"
        full_env.pop("LOOKALIKE_COLLECTION", None)
        if env:
            full_env.update(env)
        proc = subprocess.run(
            [*_cli_command(), *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd or tmp_path,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return CliResult(proc)

    return run
