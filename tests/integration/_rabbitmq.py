"""A real RabbitMQ for the integration tests: Debian's ``rabbitmq-server``, started by the
tests on free loopback ports with its own node name, Erlang port mapper, data and log
folders and cookie (``HOME``), all in a temporary folder, and stopped when they end.

``.ci/run`` installs the package. Where it is missing or will not start, the tests that
need it skip and say why. Starting the Erlang node takes 5 to 20 seconds, so one broker
serves a whole module; tests keep apart by queue name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import uuid
from typing import Iterator, Optional

import pytest
from _services import free_port, wait_until

__all__ = ["queue_name", "rabbitmq_url"]

#: Where Debian puts the server's own script (``/usr/sbin/rabbitmq-server`` is a wrapper
#: that switches to the ``rabbitmq`` user and its system-wide folders).
_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
#: Seconds the node may take to accept AMQP connections on a loaded 2-core machine.
_START_TIMEOUT = 120


def _server() -> Optional[str]:
    if os.access(_SERVER, os.X_OK):
        return _SERVER
    return shutil.which("rabbitmq-server")


def _amqp_ready(port: int) -> bool:
    """Whether the broker answers the AMQP 0-9-1 protocol header with Connection.Start."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            frame = sock.recv(7)
            return len(frame) == 7 and frame[0] == 1  # a METHOD frame
    except OSError:
        return False


def _stop_epmd(port: int) -> None:
    """Stop the Erlang port mapper the broker started on ``port`` (ours, not the system's)."""
    epmd = shutil.which("epmd")
    if epmd is not None:
        subprocess.run(
            [epmd, "-port", str(port), "-kill"],
            capture_output=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def rabbitmq_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``amqp://guest:guest@127.0.0.1:PORT//``: a real RabbitMQ broker for this module."""
    binary = _server()
    if binary is None:
        pytest.skip(
            "rabbitmq-server is not installed (apt-get install rabbitmq-server; .ci/run "
            "installs it when apt-get works): no real RabbitMQ to run Celery against"
        )
    home = tmp_path_factory.mktemp("rabbitmq")
    port, dist_port, epmd_port = free_port(), free_port(), free_port()
    node = f"tasktrace{uuid.uuid4().hex[:8]}@localhost"
    (home / "enabled_plugins").write_text("[].\n")
    (home / "rabbitmq.conf").write_text(
        f"loopback_users = none\nlisteners.tcp.default = 127.0.0.1:{port}\n"
    )
    (home / "rabbitmq-env.conf").write_text("")
    env = dict(
        os.environ,
        HOME=str(home),
        RABBITMQ_NODENAME=node,
        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
        RABBITMQ_NODE_PORT=str(port),
        RABBITMQ_DIST_PORT=str(dist_port),
        ERL_EPMD_PORT=str(epmd_port),
        ERL_EPMD_ADDRESS="127.0.0.1",
        RABBITMQ_MNESIA_BASE=str(home / "mnesia"),
        RABBITMQ_LOG_BASE=str(home / "log"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(home / "enabled_plugins"),
        RABBITMQ_CONFIG_FILE=str(home / "rabbitmq"),
        RABBITMQ_ADVANCED_CONFIG_FILE=str(home / "advanced.config"),
        RABBITMQ_CONF_ENV_FILE=str(home / "rabbitmq-env.conf"),
        RABBITMQ_PID_FILE=str(home / "rabbitmq.pid"),
    )
    log_path = home / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # the node's own helpers go with it at the end
        )
    try:
        ready = wait_until(
            lambda: _amqp_ready(port) or proc.poll() is not None, _START_TIMEOUT, 0.5
        )
        if not ready or proc.poll() is not None:
            pytest.skip(
                f"rabbitmq-server would not start on 127.0.0.1:{port}: "
                f"{log_path.read_text(errors='replace')[-800:]}"
            )
        yield f"amqp://guest:guest@127.0.0.1:{port}//"
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        _stop_epmd(epmd_port)


def queue_name() -> str:
    """A queue name no other test of this broker uses."""
    return f"tasktrace-{uuid.uuid4().hex[:12]}"
