#!/usr/bin/env bash
# Set up a virtual environment and run lint, type checks and the test suite.
# This is the README's test command; .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/_venv.sh "[dev,server,spark,milvus,redis]"

# The browser test (tests/test_web.py) drives Debian's chromium: installed only in CI
# (CI=true) or when asked (LOOKALIKE_INSTALL_CHROMIUM=1), else the test skips and says why.
bash scripts/need_chromium.sh
# Redis and a Milvus server for the distributed-mode tests (the tests start and stop them).
bash scripts/need_services.sh

echo "== ruff"
ruff check src tests benchmarks
ruff format --check src tests benchmarks
echo "== mypy"
mypy
echo "== pytest"
set +e
python -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
