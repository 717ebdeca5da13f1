"""Real servers for the integration tests, started by the tests themselves on 127.0.0.1.

* :func:`redis_url`: one ``redis-server`` for the whole session (the Debian package;
  ``.ci/run`` installs it) on a free port, persistence off, stopped when the session ends;
  each test takes its own database with :func:`fresh_db`.
* :func:`rotel`: a fresh ``rotel-agent`` (the ``rotel`` package from the test extra) per
  test, logging every span it receives, so a test can read what a real collector got
  (:class:`Rotel` can listen on another address of this machine instead: a test bridge's,
  for workers in network namespaces; see ``_netns``).

A test module uses a fixture by importing it (``from _services import redis_url``). Where
a server cannot be found or started, the tests that need it skip and say why. On Linux
the servers also die with pytest, so a killed run leaves none behind.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from _launcher import Launcher

__all__ = [
    "EXAMPLES",
    "Rotel",
    "copy_example",
    "die_with_parent",
    "free_port",
    "fresh_db",
    "redis_url",
    "rotel",
    "rotel_agent",
    "rotel_env",
    "rotel_skip_reason",
    "stop",
    "wait_until",
]

#: The repository's ``config-examples/`` folder.
EXAMPLES = Path(__file__).resolve().parents[2] / "config-examples"

#: Databases the session's Redis server offers; each test takes a fresh one.
_REDIS_DATABASES = 256
_next_db = itertools.count(1)


def copy_example(name: str, dest: Path) -> Path:
    """Copy the files of ``config-examples/<name>`` into ``dest`` (no caches); returns dest."""
    for source in (EXAMPLES / name).iterdir():
        if source.is_file() and source.suffix in (".py", ".toml"):
            shutil.copy(source, dest / source.name)
    return dest


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` (an address of this machine) that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Call ``check()`` until it returns true or ``timeout`` seconds pass; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate ``proc`` (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _redis_ping(port: int) -> bool:
    """Whether a Redis server on ``port`` answers PING (a raw RESP request, no client)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start_redis(binary: str, workdir: Path) -> Tuple[subprocess.Popen[bytes], int, str]:
    """Start ``redis-server`` on a free port; retries a port another process took meanwhile."""
    log_text = ""
    for attempt in range(3):
        port = free_port()
        log_path = workdir / f"redis-{attempt}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--databases",
                    str(_REDIS_DATABASES),
                    "--dir",
                    str(workdir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        # Up at once, or gone at once (the port was taken meanwhile): no need to wait long.
        wait_until(lambda: _redis_ping(port) or proc.poll() is not None, 10)  # noqa: B023
        if proc.poll() is None and _redis_ping(port):
            return proc, port, ""
        stop(proc)
        log_text = log_path.read_text(errors="replace")
    return proc, 0, log_text


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when pytest dies (Linux), so no server outlives it."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except Exception:  # not Linux: the fixture's teardown still stops the server  # noqa: BLE001
        pass


class _SharedRedis:
    """The session's one Redis server, shared by every test module that imports the fixture.

    pytest caches a session fixture per definition, and each module importing
    ``redis_url`` holds its own definition; counting users keeps it to one server.
    """

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.url = ""
        self.skip_reason = ""
        self.users = 0

    def acquire(self, workdir: Callable[[], Path]) -> str:
        if not self.url and not self.skip_reason:
            self._start(workdir())
        if self.skip_reason:
            pytest.skip(self.skip_reason)
        self.users += 1
        return self.url

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.proc is not None:
            stop(self.proc)
            self.proc, self.url = None, ""

    def _start(self, workdir: Path) -> None:
        binary = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
        )
        if binary is None:
            self.skip_reason = (
                "redis-server is not installed (apt-get install redis-server; .ci/run installs "
                "it when apt-get works): no real Redis to run RQ and Celery against"
            )
            return
        proc, port, log_text = _start_redis(binary, workdir)
        if not port:
            self.skip_reason = f"redis-server would not start on 127.0.0.1: {log_text[-500:]}"
            return
        self.proc, self.url = proc, f"redis://127.0.0.1:{port}"


