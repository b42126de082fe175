#!/usr/bin/env bash
# Regenerate the two README images from lookalike's own sample set (public-domain and CC0
# photos from scikit-image, see lookalike/samples.py); nothing else is read:
#   docs/page.jpg          the web page at 1280 px after a search (headless chromium)
#   docs/results-grid.png  `lookalike search ... -k 5 --plot` on a phash collection
# Needs the [samples,plot,server] extras, /usr/bin/chromium and playwright (python).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=$(mktemp -d)
trap 'kill "${SERVER:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
python -m lookalike.samples "$WORK/samples" >/dev/null
lookalike index "$WORK/samples" --model phash --collection "$WORK/coll" --no-progress >/dev/null

lookalike search "$WORK/samples/copies/chelsea/caption.jpg" -k 5 --collection "$WORK/coll" \
  --plot docs/results-grid.png >/dev/null

PORT=${PORT:-8765}
lookalike serve --collection "$WORK/coll" --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVER=$!
python - "$PORT" <<'EOF'
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(100):
    try:
        urllib.request.urlopen(base + "/health", timeout=1)  # noqa: S310 - loopback
        break
    except OSError:
        time.sleep(0.1)
args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args)
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(base + "/?id=copies%2Fchelsea%2Fcaption.jpg&k=12")
    page.wait_for_selector("body[data-busy='0'] #results .result")
    loaded = "() => [...document.querySelectorAll('#results img')].slice(0, 6).every(i => i.naturalWidth)"
    for _ in range(100):  # the page's CSP forbids wait_for_function's string eval
        if page.evaluate(loaded):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    page.screenshot(path="docs/page.jpg", type="jpeg", quality=80)
    browser.close()
EOF
ls -l docs/page.jpg docs/results-grid.png
