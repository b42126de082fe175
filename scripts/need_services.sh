#!/usr/bin/env bash
# Make the programs the distributed-mode tests run available: Debian's redis-server (with
# apt-get, as root) and the Milvus standalone server (PyPI `milvus`, a test-only package that
# unpacks its binaries on first use). The tests start and stop both themselves
# (tests/services_redis.py, tests/services_milvus.py), so that fault tests can stop and
# restart them; nothing is left running. In CI (CI=true) a missing program fails those
# tests; elsewhere they skip and say why. Never fails the run itself.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing redis-server for the distributed-mode tests"
    (apt-get install -y -q redis-server >/dev/null 2>&1 \
      || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q redis-server >/dev/null 2>&1)) \
      || echo "redis-server could not be installed: its tests will fail" >&2
  else
    echo "== redis-server is not installed: the Redis tests will be skipped" \
      "(apt-get install redis-server)" >&2
  fi
fi
# stop Debian's own redis service if apt started one: the tests run their own
if command -v systemctl >/dev/null 2>&1; then
  systemctl stop redis-server >/dev/null 2>&1 || true
fi
python -m pip install -q "milvus==2.3.5" >/dev/null 2>&1 \
  || echo "the Milvus test server (pip install milvus==2.3.5) could not be installed" >&2
exit 0
