#!/usr/bin/env bash
# Make chromium available for the browser test (tests/test_web.py), but only when asked:
# in CI (CI=true) or with LOOKALIKE_INSTALL_CHROMIUM=1, as root, with apt-get. Otherwise it
# installs nothing and says why the browser test will be skipped. Never fails the run.
# CHROMIUM overrides the browser's path (the test's default: /usr/bin/chromium).
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$chromium" ]; then
  exit 0
fi
if [ "${CI:-}" != "true" ] && [ "${LOOKALIKE_INSTALL_CHROMIUM:-}" != "1" ]; then
  echo "== $chromium is not installed: the browser test will be skipped" \
    "(LOOKALIKE_INSTALL_CHROMIUM=1 installs it with apt-get, as root)" >&2
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "== installing chromium needs root and apt-get: the browser test will be skipped" >&2
  exit 0
fi
echo "== installing chromium for the browser test"
(apt-get install -y -q chromium >/dev/null 2>&1 \
  || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
  || echo "chromium could not be installed: the browser test will be skipped" >&2
exit 0
