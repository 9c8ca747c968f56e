"""The parent's handle on a worker process: start it, send a case, wait with a timeout, restart it.

A worker that dies (abort, segfault, killed for memory) or overruns the case's timeout is killed and
reported as a failed outcome; the next case starts a fresh worker.

A worker never outlives its parent (``kill -9`` of ``harness run`` included, which runs no cleanup): on Linux the
kernel kills it when the parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, asked for when the worker is launched
from the parent's main thread, since the signal follows the launching thread); everywhere a thread of the worker
watches its parent's pid and, once it changed (the worker was re-parented), kills the worker's process group.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from harness.errors import HarnessError
from harness.runner.faults import REPLACE_WORKER_AFTER, classify_exit, exit_hint
from harness.runner.parent import die_with_parent_signal, watch_parent
from harness.runner.worker import worker_main

STARTUP_TIMEOUT_S = 300.0


def describe_exit(exitcode: int | None) -> str:
    """Return a readable account of a process exit code (negative = killed by that signal)."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def worker_entry(conn: Connection, parent_pid: int, kernel_watch: bool) -> None:
    """The worker process's entry point: arrange to die with the parent ``parent_pid`` (``kernel_watch``: also by
    the Linux signal), then serve tasks (:func:`harness.runner.worker.worker_main`)."""
    if kernel_watch:
        die_with_parent_signal()
    if os.getppid() != parent_pid:  # the parent died before the watches were set
        os._exit(1)
    watch_parent(parent_pid)
    worker_main(conn)


class WorkerProcess:
    """One spawned worker process, started lazily and restarted after it dies or times out."""

    def __init__(self) -> None:
        self._proc: Any = None
        self._conn: Any = None
        self.env: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        """Return the worker process's pid (None before it is launched)."""
        return self._proc.pid if self._proc is not None else None

    def launch(self) -> None:
        """Spawn the worker without waiting for it (it imports torch meanwhile); no-op if one is alive."""
        if self._proc is not None and self._proc.is_alive():
            return
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        kernel_watch = threading.current_thread() is threading.main_thread()  # the signal follows this thread
        self._proc = ctx.Process(target=worker_entry, args=(child, os.getpid(), kernel_watch), daemon=True,
                                 name="harness-worker")
        self._proc.start()
        child.close()
        self._conn = parent
        self.env = {}

    def start(self) -> dict[str, Any]:
        """Launch the worker if needed and wait until it is ready; return its environment capture."""
        self.launch()
        if self.env:
            return self.env
        if not self._conn.poll(STARTUP_TIMEOUT_S):
            self.stop()
            raise HarnessError(f"the worker process did not start within {STARTUP_TIMEOUT_S:.0f} s")
        try:
            self.env = self._conn.recv()["env"]
        except EOFError:
            code = self._proc.exitcode
            self.stop()
            raise HarnessError(f"the worker process died while starting ({describe_exit(code)})") from None
        return self.env

    def run(self, task: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Run one task in the worker; return its outcome, or a failed outcome if it died or timed out."""
        self.start()
        self._conn.send(task)
        if not self._conn.poll(timeout_s):
            self.stop()
            return _failed(f"Timeout: the case ran longer than {timeout_s:g} s; the worker was killed",
                           timeout_s, "timeout")
        try:
            outcome = self._conn.recv()
        except (EOFError, ConnectionResetError):
            self._proc.join(5)
            code = self._proc.exitcode
            self.stop()
            return _failed(f"WorkerCrash: the worker process {describe_exit(code)} while running the case"
                           f"{exit_hint(code)}", None, classify_exit(code))
        if outcome.get("failure_class") in REPLACE_WORKER_AFTER:
            self.stop()  # the worker exits after such a failure; the next case starts a fresh one
        return outcome

    def stop(self) -> None:
        """Ask a ready worker to exit, then kill it if it does not; kill one still starting (importing torch: it
        would not read the request before it is done); safe to call twice."""
        if self._proc is None:
            return
        if self._proc.is_alive() and self._conn is not None and self.env:
            try:
                self._conn.send(None)
            except (OSError, ValueError):
                pass
            self._proc.join(2)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        _kill_group(self._proc.pid)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None


def _kill_group(pid: int) -> None:
    """Kill what is left of the worker's process group (torchrun and its processes); no-op if none."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _failed(error: str, duration_s: float | None, failure_class: str) -> dict[str, Any]:
    return {"status": "failed", "error": error, "failure_class": failure_class, "values": {}, "duration_s": duration_s}
