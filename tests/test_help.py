"""`lookalike X --help` says what the code does: every option has help, and the key texts
agree with the code (decode filter, auto index rule, duplicate thresholds)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from lookalike.cli.entry import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_and_positional_of_every_command_has_help() -> None:
    missing = []
    commands = 0
    for path, parser in _parsers(build_parser()):
        commands += 1
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS:
                name = "/".join(action.option_strings) or action.dest
                missing.append(f"lookalike {' '.join(path)} {name}")
    assert commands >= 12  # index, search, info, remove, export, models, serve, duplicates...
    assert not missing, "options without help: " + "; ".join(missing)


def _help(*command: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "lookalike", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "2000", **_env()},
    )
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())  # one line, single spaces


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "COLUMNS"}


def test_index_help_matches_decode_and_planning() -> None:
    from lookalike.errors import ImageRejected
    from lookalike.ingest.decode import DecodeLimits, decode_image
    from lookalike.store import planning

    text = _help("index")
    aspect = re.search(r"--max-aspect R (.*?) --max-megapixels", text)
    assert aspect is not None
    assert "long side" in aspect.group(1) and "short side" in aspect.group(1)
    assert "wide banners" in aspect.group(1) and "tall" in aspect.group(1)
    # ... which is what the filter does: a wide banner and a tall strip are both refused
    limits = DecodeLimits(max_aspect=3)
    for size in ((400, 100), (100, 400)):
        with pytest.raises(ImageRejected, match="aspect"):
            decode_image(_png(*size), limits)
    decode_image(_png(250, 100), limits)

    index = re.search(r"--index \{[^}]*\} (.*?) --max-memory SIZE", text)
    assert index is not None
    assert "HNSW or IVF" not in index.group(1)
    assert f"{planning.AUTO_EXACT_MAX:,}" in index.group(1)
    assert "ivf-sq8" in index.group(1) and "ivf-pq" in index.group(1)
    assert "--max-memory" in index.group(1)
    assert planning.AUTO_ORDER == ("ivf-sq8", "ivf-pq")


def test_duplicates_threshold_help_gives_the_ranges_check_threshold_enforces() -> None:
    from lookalike.dedup.finder import check_threshold
    from lookalike.errors import InvalidInput

    text = _help("duplicates")
    thr = re.search(r"--threshold T (.*?) --hashes \{", text)
    assert thr is not None
    h = thr.group(1)
    assert "exact: not used" in h
    assert "0-64" in h and "default 12" in h
    assert "0-32" in h and "default 8" in h
    assert "-1 to 1" in h and "default 0.95" in h
    assert check_threshold("near", 64) == 64 and check_threshold("near", 0) == 0
    assert check_threshold("near", 32, "phash") == 32
    assert check_threshold("near", None) == 12 and check_threshold("near", None, "phash") == 8
    assert check_threshold("similar", -1.0) == -1.0 and check_threshold("similar", None) == 0.95
    for level, value, hashes in (
        ("near", 65, "all"),
        ("near", 33, "phash"),
        ("similar", 1.01, "all"),
        ("exact", 1, "all"),
    ):
        with pytest.raises(InvalidInput):
            check_threshold(level, value, hashes)
    ev = _help("evaluate", "duplicates")
    assert "0-64" in ev and "-1 to 1" in ev


@pytest.mark.parametrize(
    ("command", "phrases"),
    [
        (("export",), ["OUT file to write", ".npy", "--format"]),
        (("remove",), ["ID id of an item to remove"]),
        (("info",), ["--json print the description as one JSON object"]),
    ],
)
def test_small_commands_describe_their_arguments(
    command: tuple[str, ...], phrases: list[str]
) -> None:
    text = _help(*command)
    for phrase in phrases:
        assert phrase in text, (phrase, text)
