"""Wait, with a bound, until every worker of a TF_CONFIG cluster is up.

MultiWorkerMirroredStrategy blocks inside C++, holding the GIL and ignoring SIGTERM,
until all peers answer, so a missing peer would hang a run forever. Before TensorFlow
starts, each worker listens on its own TF_CONFIG port with a plain socket and connects
to every peer's port; any listener there (a peer's rendezvous socket, or its TF server
once it moved on) proves the peer is up. Only then is the strategy created.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time

from bigmodel_cli.errors import UserError

RETRY_SECONDS = 0.2


def _address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _listen(port: int) -> socket.socket | None:
    """Listen on our own port so peers can see us; None if something already holds it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("", port))
    except OSError:
        server.close()
        return None
    server.listen(16)
    server.setblocking(False)
    return server


def _drain(server: socket.socket) -> None:
    """Accept and drop pending connections, with no TIME_WAIT left on our port."""
    while True:
        try:
            conn, _ = server.accept()
        except (BlockingIOError, OSError):
            return
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def wait_for_cluster(tf_config: dict, timeout_seconds: float) -> None:
    """Return once every other worker's port answers; UserError after the timeout."""
    cluster = tf_config["cluster"]
    task = tf_config["task"]
    everyone = [(role, i, a) for role in ("chief", "worker") for i, a in
                enumerate(cluster.get(role, []))]  # fmt: skip
    me = next(a for role, i, a in everyone if role == task["type"] and i == task.get("index", 0))
    peers = {a for _, _, a in everyone if a != me}
    server = _listen(_address(me)[1])
    deadline = time.monotonic() + timeout_seconds
    try:
        while True:
            if server is not None:
                _drain(server)
            missing = sorted(p for p in peers if not _reachable(*_address(p)))
            if not missing:
                return
            if time.monotonic() > deadline:
                raise UserError(
                    f"TF_CONFIG: worker(s) {', '.join(missing)} did not answer within "
                    f"{timeout_seconds:g} s (distribute.timeout_seconds); start every worker "
                    "and check that the addresses are reachable"
                )
            time.sleep(RETRY_SECONDS)
            peers = set(missing)
    finally:
        if server is not None:
            _drain(server)
            server.close()
