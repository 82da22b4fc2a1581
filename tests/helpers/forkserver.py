"""`bigmodel` child processes without paying TensorFlow's import each time.

Most of what the process-level tests (kills, signals, several workers) cost is each
child importing TensorFlow again: about 4 s of CPU on this machine, against about 1 s
for the tiny runs they train. A server process imports the CLI and TensorFlow once,
without running any TensorFlow operation (the runtime starts lazily, at the first one),
and forks a child per command. Each child is a real process: its own pid, signals,
exit status, environment, working directory and files, and a peak RSS reset at the
fork; it runs the same `bigmodel_cli.cli.main` as the console script.

Only for tests that need whole processes but not a fresh interpreter: what happens
while Python starts (start-up time, imports that must stay lazy) is tested with
`subprocess` as before.

Protocol: JSON lines. The client writes {"id", "argv", "env", "cwd", "stdout",
"stderr", "logical_cpus", "report_peak_rss"} to the server's stdin; the server answers
{"id", "pid"} when the child is forked and {"id", "status"} (a `subprocess`-style
return code) when it has exited.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


# === The server (run as `python -m tests.helpers.forkserver`) =================


def _child(request: dict, server_fds: list[int]) -> None:
    """In the forked child: become the requested process and run the CLI."""
    code = 1
    try:
        for fd in server_fds:  # the server's pipes are not the child's
            os.close(fd)
        # Peak RSS from here on is this process's own (Linux: "5" resets VmHWM).
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for name in ("SIGTERM", "SIGINT", "SIGCHLD"):
            signal.signal(getattr(signal, name), signal.default_int_handler
                          if name == "SIGINT" else signal.SIG_DFL)  # fmt: skip
        if request.get("logical_cpus"):
            import tensorflow as tf

            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * request["logical_cpus"]
            )
        from bigmodel_cli.cli import main

        # Usage lines name the program as the console script would, not `python -m`.
        sys.modules["__main__"].__spec__ = None
        sys.modules["__main__"].__package__ = None
        sys.argv = ["bigmodel", *request["argv"]]
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - a child must never return into the server
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            if request.get("report_peak_rss"):
                with open("/proc/self/status") as status:
                    peak = next(line.split()[1] for line in status if line.startswith("VmHWM"))
                os.write(2, f"\npeak-rss-kb: {peak}\n".encode())
        finally:
            os._exit(code)


def serve() -> None:
    import bigmodel_cli.cli  # noqa: F401 - what every child needs, imported once
    import bigmodel_cli.training  # noqa: F401
    from bigmodel_cli.tfenv import import_keras, import_tensorflow

    import_tensorflow()
    import_keras()
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    lock = threading.Lock()
    children: dict[int, int] = {}

    def reply(message: dict) -> None:
        with lock:
            replies.write(json.dumps(message) + "\n")

    def reap() -> None:
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                time.sleep(0.05)
                continue
            with lock:
                ident = children.pop(pid, None)
            if ident is not None:
                code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                reply({"id": ident, "status": code})

    threading.Thread(target=reap, daemon=True).start()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        with lock:  # the reaper must know the pid before it can see it exit
            pid = os.fork()
            if pid == 0:
                _child(request, [replies.fileno()])
            children[pid] = request["id"]
        reply({"id": request["id"], "pid": pid})


# === The client ================================================================


class Process:
    """A forked `bigmodel` process, used as a `subprocess.Popen` with text pipes is."""

    def __init__(self, server: _Server, ident: int, folder: Path, args: list[str]):
        self.args = args
        self.returncode: int | None = None
        self._server, self._id, self._folder = server, ident, folder
        self._exited = threading.Event()
        self.pid = server.wait_for_pid(ident)

    def _exit(self, status: int) -> None:
        self.returncode = status
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            raise
        return self._read("stdout"), self._read("stderr")

    def _read(self, name: str) -> str:
        try:
            return (self._folder / name).read_text(errors="replace")
        finally:
            (self._folder / name).unlink(missing_ok=True)
            if not any(self._folder.iterdir()):
                self._folder.rmdir()

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Server:
    def __init__(self):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.forkserver"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=REPO, env=env,
        )  # fmt: skip
        self._lock = threading.Lock()
        self._next = 0
        self._pids: dict[int, int] = {}
        self._processes: dict[int, Process] = {}
        self._early: dict[int, int] = {}
        self._changed = threading.Condition()
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        for line in self._process.stdout:
            message = json.loads(line)
            with self._changed:
                if "pid" in message:
                    self._pids[message["id"]] = message["pid"]
                elif message["id"] in self._processes:
                    self._processes.pop(message["id"])._exit(message["status"])
                else:
                    self._early[message["id"]] = message["status"]
                self._changed.notify_all()
        with self._changed:  # the server died: so did any child's report
            for process in self._processes.values():
                process._exit(-signal.SIGKILL)
            self._processes.clear()
            self._changed.notify_all()

    def wait_for_pid(self, ident: int) -> int:
        with self._changed:
            if not self._changed.wait_for(lambda: ident in self._pids, timeout=120):
                raise RuntimeError("the fork server did not start a child in 120 s")
            return self._pids.pop(ident)

    def start(self, args: list[str], env: dict, cwd: Path, options: dict) -> Process:
        folder = Path(tempfile.mkdtemp(prefix="bigmodel-fork-"))
        with self._lock:
            self._next += 1
            ident = self._next
            request = {
                "id": ident, "argv": args, "env": env, "cwd": str(cwd),
                "stdout": str(folder / "stdout"), "stderr": str(folder / "stderr"),
                **options,
            }  # fmt: skip
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        process = Process(self, ident, folder, args)
        with self._changed:
            if ident in self._early:
                process._exit(self._early.pop(ident))
            else:
                self._processes[ident] = process
        return process


_server: _Server | None = None
_server_lock = threading.Lock()


def start(
    *args: str,
    env: dict | None = None,
    cwd: Path = REPO,
    logical_cpus: int = 0,
    report_peak_rss: bool = False,
) -> Process:
    """Start `bigmodel ARGS...` in a forked child (`env` replaces the environment).

    `logical_cpus` splits the CPU into that many devices first (for `mirrored`);
    `report_peak_rss` makes the child write `peak-rss-kb: N` last on its stderr.
    """
    global _server
    with _server_lock:
        if _server is None or _server._process.poll() is not None:
            _server = _Server()
    environment = dict(os.environ if env is None else env)
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    options = {"logical_cpus": logical_cpus, "report_peak_rss": report_peak_rss}
    return _server.start(list(args), environment, cwd, options)


def run(
    *args: str,
    env: dict | None = None,
    cwd: Path = REPO,
    timeout: float = 600,
    logical_cpus: int = 0,
) -> subprocess.CompletedProcess:
    """`subprocess.run(["bigmodel", *args], capture_output=True, text=True)`, forked."""
    process = start(*args, env=env, cwd=cwd, logical_cpus=logical_cpus)
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


if __name__ == "__main__":
    serve()
