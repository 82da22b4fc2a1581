"""Wait, with a bound, until every worker of a TF_CONFIG cluster is up.

MultiWorkerMirroredStrategy blocks inside C++, holding the GIL and ignoring SIGTERM,
until all peers answer, so a missing peer would hang a run forever. Before TensorFlow
starts, each worker listens on its own TF_CONFIG port with a plain socket, connects to
every peer's port and sends its own address. A worker moves on only when it has reached
every peer *and* heard from every peer: then each peer has reached it too, so nobody is
left knocking on a listener that already closed. Only then is the strategy created.
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


def _drain(server: socket.socket, heard: set[str]) -> None:
    """Accept pending connections, note who sent them, leave no TIME_WAIT on our port."""
    while True:
        try:
            conn, _ = server.accept()
        except (BlockingIOError, OSError):
            return
        with contextlib.suppress(OSError):
            conn.settimeout(1.0)
            heard.add(conn.recv(512).decode(errors="replace").strip())
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


def _announce(me: str, peer: str) -> bool:
    """Tell `peer` we are up; True if it was listening."""
    with contextlib.suppress(OSError), socket.create_connection(_address(peer), timeout=1.0) as s:
        s.sendall(f"{me}\n".encode())
        return True
    return False


def wait_for_cluster(tf_config: dict, timeout_seconds: float) -> None:
    """Return once every other worker is up and knows we are; UserError after the timeout."""
    cluster = tf_config["cluster"]
    task = tf_config["task"]
    everyone = [(role, i, a) for role in ("chief", "worker") for i, a in
                enumerate(cluster.get(role, []))]  # fmt: skip
    me = next(a for role, i, a in everyone if role == task["type"] and i == task.get("index", 0))
    peers = {a for _, _, a in everyone if a != me}
    server = _listen(_address(me)[1])
    reached: set[str] = set()
    heard: set[str] = set()
    deadline = time.monotonic() + timeout_seconds
    try:
        while True:
            reached |= {p for p in peers - reached if _announce(me, p)}
            if server is None:
                heard = set(peers)  # our port is taken (not by us): we cannot listen
            else:
                _drain(server, heard)
            missing = sorted(peers - (reached & heard))
            if not missing:
                return
            if time.monotonic() > deadline:
                raise UserError(
                    f"TF_CONFIG: worker(s) {', '.join(missing)} did not answer within "
                    f"{timeout_seconds:g} s (distribute.timeout_seconds); start every worker "
                    "and check that the addresses are reachable"
                )
            time.sleep(RETRY_SECONDS)
    finally:
        if server is not None:
            server.close()
