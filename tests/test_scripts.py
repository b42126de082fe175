"""scripts/need_chromium.sh: chromium is installed only in CI or when asked, never unasked.

The script runs with PATH holding only stubs: ``apt-get`` records its arguments, ``id``
says which user we are, so nothing is ever installed by the test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "need_chromium.sh"


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def run_script(
    tmp_path: Path, env: dict[str, str], *, uid: int = 0, apt_ok: bool = True
) -> tuple[int, str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "apt-calls"
    _stub(bin_dir, "apt-get", f'echo "$*" >> {calls}\nexit {0 if apt_ok else 100}')
    _stub(bin_dir, "id", f"echo {uid}")
    full_env = {"PATH": str(bin_dir), "CHROMIUM": str(tmp_path / "no-chromium"), **env}
    proc = subprocess.run(
        ["/bin/bash", str(SCRIPT)], capture_output=True, text=True, env=full_env, timeout=30
    )
    recorded = calls.read_text().splitlines() if calls.exists() else []
    return proc.returncode, proc.stdout + proc.stderr, recorded


@pytest.mark.parametrize(
    "env",
    [{}, {"CI": "false"}, {"CI": ""}, {"LOOKALIKE_INSTALL_CHROMIUM": "0"}],
)
def test_not_installed_unasked_even_as_root(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, calls = run_script(tmp_path, env)
    assert code == 0 and calls == []
    assert "browser test will be skipped" in out
    assert "LOOKALIKE_INSTALL_CHROMIUM=1" in out


@pytest.mark.parametrize("env", [{"CI": "true"}, {"LOOKALIKE_INSTALL_CHROMIUM": "1"}])
def test_installed_in_ci_or_when_asked(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, calls = run_script(tmp_path, env)
    assert code == 0
    assert calls == ["install -y -q chromium"]
    assert "installing chromium" in out


def test_asked_but_not_root_says_why(tmp_path: Path) -> None:
    code, out, calls = run_script(tmp_path, {"LOOKALIKE_INSTALL_CHROMIUM": "1"}, uid=1000)
    assert code == 0 and calls == []
    assert "needs root" in out and "browser test will be skipped" in out


def test_failed_install_retries_after_update_and_never_fails_the_run(tmp_path: Path) -> None:
    code, out, calls = run_script(tmp_path, {"CI": "true"}, apt_ok=False)
    assert code == 0
    assert calls == ["install -y -q chromium", "update -q"]  # update failed too: give up
    assert "could not be installed" in out


def test_nothing_to_do_when_chromium_is_there(tmp_path: Path) -> None:
    browser = tmp_path / "chromium"
    _stub(tmp_path, "chromium", "exit 0")
    code, out, calls = run_script(tmp_path, {"CI": "true", "CHROMIUM": str(browser)})
    assert code == 0 and calls == [] and out == ""


def test_test_sh_uses_the_helper_and_no_apt_get_of_its_own() -> None:
    text = (SCRIPT.parent / "test.sh").read_text()
    assert "scripts/need_chromium.sh" in text
    assert "apt-get" not in text
