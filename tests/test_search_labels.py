"""`search --label`: an unknown label is an error that names the nearest labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike import Collection
from lookalike.cli.entry import main
from lookalike.errors import QueryError, UnknownLabel

LABELS = ["hat", "dress", "shirt", "shoes", "skirt", "hat", "dress", None]


def labelled(tmp_path: Path) -> Path:
    root = tmp_path / "c"
    rng = np.random.default_rng(0)
    with Collection.open_vectors(root, 8) as coll:
        coll.add_vectors(
            [f"i{n}" for n in range(len(LABELS))],
            rng.standard_normal((len(LABELS), 8)),
            labels=LABELS,
        )
    return root


def test_unknown_label_raises_a_typed_error_naming_the_nearest(tmp_path: Path) -> None:
    root = labelled(tmp_path)
    with Collection.open(root) as coll:
        with pytest.raises(UnknownLabel) as caught:
            coll.search("id:i0", k=3, label="shirts")
        assert isinstance(caught.value, QueryError)
        message = str(caught.value)
        assert "unknown label 'shirts'" in message
        assert "nearest: shirt, skirt" in message or "nearest: shirt" in message
        assert "5 labels" in message and "\n" not in message
        # a known label with nothing left after the filters is no error: just no hits
        assert coll.search("id:i0", k=3, label="hat", threshold=1.0) == []
        assert [h.label for h in coll.search("id:i1", k=3, label="hat")] == ["hat", "hat"]
        with pytest.raises(UnknownLabel, match="none of them close to 'zzz'"):
            coll.search("id:i0", label="zzz")


def test_cli_unknown_label_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = labelled(tmp_path)
    assert main(["search", "id:i0", "--label", "shirts", "--collection", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "unknown label 'shirts'" in captured.err and "nearest: shirt" in captured.err
    assert "5 labels" in captured.err
    assert main(["search", "id:i1", "--label", "hat", "--collection", str(root)]) == 0