_shared_redis = _SharedRedis()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:PORT``: a real Redis server for the whole session.

    Tests that share it keep apart by database number (:func:`fresh_db`).
    """
    url = _shared_redis.acquire(lambda: tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        _shared_redis.release()


def fresh_db(redis_url: str) -> str:
    """``redis_url`` with a database number no other test of this session has used."""
    number = next(_next_db)
    assert number < _REDIS_DATABASES, "more Redis databases needed: raise _REDIS_DATABASES"
    return f"{redis_url}/{number}"


def rotel_env() -> Dict[str, str]:
    """The environment to start ``rotel-agent`` in.

    Some of rotel's wheels (3.13's) link ``libpython`` for their Python processors; a
    Python built without it on the loader's path (pyenv's) keeps it in its ``LIBDIR``.
    """
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            part for part in (libdir, env.get("LD_LIBRARY_PATH")) if part
        )
    return env


_rotel_problems: List[str] = []


@functools.cache
def rotel_agent() -> Optional[str]:
    """A ``rotel-agent`` that runs here: ``TEST_ROTEL_AGENT`` (``.ci/run`` sets
    it to the main virtualenv's for the other Pythons), else the binary shipped inside the
    ``rotel`` package, else one on PATH. None (see :func:`rotel_skip_reason`) if none runs:
    rotel's wheel for 3.9 needs a newer glibc than Debian 12's."""
    candidates = [os.environ.get("TEST_ROTEL_AGENT")]
    try:
        import rotel  # type: ignore[import-untyped]

        candidates.append(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))
    except ImportError:
        _rotel_problems.append("the rotel package is not installed (pip install rotel)")
    candidates.append(shutil.which("rotel-agent"))
    for path in dict.fromkeys(c for c in candidates if c):
        if not os.access(path, os.X_OK):
            _rotel_problems.append(f"{path} is not executable")
            continue
        try:
            proc = subprocess.run(
                [path, "--help"], env=rotel_env(), capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            _rotel_problems.append(f"{path}: {exc}")
            continue
        if proc.returncode == 0:
            return path
        _rotel_problems.append(f"{path} does not run: {proc.stderr.strip()[-300:]}")
    return None


def rotel_skip_reason() -> str:
    """Why :func:`rotel_agent` found none, for the tests' skip message."""
    rotel_agent()
    found = "; ".join(_rotel_problems) or "no rotel-agent found"
    return f"no real collector to test: {found}"


class Rotel:
    """A running ``rotel-agent`` that logs the spans it receives in detail."""

    def __init__(
        self,
        agent: str,
        log_path: Path,
        *,
        http_port: Optional[int] = None,
        exporter: Optional[List[str]] = None,
        host: str = "127.0.0.1",
    ) -> None:
        """Start rotel; ``http_port`` reuses a port (a collector restarted after an
        outage); ``exporter`` replaces the blackhole exporter's arguments; ``host`` is the
        address it listens on (a test bridge's, for workers in network namespaces)."""
        self.host = host
        self.http_port = free_port(host) if http_port is None else http_port
        self.grpc_port = free_port(host)
        self.endpoint = f"http://{host}:{self.http_port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        command: List[str] = [
            agent,
            "start",
            "--otlp-http-endpoint",
            f"{host}:{self.http_port}",
            "--otlp-grpc-endpoint",
            f"{host}:{self.grpc_port}",
            *(
                exporter
                if exporter is not None
                else [
                    "--exporter",
                    "blackhole",
                    "--debug-log",
                    "traces",
                    "--debug-log-verbosity",
                    "detailed",
                ]
            ),
        ]
        self.proc = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=rotel_env(),
            preexec_fn=die_with_parent,
        )

    def listening(self) -> bool:
        """Whether the OTLP/HTTP port accepts connections."""
        try:
            socket.create_connection((self.host, self.http_port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def log(self) -> str:
        """Everything rotel has logged so far."""
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        stop(self.proc)
        self._log.close()


@pytest.fixture
def rotel(tmp_path: Path) -> Iterator[Rotel]:
    """A real OTLP collector (rotel, blackhole exporter, detailed debug log) for one test."""
    agent = rotel_agent()
    if agent is None:
        pytest.skip(rotel_skip_reason())
    collector = Rotel(agent, tmp_path / "rotel.log")
    try:
        if not wait_until(lambda: collector.listening() or collector.proc.poll() is not None, 10):
            pytest.skip(f"rotel did not listen within 10 s: {collector.log()[-500:]}")
        if collector.proc.poll() is not None:
            pytest.skip(f"rotel exited at start: {collector.log()[-500:]}")
        yield collector
    finally:
        collector.close()


#: A job module for the "SIGTERM while a job runs" tests: touches "started", then sleeps.
SLOW_JOBS = """
import pathlib
import time


def slow(seconds):
    pathlib.Path("started").touch()
    time.sleep(seconds)
    return seconds
"""


def warm_shutdown_of_one_slow_job(
    launcher: Launcher,
    command: List[str],
    env: Dict[str, str],
    app: str,
    send: Optional[Callable[[], None]] = None,
) -> None:
    """Start the worker ``command``, call ``send`` (to hand it the job, if not already
    queued), wait until the job (``SLOW_JOBS``) has started, send the worker SIGTERM (a
    warm shutdown: the running job finishes), and check that the worker exits 0 and the
    job's transaction was delivered exactly once, for ``app``, without errors."""
    log_path = launcher.cwd / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            command,
            cwd=launcher.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        if send is not None:
            send()
        assert wait_until((launcher.cwd / "started").exists, 20), log_path.read_text()
        worker.send_signal(signal.SIGTERM)
        status = worker.wait(30)
    finally:
        stop(worker)
    worker_log = log_path.read_text(errors="replace")
    assert status == 0, worker_log[-3000:]
    records = launcher.records()
    assert [(r["name"], r["app"], r["errors"]) for r in records] == [("slow_jobs:slow", app, [])], (
        worker_log[-3000:]
    )
    assert records[0]["duration"] >= 0.5


def run_worker(
    launcher: Launcher, url: str, *extra: str, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    """``tasktrace-admin run-program --config tasktrace.toml rq worker --burst ...``."""
    result = launcher.admin(
        "run-program",
        "--config",
        "tasktrace.toml",
        "rq",
        "worker",
        "--burst",
        "--url",
        url,
        *extra,
        "default",
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def enqueue(launcher: Launcher, url: str) -> None:
    """Run the example's enqueue.py (uninstrumented) against ``url``."""
    result = subprocess.run(
        [sys.executable, "enqueue.py", url],
        cwd=launcher.cwd,
        env=launcher.env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "enqueued 10 jobs" in result.stdout
