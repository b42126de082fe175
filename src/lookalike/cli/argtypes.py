"""argparse ``type=`` validators shared by every command: one clear line per bad value."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _number(
    cast: Callable[[str], float], noun: str, low: float | None, high: float | None, strict: bool
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if low is not None and (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(
                f"{text!r} must be {'positive' if strict and low == 0 else f'{low:g} or more'}"
            )
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {high:g}")
        return value

    return parse


def positive_int(text: str) -> int:
    return int(_number(int, "a whole number", 0, None, True)(text))


def non_negative_int(text: str) -> int:
    return int(_number(int, "a whole number", 0, None, False)(text))


def non_negative_float(text: str) -> float:
    return _number(float, "a number", 0, None, False)(text)


def positive_float(text: str) -> float:
    return _number(float, "a number", 0, None, True)(text)


def score(text: str) -> float:
    """A similarity score: -1 to 1."""
    value = _number(float, "a number", -1, 1, False)(text)
    return value


def port(text: str) -> int:
    try:
        return int(_number(int, "a port number", 1, 65535, False)(text))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None


def int_or_auto(text: str) -> int | str:
    """An index knob: a whole number (ranges are checked by the library) or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (or auto)") from None


def number(text: str) -> float:
    return _number(float, "a number", None, None, False)(text)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, shared by index, search and serve."""
    parser.add_argument(
        "--device",
        metavar="DEVICE",
        help="where the model runs: cpu, cuda, cuda:N or auto (default: $LOOKALIKE_DEVICE, "
        "else auto = CUDA when onnxruntime-gpu or torch sees a GPU, else the CPU); "
        "cuda never falls back to the CPU",
    )


def add_filter_arguments(parser: argparse.ArgumentParser, *, remembered: bool) -> None:
    """``--min-side``, ``--max-aspect`` and ``--max-megapixels``, shared by index and
    spark-index; ``remembered``: the collection stores them (index)."""
    note = (
        "; remembered by the collection (0 = off; a change is re-applied to every item)"
        if remembered
        else ""
    )
    parser.add_argument(
        "--min-side",
        type=non_negative_int if remembered else positive_int,
        metavar="PX",
        help="skip images whose shorter side is below PX" + note,
    )
    parser.add_argument(
        "--max-aspect",
        type=non_negative_float if remembered else positive_float,
        metavar="R",
        help="skip images whose long side is more than R times their short side "
        "(wide banners and tall strips alike; R >= 1)" + note,
    )
    parser.add_argument(
        "--max-megapixels",
        type=positive_float,
        default=100.0,
        metavar="MP",
        help="decompression-bomb limit (default 100)",
    )
