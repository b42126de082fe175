"""The web page in a real browser: Playwright drives Debian's chromium, headless, at 1280,
768 and 360 px wide. Screenshots go to ``tests/artifacts/web/`` (or $LOOKALIKE_ARTIFACTS),
which git ignores; the path is printed."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
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

import imagegen  # noqa: E402
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
WIDTHS = [1280, 768, 360]
ARTIFACTS = Path(os.environ.get("LOOKALIKE_ARTIFACTS", Path(__file__).parent / "artifacts")) / "web"
LONG_TITLE = "An extraordinarily long title " + "without-any-break-" * 12 + "at all"
# Extra items (added over HTTP): 20 "green" ones with metadata, and three with long ids.
GREEN = [f"green/{n:02d}.jpg" for n in range(20)]
LONG_IDS = [
    "catalogue/" + "a-very-long-product-name-without-any-break" * 4 + ".jpg",
    "x" * 200,
    "red/" + "ü" * 90 + ".jpg",
]
TOTAL = 8 + len(GREEN) + len(LONG_IDS)  # 31: more than one browse page of 24


NewItem = tuple[str, str | None, dict[str, Any], int]


def _post_items(base: str, items: list[NewItem]) -> None:
    """POST /items: (id, label, metadata, seed) each, in one multipart request."""
    boundary = "lookalike-test"
    parts: list[bytes] = []

    def field(name: str, value: str) -> None:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(head.encode() + value.encode() + b"\r\n")

    for item_id, label, meta, _seed in items:
        field("ids", item_id)
        field("labels", label or "")
        field("metadata", json.dumps(meta))
    for _item_id, _label, _meta, seed in items:
        data = imagegen.encode(imagegen.photo_like(seed, (120, 90)), "JPEG", quality=90)
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        base + "/items",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
        assert resp.status == 201


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("web")
    coll = make_collection(tmp)
    with live_server(create_app(coll, ServerSettings())) as base:
        green: list[NewItem] = [
            (
                item_id,
                "green",
                {
                    "title": LONG_TITLE if n == 3 else f"Green photo {n}",
                    "photographer": f"Person {n}",
                    "year": 2000 + n,
                    "tags": ["a", "b"],
                },
                200 + n,
            )
            for n, item_id in enumerate(GREEN)
        ]
        long_ones: list[NewItem] = [(i, None, {}, 700 + n) for n, i in enumerate(LONG_IDS)]
        _post_items(base, green + long_ones)
        yield base, tmp / "gallery"
    coll.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _open(browser: Any, base: str, width: int, path: str = "/") -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    outside: list[str] = []
    pg.on(
        "request",
        lambda r: None if r.url.startswith((base, "blob:" + base)) else outside.append(r.url),
    )
    pg.goto(base + path)
    pg.wait_for_selector("body[data-ready='1']")
    _settled(pg)
    return context, pg, outside


@pytest.fixture
def make_page(browser: Any, site: tuple[str, Path]) -> Iterator[Any]:
    opened: list[tuple[Any, list[str]]] = []

    def make(width: int = 1280, path: str = "/") -> Any:
        context, pg, outside = _open(browser, site[0], width, path)
        opened.append((context, outside))
        return pg

    yield make
    for context, outside in opened:
        context.close()
        assert outside == []  # every asset came from the app itself


def _wait(pg: Any, expression: str, timeout: float = 15.0) -> None:
    """Poll a JS expression from Python (the page's CSP forbids string eval in the page)."""
    deadline = time.monotonic() + timeout
    while not pg.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.05)


def _renders(pg: Any) -> int:
    return int(pg.evaluate("() => Number(document.body.dataset.renders || 0)"))


def _settled(pg: Any, after: int = 0) -> None:
    """Wait until a render after the ``after``-th one has finished."""
    _wait(
        pg,
        f"Number(document.body.dataset.renders || 0) > {after} && document.body.dataset.busy === '0'",
    )


def _act(pg: Any, action: Any) -> None:
    """Do something that renders the grid again, and wait for it."""
    before = _renders(pg)
    action()
    _settled(pg, before)


