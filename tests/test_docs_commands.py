"""Commands we tell users to run must exist in the installed tools."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "where",
    ["src", "docs", "README.md"],
)
def test_no_huggingface_cli(where: str) -> None:
    """huggingface_hub 1.x removed `huggingface-cli`; its command is `hf`."""
    root = REPO / where
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.suffix in (".py", ".md")]
    found = [
        f"{p.relative_to(REPO)}:{n}"
        for p in files
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "huggingface-cli" in line
    ]
    assert found == []


def test_hf_download_options_we_print_exist() -> None:
    """Every option of the `hf download` commands in our messages is one the installed CLI has."""
    pytest.importorskip("huggingface_hub")
    import inspect

    from huggingface_hub.cli.download import download

    known = {"--" + name.replace("_", "-") for name in inspect.signature(download).parameters}
    used = set()
    for path in (REPO / "src").rglob("*.py"):
        for command in re.findall(r"hf download [^\"'\n]*", path.read_text(encoding="utf-8")):
            used |= set(re.findall(r"--[a-z-]+", command))
    assert used and used <= known, used - known
