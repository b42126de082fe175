"""A real Milvus standalone server for integration tests (the PyPI package ``milvus``).

``milvus_server`` (session fixture) is LOOKALIKE_TEST_MILVUS_URI when set (a server someone
else runs: no restarts), else a server started from the ``milvus`` package in a temporary
folder on free ports (etcd on 127.0.0.1; the package's gRPC ports listen on every interface,
which it cannot change), ready in ~10 s. ``.stop()`` / ``.start()`` restart it on the same
ports and data folder, so data survives. When it cannot start, tests fail in CI (CI=true)
and skip elsewhere, with the reason.

The package unpacks ~250 MB of binaries; they are kept once per machine in the temporary
folder (``lookalike-tests-milvus-2.3.5-bin``), not once per session.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

READY_TIMEOUT = 90.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _give_up(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Milvus test server: {reason}", pytrace=False)
    pytest.skip(f"Milvus test server: {reason}")


class MilvusProcess:
    """One ``milvus run standalone`` process with its own config, ports and data folder."""

    can_restart = True

    def __init__(self, data_dir: Path, bin_cache: Path) -> None:
        import milvus

        self.data_dir = data_dir
        package = Path(milvus.__file__).parent
        self.bin_dir = bin_cache / "bin"
        with open(bin_cache.parent / f"{bin_cache.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one unpacking at a time across sessions
            milvus._initialize_data_files(str(bin_cache))
        etcd_client, etcd_peer = _free_port(), _free_port()
        etcd_conf = data_dir / "embedEtcd.yaml"
        etcd_conf.write_text(
            f"name: default\n"
            f"listen-client-urls: http://127.0.0.1:{etcd_client}\n"
            f"advertise-client-urls: http://127.0.0.1:{etcd_client}\n"
            f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{etcd_peer}\n"
        )
        # the package's template pins the embedded etcd to 2379/2380 and the components to
        # the first network address: point them at our etcd config and at 127.0.0.1
        template = (package / "data" / "config.yaml.template").read_text()
        etcd_line = "  endpoints: localhost:{{ etcd_port(int): 2379 }}"
        if etcd_line not in template:
            raise RuntimeError("unexpected config template in the milvus package")
        template = template.replace(
            etcd_line,
            "  endpoints: 127.0.0.1:{{ etcd_port(int): 2379 }}\n"
            f"  config:\n    path: {etcd_conf}",
        )
        template = re.sub(r"(?m)^  ip: #.*$", "  ip: 127.0.0.1", template)
        # a killed server's sessions (30 s by default, 10 s here) hold its restart until they expire
        template = template.replace(
            "    ttl: 30 # ttl value when session", "    ttl: 10 # ttl value"
        )
        (data_dir / "config.template.yaml").write_text(template)
        config = milvus.MilvusServerConfig(template=str(data_dir / "config.template.yaml"))
        config.glog_conf_file = str(package / "data" / "glog.conf")  # unset with a template
        ports = {key: _free_port() for key in config.configurable_items if key.endswith("_port")}
        ports["etcd_port"] = etcd_client
        config.update(data_dir=str(data_dir), **ports)
        config.resolve()  # writes data_dir/configs/milvus.yaml
        self.port = ports["proxy_port"]
        self.metrics_port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until healthy (RuntimeError with the log's tail when it fails)."""
        if self.proc is not None:
            return
        env = dict(os.environ)
        env.update(
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(self.metrics_port),
            MILVUS_RUN_DIR=str(self.data_dir / "run"),
            LD_LIBRARY_PATH=f"{self.bin_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        )
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        with open(logs / "stdout.log", "ab") as out, open(logs / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen(
                [str(self.bin_dir / "milvus"), "run", "standalone"],
                cwd=self.data_dir,  # milvus reads ./configs/milvus.yaml
                env=env,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        health = f"http://127.0.0.1:{self.metrics_port}/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"milvus exited with {code}: {self._log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=2) as resp:
                if b"OK" in resp.read():
                    return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"milvus not healthy after {READY_TIMEOUT:g} s: {self._log_tail()}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 3 s: a graceful stop takes longer
        than that, and a kill is a fair fault test); the data folder stays."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _log_tail(self) -> str:
        path = self.data_dir / "logs" / "stderr.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        useful = [line for line in lines if "panic" in line or "error" in line.lower()]
        return " | ".join((useful or lines)[-3:]) or "no log"


class ExternalMilvus:
    """A server given by LOOKALIKE_TEST_MILVUS_URI: used as is, never restarted."""

    can_restart = False

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def start(self) -> None:
        pytest.skip("restarts need the fixture's own server (LOOKALIKE_TEST_MILVUS_URI is set)")

    stop = start


@pytest.fixture(scope="session")
def milvus_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[MilvusProcess | ExternalMilvus]:
    """A running Milvus server: ``.uri``, and ``.stop()`` / ``.start()`` for fault tests."""
    external = os.environ.get("LOOKALIKE_TEST_MILVUS_URI")
    if external:
        yield ExternalMilvus(external)
        return
    try:
        import milvus
    except ImportError:
        _give_up("the milvus package is not installed (pip install milvus==2.3.5)")
    bin_cache = Path(tempfile.gettempdir()) / f"lookalike-tests-milvus-{milvus.__version__}-bin"
    server: MilvusProcess | None = None
    try:
        server = MilvusProcess(tmp_path_factory.mktemp("milvus-server"), bin_cache)
        atexit.register(server.stop)  # also when the session ends abruptly
        server.start()
    except Exception as exc:  # the reason goes into the skip / failure line
        if server is not None:
            server.stop()
        _give_up(f"cannot start: {str(exc)[:500]}")
    assert server is not None
    try:
        yield server
    finally:
        server.stop()