def _grid(pg: Any) -> list[dict[str, str]]:
    result: list[dict[str, str]] = pg.eval_on_selector_all(
        "#results .result",
        """els => els.map(e => ({
            id: e.dataset.id,
            score: (e.querySelector('.score') || {}).textContent || '',
            label: e.querySelector('.label').textContent,
            title: e.querySelector('.title').textContent,
            fields: [...e.querySelectorAll('.field')].map(f => f.textContent).join('|'),
        }))""",
    )
    return result


def _api(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(base + path, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


def _no_sideways_scroll(pg: Any, where: str) -> None:
    sizes = pg.evaluate(
        """() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
                   right: Math.max(0, ...[...document.querySelectorAll('#results .result')]
                       .map(e => e.getBoundingClientRect().right))})"""
    )
    assert sizes["scroll"] <= sizes["inner"], (where, sizes)
    assert sizes["right"] <= sizes["inner"], (where, sizes)


def _shot(pg: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=False)
    print(f"screenshot: {path}")


def _query(pg: Any) -> dict[str, str]:
    search = pg.evaluate("() => location.search")
    return dict(urllib.parse.parse_qsl(search.lstrip("?")))


@pytest.mark.parametrize("width", WIDTHS)
def test_browse_search_and_view_at_each_width(
    make_page: Any, site: tuple[str, Path], width: int
) -> None:
    base = site[0]
    pg = make_page(width)

    # -- browsing: the first page, then "More items"; labels with counts ----------------
    grid = _grid(pg)
    assert len(grid) == 24 and grid[0]["id"] == "blue/11.jpg" and grid[0]["score"] == ""
    assert f"of {TOTAL} items" in pg.text_content("#status")
    assert pg.is_visible("#more") and pg.text_content("#more") == "More items"
    _no_sideways_scroll(pg, "browse")
    _shot(pg, f"{width}-browse")
    _act(pg, lambda: pg.click("#more"))
    assert len(_grid(pg)) == TOTAL and pg.is_hidden("#more")
    assert [g["id"] for g in _grid(pg)] == [
        i["id"] for i in _api(base, f"/items?limit={TOTAL}")["items"]
    ]
    _no_sideways_scroll(pg, "browse, long ids and titles")
    options = pg.eval_on_selector_all(
        "#label-select option", "os => os.map(o => [o.value, o.textContent])"
    )
    assert options == [
        ["", f"All labels ({TOTAL})"],
        ["blue", "blue (4)"],
        ["green", "green (20)"],
        ["red", "red (4)"],
    ]

    # -- the label picker filters the grid; a card shows title, label and metadata -------
    _act(pg, lambda: pg.select_option("#label-select", "green"))
    assert _query(pg) == {"label": "green"}
    grid = _grid(pg)
    assert len(grid) == 20 and {g["label"] for g in grid} == {"green"}
    assert grid[0]["title"] == "Green photo 0"
    assert grid[0]["fields"] == "photographer: Person 0|year: 2000"
    assert grid[3]["title"] == LONG_TITLE
    _no_sideways_scroll(pg, "green, long title")

    # -- the viewer, by keyboard: Enter opens it, Escape closes it, focus comes back ------
    pg.focus("#results .result[data-id='green/02.jpg'] .similar")
    pg.keyboard.press("Tab")  # cards are in the tab order, with a visible focus ring
    assert pg.evaluate("document.activeElement.closest('.result').dataset.id") == "green/03.jpg"
    assert pg.evaluate("document.activeElement.matches('.card:focus-visible')")
    assert pg.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    pg.keyboard.press("Enter")
    _wait(pg, "document.getElementById('viewer').open")
    _wait(pg, "document.getElementById('viewer-image').naturalWidth > 0")
    meta = pg.eval_on_selector_all(
        "#viewer-meta dt, #viewer-meta dd", "es => es.map(e => e.textContent)"
    )
    pairs = dict(zip(meta[::2], meta[1::2], strict=True))
    assert pairs["id"] == "green/03.jpg" and pairs["label"] == "green"
    assert pairs["title"] == LONG_TITLE and pairs["tags"] == '["a","b"]'
    assert pairs["photographer"] == "Person 3" and pairs["year"] == "2003"
    assert pg.get_attribute("#viewer-image-link", "href") == "/items/green%2F03.jpg/image"
    assert pg.is_hidden("#viewer-source")  # no source URL for this item
    assert pg.text_content("#viewer-title") == LONG_TITLE
    _no_sideways_scroll(pg, "viewer")
    box = pg.eval_on_selector("#viewer", "d => d.getBoundingClientRect().right")
    assert box <= width
    _shot(pg, f"{width}-viewer")
    pg.keyboard.press("Escape")
    _wait(pg, "!document.getElementById('viewer').open")
    assert pg.evaluate("document.activeElement.closest('.result').dataset.id") == "green/03.jpg"

    # -- "More like this" on a card: a search whose address can be shared ----------------
    pg.select_option("#label-select", "")
    _wait(pg, "document.body.dataset.busy === '0' && !location.search.includes('green')")
    _act(pg, lambda: pg.click("#results .result[data-id='red/3.jpg'] .similar"))
    assert _query(pg) == {"id": "red/3.jpg", "k": "12"}
    expected = _api(base, "/items/red%2F3.jpg/similar?k=12")["results"]
    grid = _grid(pg)
    assert [g["id"] for g in grid] == [h["id"] for h in expected]
    for g, h in zip(grid, expected, strict=True):
        assert float(g["score"]) == pytest.approx(h["score"], abs=0.0006)
    assert pg.text_content("#query-title") == "red/3.jpg"
    _no_sideways_scroll(pg, "search")
    _shot(pg, f"{width}-search")

    # -- "More results": k grows by 12 ----------------------------------------------------
    assert pg.text_content("#more") == "More results"
    _act(pg, lambda: pg.click("#more"))
    assert _query(pg)["k"] == "24" and len(_grid(pg)) == 24

    # -- the threshold slider: only scores at or above it ---------------------------------
    scores = sorted(float(g["score"]) for g in _grid(pg))
    cut = round(scores[len(scores) // 2], 2)  # the slider moves in steps of 0.01
    _act(
        pg,
        lambda: pg.eval_on_selector(
            "#threshold",
            f"""s => {{ s.value = '{cut}'; s.dispatchEvent(new Event('input', {{bubbles: true}}));
                       s.dispatchEvent(new Event('change', {{bubbles: true}})); }}""",
        ),
    )
    assert _query(pg) == {"id": "red/3.jpg", "k": "24", "threshold": str(cut)}
    want = _api(base, f"/items/red%2F3.jpg/similar?k=24&threshold={cut}")["results"]
    got = _grid(pg)
    assert [g["id"] for g in got] == [h["id"] for h in want]
    assert 0 < len(got) < len(scores) and min(float(g["score"]) for g in got) >= cut - 0.0006
    assert pg.text_content("#threshold-value") == f"≥ {cut:.2f}"
    _no_sideways_scroll(pg, "threshold")


def test_address_is_the_search_back_and_forward(make_page: Any, site: tuple[str, Path]) -> None:
    pg = make_page(1280, "/?id=blue%2F12.jpg&k=3&label=blue")
    grid = _grid(pg)
    assert len(grid) == 3 and {g["label"] for g in grid} == {"blue"}
    assert "blue/12.jpg" not in {g["id"] for g in grid}
    assert pg.input_value("#k-input") == "3" and pg.input_value("#label-select") == "blue"
    assert pg.text_content("#query-title") == "blue/12.jpg"

    # a second search pushes a history entry; Back and Forward replay them
    _act(pg, lambda: pg.click(f"#results .result[data-id='{grid[0]['id']}'] .similar"))
    second = grid[0]["id"]
    assert _query(pg) == {"id": second, "k": "3", "label": "blue"}
    _act(pg, lambda: pg.go_back())
    assert _query(pg)["id"] == "blue/12.jpg"
    assert pg.text_content("#query-title") == "blue/12.jpg"
    assert [g["id"] for g in _grid(pg)] == [g["id"] for g in grid]
    _act(pg, lambda: pg.go_forward())
    assert pg.text_content("#query-title") == second
    # the home link goes back to browsing (the label stays out of it)
    _act(pg, lambda: pg.click("#home"))
    assert _query(pg) == {} and pg.is_hidden("#current") and len(_grid(pg)) == 24
    _act(pg, lambda: pg.go_back())
    assert pg.text_content("#query-title") == second


def test_unknown_label_and_empty_results(make_page: Any, site: tuple[str, Path]) -> None:
    # the server answers an unknown label with an empty 200: the page names the label
    assert _api(site[0], "/search", {"id": "red/1.jpg", "label": "purple"})["results"] == []
    pg = make_page(360, "/?id=red%2F1.jpg&k=5&label=purple")
    assert _grid(pg) == []
    assert pg.text_content("#status") == "No item has label “purple”."
    assert pg.input_value("#label-select") == "purple"
    assert pg.text_content("#label-select option[value='purple']") == "purple (0)"
    _shot(pg, "360-unknown-label")
    pg2 = make_page(768, "/?label=purple")
    assert _grid(pg2) == [] and "No item has label “purple”" in pg2.text_content("#status")
    # a threshold nothing reaches: the page says so
    pg3 = make_page(768, "/?id=red%2F1.jpg&k=5&threshold=1")
    assert _grid(pg3) == []
    assert "lower the minimum score" in pg3.text_content("#status")


def test_upload_results_stay_until_the_next_search(make_page: Any, site: tuple[str, Path]) -> None:
    pg = make_page(768)
    _act(pg, lambda: pg.set_input_files("#file-input", str(site[1] / "red" / "3.jpg")))
    grid = _grid(pg)
    assert grid[0]["id"] == "red/3.jpg" and grid[0]["score"] == "1.000"
    assert len(grid) == 12 and "id" not in _query(pg)  # an upload is not in the address
    assert pg.text_content("#query-title") == "3.jpg"
    # the controls apply to the upload too
    _act(pg, lambda: pg.select_option("#label-select", "blue"))
    assert {g["label"] for g in _grid(pg)} == {"blue"}
    _act(pg, lambda: pg.select_option("#label-select", ""))
    # a search by id, then Back: the upload's results again
    _act(pg, lambda: pg.click("#results .result[data-id='red/3.jpg'] .similar"))
    assert _query(pg)["id"] == "red/3.jpg"
    _act(pg, lambda: pg.go_back())
    assert pg.text_content("#query-title") == "3.jpg"
    assert _grid(pg)[0]["id"] == "red/3.jpg" and _grid(pg)[0]["score"] == "1.000"


def test_drop_a_file_and_a_bad_file(make_page: Any, site: tuple[str, Path]) -> None:
    pg = make_page(1280)
    _act(
        pg,
        lambda: pg.evaluate(
            """async () => {
                const blob = await (await fetch('/items/blue%2F12.jpg/image')).blob();
                const dt = new DataTransfer();
                dt.items.add(new File([blob], 'dropped.jpg', {type: blob.type}));
                const zone = document.getElementById('drop');
                zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
                zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
            }"""
        ),
    )
    assert pg.text_content("#query-title") == "dropped.jpg"
    assert _grid(pg)[0]["id"] == "blue/12.jpg" and _grid(pg)[0]["score"] == "1.000"
    bad = site[1].parent / "notes.jpg"
    bad.write_text("just text")
    _act(pg, lambda: pg.set_input_files("#file-input", str(bad)))
    assert "not-an-image" in pg.text_content("#status")
    assert _grid(pg) == [] and pg.is_hidden("#more")
    assert pg.is_hidden("#url-form")  # URL fetching is off


# The URL guard refuses loopback addresses (tests/test_server.py checks that); the test-only
# override lets the page fetch an image from this same loopback server.
def test_paste_an_image_url(browser: Any, tmp_path: Path) -> None:
    coll = make_collection(tmp_path)
    settings = ServerSettings(allow_urls=True, allow_private_for_tests=True)
    with live_server(create_app(coll, settings)) as base:
        context, pg, outside = _open(browser, base, 1280)
        assert pg.is_visible("#url-form")
        pg.fill("#url-input", base + "/items/blue%2F13.jpg/image")
        _act(pg, lambda: pg.click("#url-form button"))
        assert _grid(pg)[0]["id"] == "blue/13.jpg" and _grid(pg)[0]["score"] == "1.000"
        context.close()
        assert outside == []
    coll.close()


# -- the text box ---------------------------------------------------------------------


def test_text_box_is_off_without_a_text_tower(make_page: Any, site: tuple[str, Path]) -> None:
    """The site's model is phash: the box says why it is off, and a ?text= address shows
    the server's error (which names the models that can)."""
    why = "this collection's model has no text tower"
    pg = make_page(360)
    assert pg.is_disabled("#text-input") and pg.is_disabled("#text-button")
    assert pg.get_attribute("#text-input", "placeholder") == why
    assert pg.get_attribute("#text-input", "title") == why
    assert pg.is_visible("#text-note") and why in pg.text_content("#text-note")
    assert pg.evaluate("document.getElementById('text-input').labels[0].textContent")
    _no_sideways_scroll(pg, "text box off")
    _shot(pg, "360-text-off")
    pg.focus("#text-input")  # a disabled box takes no focus, so Enter does nothing
    pg.keyboard.press("Enter")
    assert _query(pg) == {}
    pg2 = make_page(768, "/?text=red%20dress&k=5")
    assert _grid(pg2) == []
    message = pg2.text_content("#status")
    assert "no text tower" in message and "clip-vit-b32" in message
    assert pg2.get_attribute("#status", "class") == "error"
    assert pg2.input_value("#text-input") == "red dress"
    assert pg2.text_content("#query-title") == "“red dress”"


@pytest.mark.parametrize("width", [1280, 360])
def test_text_search_with_a_text_tower(browser: Any, tmp_path: Path, width: int) -> None:
    """A tiny CLIP pair (tests/tiny_clip.py) over solid colours: type, Enter, the address
    says text=..; Back returns to browsing, Forward to the search."""
    from tiny_clip import write_colour_images, write_local_clip

    from lookalike.collection import Collection

    images = write_colour_images(tmp_path / "images")
    model = write_local_clip(tmp_path / "clip")
    with Collection.open(tmp_path / "coll", model_path=model) as coll:
        coll.add([images], workers=0)
        with live_server(create_app(coll, ServerSettings())) as base:
            context, pg, outside = _open(browser, base, width)
            assert _query(pg) == {} and len(_grid(pg)) == 5
            assert pg.is_enabled("#text-input") and pg.is_hidden("#text-note")
            assert pg.evaluate("document.getElementById('text-input').labels.length") == 1
            _no_sideways_scroll(pg, "text box on")
            pg.click("#text-input")
            pg.keyboard.type("red")
            _act(pg, lambda: pg.keyboard.press("Enter"))
            assert _query(pg) == {"text": "red", "k": "12"}
            grid = _grid(pg)
            assert Path(grid[0]["id"]).stem == "red" and len(grid) == 5
            assert pg.text_content("#query-title") == "“red”"
            assert pg.is_hidden("#query-image")  # a text has no picture
            _no_sideways_scroll(pg, "text results")
            _shot(pg, f"{width}-text-search")
            # the controls refine a text search like an id search
            _act(pg, lambda: pg.fill("#k-input", "2") or pg.press("#k-input", "Tab"))
            assert _query(pg) == {"text": "red", "k": "2"} and len(_grid(pg)) == 2
            _act(pg, lambda: pg.go_back())
            assert _query(pg) == {} and pg.is_hidden("#current") and len(_grid(pg)) == 5
            assert pg.input_value("#text-input") == ""
            _act(pg, lambda: pg.go_forward())
            assert _query(pg) == {"text": "red", "k": "2"}
            assert Path(_grid(pg)[0]["id"]).stem == "red"
            assert pg.input_value("#text-input") == "red"
            # a shared address opens the search; two words, a second colour
            pg2 = context.new_page()
            pg2.goto(base + "/?text=blue%20dress&k=1")
            pg2.wait_for_selector("body[data-ready='1']")
            _settled(pg2)
            assert [Path(g["id"]).stem for g in _grid(pg2)] == ["blue"]
            context.close()
            assert outside == []


# -- the filter box (the `where` expression language) ---------------------------------


@pytest.mark.parametrize("width", [1280, 360])
def test_filter_box_applies_where_to_the_search(
    make_page: Any, site: tuple[str, Path], width: int
) -> None:
    """Type a filter, Enter: the search again with where=.. (in the address too); a bad
    one shows the server's error with its column; Back restores the unfiltered search;
    emptying the box removes the filter."""
    base = site[0]
    start = {"id": "blue/12.jpg", "k": "12"}
    pg = make_page(width, "/?id=blue%2F12.jpg&k=12")
    unfiltered = [g["id"] for g in _grid(pg)]
    assert unfiltered == [
        h["id"] for h in _api(base, "/items/blue%2F12.jpg/similar?k=12")["results"]
    ]
    box = pg.get_by_label("Filter")  # a visible label names the box
    assert box.get_attribute("id") == "where-input" and box.input_value() == ""
    _no_sideways_scroll(pg, "filter box")

    where = 'label = "green" and year >= 2010'
    box.click()
    pg.keyboard.type(where)
    _act(pg, lambda: pg.keyboard.press("Enter"))
    assert _query(pg) == {**start, "where": where}
    assert "where=" in pg.evaluate("() => location.search")
    q = urllib.parse.urlencode({"k": 12, "where": where})
    want = _api(base, f"/items/blue%2F12.jpg/similar?{q}")["results"]
    grid = _grid(pg)
    assert [g["id"] for g in grid] == [h["id"] for h in want]
    assert len(grid) == 10  # green/10..19: fewer than k=12, and not the unfiltered ones
    assert {g["id"] for g in grid} == set(GREEN[10:]) and unfiltered != [g["id"] for g in grid]
    for g in grid:  # every card matches the filter
        assert g["label"] == "green"
        assert int(g["fields"].split("year: ")[1]) >= 2010
    body = {"id": "blue/12.jpg", "k": 12, "where": where}
    assert [h["id"] for h in _api(base, "/search", body)["results"]] == [g["id"] for g in grid]
    _no_sideways_scroll(pg, "filtered")
    _shot(pg, f"{width}-filtered")

    # a bad filter: the server's one-line error, with the column, is the status
    box.fill("price <")
    _act(pg, lambda: box.press("Enter"))
    message = pg.text_content("#status")
    assert "column" in message and "\n" not in message
    assert pg.get_attribute("#status", "class") == "error" and _grid(pg) == []
    assert _query(pg) == {**start, "where": "price <"}
    _no_sideways_scroll(pg, "bad filter")
    _shot(pg, f"{width}-bad-filter")

    # Back: the good filter, then the unfiltered search; Forward: the filter again
    _act(pg, lambda: pg.go_back())
    assert _query(pg) == {**start, "where": where} and box.input_value() == where
    assert [g["id"] for g in _grid(pg)] == [h["id"] for h in want]
    _act(pg, lambda: pg.go_back())
    assert _query(pg) == start and box.input_value() == ""
    assert [g["id"] for g in _grid(pg)] == unfiltered
    _act(pg, lambda: pg.go_forward())
    assert box.input_value() == where and [g["id"] for g in _grid(pg)] == [h["id"] for h in want]

    # emptying the box removes the filter
    _act(pg, lambda: box.fill(""))
    assert _query(pg) == start and [g["id"] for g in _grid(pg)] == unfiltered
