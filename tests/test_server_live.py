"""The server under real concurrency (uvicorn in a thread), killed mid-write (a subprocess),
and the ``lookalike serve`` command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

import httpx  # noqa: E402
import imagegen  # noqa: E402
from server_util import GALLERY, live_server, make_collection  # noqa: E402

from lookalike.cli.entry import main  # noqa: E402
from lookalike.collection import Collection  # noqa: E402
from lookalike.server import ServerSettings, create_app  # noqa: E402

KEY = "k3y"
N_GALLERY = sum(len(s) for s in GALLERY.values())


def _jpeg(seed: int) -> bytes:
    return imagegen.encode(imagegen.photo_like(seed, (120, 90)), "JPEG", quality=90)


def test_concurrent_searches_while_adding_and_removing(tmp_path: Path) -> None:
    coll = make_collection(tmp_path)
    stable = (tmp_path / "gallery" / "red" / "1.jpg").read_bytes()
    errors: list[str] = []
    stop = threading.Event()
    counts = {"searches": 0}
    lock = threading.Lock()

    def searcher(n: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if (i + n) % 2:
                        r = c.post("/search", files={"file": ("q.jpg", stable)}, data={"k": "4"})
                        res = r.json()["results"]
                        if r.status_code != 200 or res[0]["id"] != "red/1.jpg":
                            errors.append(f"upload search: {r.status_code} {r.text[:200]}")
                    else:
                        r = c.get("/items/blue/11.jpg/similar", params={"k": 5})
                        res = r.json()["results"]
                        if r.status_code != 200 or len(res) != 5:
                            errors.append(f"id search: {r.status_code} {r.text[:200]}")
                        elif [h["rank"] for h in res] != [1, 2, 3, 4, 5] or any(
                            a["score"] < b["score"] for a, b in zip(res, res[1:], strict=False)
                        ):
                            errors.append(f"torn result: {res}")
                        elif "blue/11.jpg" in {h["id"] for h in res}:
                            errors.append("the query item came back")
                except Exception as exc:  # noqa: BLE001 - recorded, asserted below
                    errors.append(f"{type(exc).__name__}: {exc}")
                with lock:
                    counts["searches"] += 1

    added: list[str] = []
    removed: list[str] = []

    def writer() -> None:
        with httpx.Client(base_url=base, timeout=30, headers={"X-API-Key": KEY}) as c:
            for i in range(12):
                data = _jpeg(500 + i)
                r = c.post("/items", files={"files": ("n.jpg", data)}, data={"ids": f"w-{i}"})
                if r.status_code != 201:
                    errors.append(f"add: {r.status_code} {r.text[:200]}")
                    continue
                added.append(f"w-{i}")
                # read-your-writes: the new item is searchable at once, whole
                r = c.post("/search", files={"file": ("n.jpg", data)}, data={"k": "1"})
                if r.status_code != 200 or r.json()["results"][0]["id"] != f"w-{i}":
                    errors.append(f"new item not found: {r.text[:200]}")
                if i % 2:
                    d = c.delete(f"/items/w-{i - 1}")
                    if d.status_code != 200:
                        errors.append(f"delete: {d.status_code} {d.text[:200]}")
                    removed.append(f"w-{i - 1}")

    app = create_app(coll, ServerSettings(api_key=KEY))
    with live_server(app) as base:
        threads = [threading.Thread(target=searcher, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        w = threading.Thread(target=writer)
        w.start()
        w.join(60)
        stop.set()
        for t in threads:
            t.join(30)
        health = httpx.get(base + "/health").json()
    assert errors == []
    assert counts["searches"] >= 20
    expected = N_GALLERY + len(added) - len(removed)
    assert len(added) == 12 and len(removed) == 6
    assert health["items"] == expected
    coll.close()
    # what is on disk is what the server acknowledged
    with Collection.open(coll.root, readonly=True) as again:
        assert len(again) == expected
        ids = {i.id for i in again.items()}
        assert set(added) - set(removed) <= ids and not set(removed) & ids
        assert again.index.info()["current"]
        assert len(again.index.store()) == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(root: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "lookalike", "serve", "--collection", str(root)]
    return subprocess.Popen(
        [*cmd, "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read() if proc.stderr else ''!r}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


def test_killed_server_leaves_a_consistent_collection(tmp_path: Path) -> None:
    coll = make_collection(tmp_path)
    root = coll.root
    coll.close()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(root, port, "--api-key", KEY)
    acked: list[tuple[str, bytes]] = []
    try:
        _wait_up(base, proc)
        stop = threading.Event()

        def adder() -> None:
            with httpx.Client(base_url=base, timeout=10, headers={"X-API-Key": KEY}) as c:
                i = 0
                while not stop.is_set():
                    data = _jpeg(1000 + i)
                    try:
                        r = c.post(
                            "/items", files={"files": ("a.jpg", data)}, data={"ids": f"k{i}"}
                        )
                    except httpx.TransportError:
                        return  # killed mid-request
                    if r.status_code == 201:
                        acked.append((f"k{i}", data))
                    i += 1

        t = threading.Thread(target=adder)
        t.start()
        deadline = time.monotonic() + 10
        while len(acked) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        stop.set()
        t.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(acked) >= 5
    with Collection.open(root) as again:
        ids = {i.id for i in again.items()}
        assert {i for i, _ in acked} <= ids  # every acknowledged add survived
        assert len(ids) - N_GALLERY - len(acked) in (0, 1)  # at most the one in flight
        assert len(again.index.store()) == len(again)  # index matches the catalog
        for item_id, data in acked[-3:]:
            assert again.search(data, k=1)[0].id == item_id
        for item in again.items():
            if item.source == "uploads":
                assert Path(item.path or "").is_file()


def test_serve_command_runs_and_answers(tmp_path: Path) -> None:
    coll = make_collection(tmp_path)
    coll.close()
    port = _free_port()
    proc = _serve(coll.root, port)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(base, proc)
        r = httpx.get(base + "/items/red/2.jpg/similar", params={"k": 3})
        assert r.status_code == 200 and len(r.json()["results"]) == 3
        assert httpx.get(base + "/docs").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_help_lists_the_safe_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "127.0.0.1", "--port", "--api-key", "--api-key-all", "--allow-urls"):
        assert flag in out
    assert "--cors-origin" in out and "--max-upload-mb" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--collection", "{tmp}/missing"], "no collection"),
        (["--collection", "{coll}", "--api-key-all"], "--api-key-all needs --api-key"),
        (["--collection", "{coll}", "--cors-origin", "*"], "needs --api-key"),
    ],
)
def test_serve_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    coll = make_collection(tmp_path)
    coll.close()
    argv = [a.format(tmp=tmp_path, coll=coll.root) for a in args]
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_serve_rejects_bad_ports(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--port", port])
    assert exc.value.code == 2
    assert "port" in capsys.readouterr().err


def test_cli_import_stays_light() -> None:
    code = "import sys, lookalike.cli.entry as c; c.build_parser(); print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'pydantic') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
