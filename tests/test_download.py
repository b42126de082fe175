"""Tests for lookalike.ingest.download against a local HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_server import LocalHTTPServer

from lookalike.errors import DownloadError, InvalidInput
from lookalike.ingest.download import Downloader, DownloadOptions, DownloadResult, fetch_url

FAST = DownloadOptions(workers=4, timeout=3.0, retries=2, backoff=0.01)


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


FILES = {f"img{i}.jpg": payload(1000 + i * 37, i) for i in range(20)}
FILES["big.png"] = payload(300_000, 7)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer(FILES) as srv:
        yield srv


def run(downloader: Downloader, items: list[tuple[str, str]]) -> dict[str, DownloadResult]:
    results = list(downloader.fetch_many(items))
    assert len(results) == len(items)
    return {r.id: r for r in results}


def no_leftovers(cache: Path) -> bool:
    return not any(p.name.endswith(".part") for p in cache.iterdir())


# --------------------------------------------------------------------------- basics


def test_parallel_fetch_and_cached_second_run(server: LocalHTTPServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    dl = Downloader(cache, FAST)
    items = [(name.split(".")[0], server.url(name)) for name in FILES]
    results = run(dl, items)
    for id_, url in items:
        res = results[id_]
        assert res.error is None and res.ok and not res.cached
        assert res.path == dl.target_path(id_, url) and res.path.parent == cache
        assert res.path.read_bytes() == FILES[url.rsplit("/", 1)[1]]
    assert all(server.count(name) == 1 for name in FILES)
    assert no_leftovers(cache)

    before = server.total_requests
    again = run(Downloader(cache, FAST), items)
    assert server.total_requests == before  # zero requests
    assert all(r.cached and r.ok for r in again.values())


def test_downloads_run_in_parallel(server: LocalHTTPServer, tmp_path: Path) -> None:
    server.files.update({f"s{i}.jpg": b"abcd" for i in range(4)})
    dl = Downloader(tmp_path, DownloadOptions(workers=4, timeout=5, retries=0))
    start = time.monotonic()
    results = run(dl, [(f"s{i}", server.url(f"slow/s{i}.jpg?delay=0.1")) for i in range(4)])
    elapsed = time.monotonic() - start
    assert all(r.ok for r in results.values())
    assert elapsed < 1.2  # sequentially it would take 4 x 0.4 s


def test_redirect_is_followed(server: LocalHTTPServer, tmp_path: Path) -> None:
    res = run(Downloader(tmp_path, FAST), [("r", server.url("redirect/img1.jpg"))])["r"]
    assert res.ok and res.path is not None and res.path.read_bytes() == FILES["img1.jpg"]


def test_duplicate_ids_fetched_once(server: LocalHTTPServer, tmp_path: Path) -> None:
    url = server.url("img2.jpg")
    results = list(Downloader(tmp_path, FAST).fetch_many([("d", url), ("d", url), ("d", url)]))
    assert len(results) == 3 and all(r.ok for r in results)
    assert sum(not r.cached for r in results) == 1
    assert server.count("img2.jpg") == 1


def test_closing_early_cancels_downloads_in_progress(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    dl = Downloader(tmp_path, DownloadOptions(workers=2, timeout=30, retries=0))
    items = [(f"s{i}", server.url(f"slow/img{i}.jpg?delay=0.02")) for i in range(10)]
    start = time.monotonic()
    gen = dl.fetch_many(items)
    gen.close()  # before the first result: nothing is started
    assert server.total_requests == 0
    gen = dl.fetch_many([("a", server.url("img0.jpg")), *items])
    assert next(gen).id == "a"
    while server.total_requests < 3:  # both workers are now in a slow download
        time.sleep(0.01)
    time.sleep(0.1)
    gen.close()
    deadline = time.monotonic() + 2
    while any(t.name.startswith("lookalike-download") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "download threads still running"
        time.sleep(0.01)
    assert time.monotonic() - start < 3
    parts = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part"))
    assert parts == ["s0.jpg.part", "s1.jpg.part"]  # kept for resuming


# --------------------------------------------------------------------------- resume


def test_resume_part_with_range(server: LocalHTTPServer, tmp_path: Path) -> None:
    data = FILES["big.png"]
    dl = Downloader(tmp_path, FAST)
    url = server.url("big.png")
    target = dl.target_path("big", url)
    part = target.with_name(target.name + ".part")
    part.write_bytes(data[:100_000])
    res = run(dl, [("big", url)])["big"]
    assert res.ok and not res.cached
    (request,) = server.requests_for("big.png")
    assert request.header("Range") == "bytes=100000-"
    assert target.read_bytes() == data
    assert not part.exists()


def test_dropped_connection_leaves_part_then_resumes(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    data = FILES["big.png"]
    url = server.url("drop/big.png?after=120000")
    no_retry = Downloader(tmp_path, DownloadOptions(timeout=3, retries=0))
    res = run(no_retry, [("big", url)])["big"]
    assert not res.ok and res.error is not None and "incomplete" in res.error
    target = no_retry.target_path("big", url)
    part = target.with_name(target.name + ".part")
    assert part.read_bytes() == data[:120_000] and not target.exists()

    res = run(Downloader(tmp_path, FAST), [("big", url)])["big"]
    assert res.ok
    first, second = server.requests_for("drop/big.png")
    assert first.header("Range") is None
    assert second.header("Range") == "bytes=120000-"
    assert target.read_bytes() == data and not part.exists()


def test_drop_then_retry_resumes_within_one_run(server: LocalHTTPServer, tmp_path: Path) -> None:
    res = run(Downloader(tmp_path, FAST), [("b", server.url("drop/big.png"))])["b"]
    assert res.ok and res.path is not None and res.path.read_bytes() == FILES["big.png"]
    assert [r.header("Range") for r in server.requests_for("drop/big.png")] == [
        None,
        "bytes=150000-",
    ]


def test_server_ignoring_range_starts_over(server: LocalHTTPServer, tmp_path: Path) -> None:
    dl = Downloader(tmp_path, FAST)
    url = server.url("norange/img3.jpg")
    target = dl.target_path("n", url)
    target.with_name(target.name + ".part").write_bytes(b"garbage that is not the start")
    res = run(dl, [("n", url)])["n"]
    assert res.ok
    assert server.requests_for("norange/img3.jpg")[0].header("Range") is not None
    assert target.read_bytes() == FILES["img3.jpg"]


def test_complete_part_is_finished_on_416(server: LocalHTTPServer, tmp_path: Path) -> None:
    dl = Downloader(tmp_path, FAST)
    url = server.url("img4.jpg")
    target = dl.target_path("c", url)
    target.with_name(target.name + ".part").write_bytes(FILES["img4.jpg"])
    res = run(dl, [("c", url)])["c"]
    assert res.ok and target.read_bytes() == FILES["img4.jpg"]
    assert server.count("img4.jpg") == 1


# --------------------------------------------------------------------------- failures


def test_retry_after_500s(server: LocalHTTPServer, tmp_path: Path) -> None:
    res = run(Downloader(tmp_path, FAST), [("f", server.url("flaky/2/img5.jpg"))])["f"]
    assert res.ok and res.path is not None and res.path.read_bytes() == FILES["img5.jpg"]
    assert server.count("flaky/2/img5.jpg") == 3


def test_429_is_retried_and_gives_up_after_retries(server: LocalHTTPServer, tmp_path: Path) -> None:
    results = run(
        Downloader(tmp_path, FAST),
        [("a", server.url("flaky/1/img6.jpg?status=429")), ("b", server.url("status/503"))],
    )
    assert results["a"].ok and server.count("flaky/1/img6.jpg") == 2
    assert results["b"].error == "HTTP 503 Service Unavailable (after 3 attempts)"
    assert server.count("status/503") == 3


def test_no_retry_after_404(server: LocalHTTPServer, tmp_path: Path) -> None:
    results = run(
        Downloader(tmp_path, FAST),
        [("a", server.url("missing.jpg")), ("b", server.url("status/403"))],
    )
    assert results["a"].error is not None and "HTTP 404" in results["a"].error
    assert results["b"].error is not None and "HTTP 403" in results["b"].error
    assert results["a"].path is None and not results["a"].cached
    assert server.count("missing.jpg") == 1 and server.count("status/403") == 1
    assert list(tmp_path.iterdir()) == []


def test_timeout_on_trickle(server: LocalHTTPServer, tmp_path: Path) -> None:
    dl = Downloader(tmp_path, DownloadOptions(timeout=0.5, retries=0))
    start = time.monotonic()
    results = run(
        dl,
        [
            ("body", server.url("slow/img7.jpg?delay=0.05")),
            ("head", server.url("slowheaders?delay=0.05")),
        ],
    )
    elapsed = time.monotonic() - start
    for res in results.values():
        assert res.error is not None and "timed out" in res.error
    assert elapsed < 2.0


def test_max_bytes(server: LocalHTTPServer, tmp_path: Path) -> None:
    dl = Downloader(tmp_path, DownloadOptions(max_bytes=100_000, retries=2, backoff=0.01))
    start = time.monotonic()
    results = run(
        dl,
        [
            ("huge", server.url("huge")),
            ("big", server.url("big.png")),
            ("stream", server.url("nolength/big.png")),
            ("small", server.url("img8.jpg")),
        ],
    )
    assert time.monotonic() - start < 3
    for id_ in ("huge", "big", "stream"):
        error = results[id_].error
        assert error is not None and error.startswith("too large"), (id_, error)
    assert results["small"].ok
    assert server.count("huge") == 1  # not retried
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.jpg"]


def test_unsupported_scheme_and_bad_urls(tmp_path: Path) -> None:
    results = run(
        Downloader(tmp_path, FAST),
        [
            ("a", "ftp://example.com/a.jpg"),
            ("b", "file:///etc/passwd"),
            ("c", "not a url"),
            ("d", ""),
        ],
    )
    for res in results.values():
        assert res.error is not None and not res.ok
    assert "unsupported URL scheme" in (results["a"].error or "")
    assert "unsupported URL scheme" in (results["b"].error or "")


def test_connection_refused_is_an_error_result(tmp_path: Path) -> None:
    with LocalHTTPServer() as srv:
        url = srv.url("a.jpg")
    res = run(
        Downloader(tmp_path, DownloadOptions(retries=1, backoff=0.01, timeout=2)), [("a", url)]
    )["a"]
    assert (
        res.error is not None
        and "connection error" in res.error
        and "after 2 attempts" in res.error
    )


# --------------------------------------------------------------------------- naming


def test_target_path_names(tmp_path: Path) -> None:
    dl = Downloader(tmp_path, FAST)
    assert (
        dl.target_path("B00ABC", "http://h/I/51k0qa%2BXh4L._SY300_.jpg") == tmp_path / "B00ABC.jpg"
    )
    assert dl.target_path("x", "http://h/a/b.JPEG?size=2#f").name == "x.jpeg"
    assert dl.target_path("x", "http://h/a/image").name == "x.img"
    assert dl.target_path("x", "http://h/a/page.php?id=3").name == "x.img"


@pytest.mark.parametrize(
    "unsafe_id",
    [
        "../evil",
        "..",
        ".",
        "a/b",
        "/abs/path",
        "a\\b",
        "CON",
        "x" * 300,
        "über",
        "a\x00b",
        " ",
        "-",
    ],
)
def test_unsafe_ids_stay_inside_cache_dir(tmp_path: Path, unsafe_id: str) -> None:
    dl = Downloader(tmp_path / "cache", FAST)
    path = dl.target_path(unsafe_id, "http://h/a.png")
    assert path.parent == dl.cache_dir
    assert path.name not in (".", "..", "") and "/" not in path.name and "\x00" not in path.name
    assert len(path.name) < 200
    assert path == dl.target_path(unsafe_id, "http://h/a.png")  # deterministic


def test_unsafe_ids_distinct_and_fetched_inside_cache(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    dl = Downloader(cache, FAST)
    ids = ["../evil", "a/b", "a_b", "a?b", "..", "a..b"]
    assert len({dl.target_path(i, "http://h/x.jpg") for i in ids}) == len(ids)
    results = run(dl, [(i, server.url("img9.jpg")) for i in ids])
    assert all(r.ok for r in results.values())
    assert sorted(os.listdir(tmp_path)) == ["cache"]
    assert len(os.listdir(cache)) == len(ids)


# --------------------------------------------------------------------------- fetch_url


def test_fetch_url(server: LocalHTTPServer) -> None:
    assert fetch_url(server.url("img10.jpg")) == FILES["img10.jpg"]
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_url(server.url("nothing.jpg"))
    assert server.count("nothing.jpg") == 1
    with pytest.raises(DownloadError, match="unsupported URL scheme"):
        fetch_url("ftp://example.com/a.jpg")
    with pytest.raises(DownloadError, match="too large"):
        fetch_url(server.url("big.png"), max_bytes=1000)
    with pytest.raises(DownloadError, match="timed out"):
        fetch_url(server.url("slow/img0.jpg?delay=0.05"), timeout=0.3, retries=0)


def test_options_are_validated() -> None:
    with pytest.raises(InvalidInput):
        DownloadOptions(workers=0)
    with pytest.raises(InvalidInput):
        DownloadOptions(timeout=0)


def test_redirect_to_slow_keeps_query_and_times_out(
    server: LocalHTTPServer, tmp_path: Path
) -> None:
    dl = Downloader(tmp_path, DownloadOptions(timeout=0.3, retries=0))
    res = run(dl, [("r", server.url("redirect/slow/img1.jpg?delay=0.05"))])["r"]
    assert res.error is not None and "timed out" in res.error
    assert server.requests_for("slow/img1.jpg")[0].query == {"delay": "0.05"}
