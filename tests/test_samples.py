"""lookalike.samples: the demo's sample set, made from scikit-image's public-domain/CC0 photos."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike import samples
from lookalike.errors import InvalidInput, MissingDependency


def test_layout_and_return_value(sample_set: list[samples.Sample]) -> None:
    assert len(sample_set) == len(samples.PHOTOS) * (1 + len(samples.EDITS))
    out = sample_set[0].path.parents[2]
    expected = set()
    for name in samples.PHOTOS:
        expected.add(out / "originals" / name / "original.jpg")
        expected |= {out / "copies" / name / f"{edit}.jpg" for edit in samples.EDITS}
    assert {s.path for s in sample_set} == expected
    assert set(out.rglob("*")) - {p for p in out.rglob("*") if p.is_dir()} == expected
    for s in sample_set:
        assert s.path.parent.name == s.original  # the folder (label) is the photo's name
        assert s.path.stem == s.edit
        with Image.open(s.path) as image:
            assert image.format == "JPEG"
            assert min(image.size) >= 150


def test_deterministic(sample_set: list[samples.Sample], tmp_path: Path) -> None:
    again = samples.make_sample_set(tmp_path, photos=["camera", "chelsea"])
    assert [(s.original, s.edit) for s in again] == [
        (s.original, s.edit) for s in sample_set if s.original in ("camera", "chelsea")
    ]
    first = {(s.original, s.edit): s.path.read_bytes() for s in sample_set}
    for s in again:
        assert s.path.read_bytes() == first[(s.original, s.edit)], s.path


def test_copies_differ_from_their_original(sample_set: list[samples.Sample]) -> None:
    originals = {s.original: s.path for s in sample_set if s.edit == "original"}
    for s in sample_set:
        if s.edit == "original":
            continue
        with Image.open(originals[s.original]) as a, Image.open(s.path) as b:
            dx, dy = round(a.width * samples.CROP_FRACTION), round(a.height * samples.CROP_FRACTION)
            expected_size = {
                "crop": (a.width - 2 * dx, a.height - 2 * dy),
                "resize": (a.width // 2, a.height // 2),
            }.get(s.edit, a.size)
            assert b.size == expected_size, s.path
            assert b.mode == a.mode
            if b.size != a.size:
                continue
            before, after = np.asarray(a, np.float32), np.asarray(b, np.float32)
        diff = np.abs(after - before)
        assert diff.mean() > 1.0, s.path
        if s.edit == "brighter":
            assert after.mean() > before.mean() + 5, s.path
        if s.edit == "caption":  # the text is near the bottom
            h = diff.shape[0]
            assert diff[-h // 8 :].mean() > 3 * diff[: h // 2].mean(), s.path
        if s.edit == "recompress":
            assert s.path.stat().st_size < originals[s.original].stat().st_size / 3, s.path


def test_only_public_domain_or_cc0_photos_from_the_wheel() -> None:
    """Each photo's licence as scikit-image's docstring states it, and it is in the wheel
    (no download)."""
    data = pytest.importorskip("skimage.data")
    folder = Path(data.__file__).parent
    assert 5 <= len(samples.PHOTOS) <= 12
    for name, info in samples.PHOTOS.items():
        assert info.licence in ("public domain", "CC0")
        doc = " ".join(inspect.getdoc(getattr(data, name)).split())
        statement = "public domain" if info.licence == "public domain" else "CC0"
        assert statement in doc, name
        files = re.findall(r"[\"']data/([\w.]+)[\"']", inspect.getsource(getattr(data, name)))
        assert files and all((folder / f).is_file() for f in files), (name, files)


def test_unknown_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown sample photo"):
        samples.make_sample_set(tmp_path, photos=["lena"])
    with pytest.raises(InvalidInput, match="unknown edit"):
        samples.edit_image(Image.new("RGB", (10, 10)), "rotate")


def test_missing_scikit_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes `import skimage...` fail
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(MissingDependency, match="pip install scikit-image") as info:
        samples.load_photo("chelsea")
    assert "\n" not in str(info.value)


def test_module_import_is_light_and_runs_as_a_script(tmp_path: Path) -> None:
    code = "import sys, lookalike.samples; assert 'skimage' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    pytest.importorskip("skimage")
    out = tmp_path / "set"
    proc = subprocess.run(
        [sys.executable, "-m", "lookalike.samples", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    count = len(samples.PHOTOS) * (1 + len(samples.EDITS))
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith(f"wrote {count} images to ")
    assert len(list(out.rglob("*.jpg"))) == count
    usage = subprocess.run(
        [sys.executable, "-m", "lookalike.samples"], capture_output=True, text=True
    )
    assert usage.returncode == 2 and "usage:" in usage.stderr
