"""The web page in a real browser: Playwright drives Debian's chromium, headless."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
pytest.importorskip("fastapi")
if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is not installed (apt-get install -y chromium; "
        "LOOKALIKE_INSTALL_CHROMIUM=1 scripts/test.sh does it, and CI)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

from server_util import live_server, make_collection  # noqa: E402

from lookalike.server import ServerSettings, create_app  # noqa: E402

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture
def site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    marker = request.node.get_closest_marker("server_settings")
    settings = ServerSettings(**(marker.kwargs if marker else {}))
    coll = make_collection(tmp_path)
    with live_server(create_app(coll, settings)) as base:
        yield base, tmp_path / "gallery"
    coll.close()


@pytest.fixture
def page(site: tuple[str, Path]) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            # a phone-sized screen
            context = browser.new_context(viewport={"width": 390, "height": 844})
            pg = context.new_page()
            pg.set_default_timeout(15_000)
            outside: list[str] = []
            pg.on(
                "request",
                lambda r: (
                    None
                    if r.url.startswith((site[0], "blob:" + site[0]))
                    else outside.append(r.url)
                ),
            )
            pg.goto(site[0] + "/")
            pg.wait_for_selector("body[data-ready='1']")
            yield pg
            assert outside == []  # every asset came from the app itself
        finally:
            browser.close()


def _wait(pg: Any, expression: str, timeout: float = 15.0) -> None:
    """Poll a JS expression from Python (the page's CSP forbids string eval in the page)."""
    deadline = time.monotonic() + timeout
    while not pg.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def _grid(pg: Any) -> list[dict[str, str]]:
    result: list[dict[str, str]] = pg.eval_on_selector_all(
        "#results .result",
        """els => els.map(e => ({
            id: e.dataset.id,
            score: e.querySelector('.score').textContent,
            label: e.querySelector('.label').textContent,
            loaded: String(e.querySelector('img').complete && e.querySelector('img').naturalWidth > 0),
        }))""",
    )
    return result


def _api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


def test_upload_then_more_like_this(page: Any, site: tuple[str, Path]) -> None:
    base, gallery = site
    page.set_input_files("#file-input", str(gallery / "red" / "3.jpg"))
    _wait(page, "document.querySelectorAll('#results .result').length > 0")
    grid = _grid(page)
    assert grid[0]["id"] == "red/3.jpg"
    assert grid[0]["score"] == "1.000" and grid[0]["label"] == "red"
    assert len(grid) == 8  # k defaults to 12; the collection has 8
    _wait(
        page,
        "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)",
    )
    # the layout fits a phone screen: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    page.click("#results .result[data-id='red/3.jpg'] button")
    _wait(page, "document.getElementById('query-title').textContent === 'red/3.jpg'")
    _wait(
        page,
        "document.querySelector('#results .result') &&"
        " document.querySelector('#results .result').dataset.id !== 'red/3.jpg'",
    )
    expected = _api(base, "/items/red%2F3.jpg/similar?k=12")["results"]
    grid = _grid(page)
    assert [g["id"] for g in grid] == [h["id"] for h in expected]
    assert "red/3.jpg" not in {g["id"] for g in grid}
    assert [g["score"] for g in grid] == [f"{h['score']:.3f}" for h in expected]


def test_drop_k_label_and_errors(page: Any, site: tuple[str, Path]) -> None:
    # k and the label filter
    page.fill("#k-input", "3")
    page.fill("#label-input", "blue")
    page.set_input_files("#file-input", str(site[1] / "red" / "1.jpg"))
    _wait(page, "document.querySelectorAll('#results .result').length > 0")
    grid = _grid(page)
    assert len(grid) == 3 and {g["label"] for g in grid} == {"blue"}

    # drag and drop a file onto the drop zone
    page.fill("#k-input", "")
    page.fill("#label-input", "")
    page.evaluate(
        """async () => {
            const blob = await (await fetch('/items/blue%2F12.jpg/image')).blob();
            const dt = new DataTransfer();
            dt.items.add(new File([blob], 'dropped.jpg', {type: blob.type}));
            const zone = document.getElementById('drop');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        }"""
    )
    _wait(
        page,
        "document.getElementById('query-title').textContent === 'dropped.jpg' &&"
        " document.querySelector('#results .result')"
        " && document.querySelector('#results .result').dataset.id === 'blue/12.jpg'"
        " && document.querySelector('#results .result .score').textContent === '1.000'",
    )
    assert _grid(page)[0]["score"] == "1.000"

    # a file that is not an image: a clear message, no results
    bad = site[1].parent / "notes.jpg"
    bad.write_text("just text")
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("#status.error")
    assert "not-an-image" in page.text_content("#status")
    assert _grid(page) == []
    # URL fetching is off: the URL field is hidden
    assert page.is_hidden("#url-form")


# The URL guard refuses loopback addresses (tests/test_server.py checks that); the test-only
# override lets the page fetch an image from this same loopback server.
@pytest.mark.server_settings(allow_urls=True, allow_private_for_tests=True)
def test_paste_an_image_url(page: Any, site: tuple[str, Path]) -> None:
    assert page.is_visible("#url-form")
    page.fill("#url-input", site[0] + "/items/blue%2F13.jpg/image")
    page.click("#url-form button")
    _wait(
        page,
        "document.querySelector('#results .result')"
        " && document.querySelector('#results .result').dataset.id === 'blue/13.jpg'",
    )
    assert _grid(page)[0]["score"] == "1.000"


LONG_IDS = [
    "catalogue/" + "a-very-long-product-name-without-any-break" * 4 + ".jpg",
    "x" * 200,
    "red/" + "ü" * 90 + ".jpg",
]


def test_no_sideways_scroll_at_any_width_with_long_ids(page: Any, site: tuple[str, Path]) -> None:
    import imagegen

    base = site[0]
    for n, item_id in enumerate(LONG_IDS):
        data = imagegen.encode(imagegen.photo_like(700 + n, (120, 90)), "JPEG", quality=90)
        boundary = "lookalike-test"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="ids"\r\n\r\n'
                f'{item_id}\r\n--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        req = urllib.request.Request(
            base + "/items",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            assert resp.status == 201
    page.set_input_files("#file-input", str(site[1] / "red" / "3.jpg"))
    _wait(page, "document.querySelectorAll('#results .result').length === 11")
    _wait(page, "document.querySelector('#results img').naturalWidth > 0")  # the rest: lazy
    for width in (1280, 768, 390, 360):
        page.set_viewport_size({"width": width, "height": 800})
        time.sleep(0.1)
        sizes = page.evaluate(
            """() => ({
                scroll: document.documentElement.scrollWidth,
                inner: window.innerWidth,
                right: Math.max(...[...document.querySelectorAll('#results .result')]
                    .map(e => e.getBoundingClientRect().right)),
                columns: new Set([...document.querySelectorAll('#results .result')]
                    .map(e => Math.round(e.getBoundingClientRect().left))).size,
            })"""
        )
        assert sizes["scroll"] <= sizes["inner"], (width, sizes)
        assert sizes["right"] <= sizes["inner"], (width, sizes)
        assert sizes["columns"] >= (2 if width < 500 else 3), (width, sizes)
    # the long id as the query title wraps too
    page.click(f"#results .result[data-id='{LONG_IDS[1]}'] button")
    _wait(page, f"document.getElementById('query-title').textContent === '{LONG_IDS[1]}'")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
