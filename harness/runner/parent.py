"""A child process that must not outlive its parent: the Linux parent-death signal, and a watch of the parent's pid
that works everywhere (the worker uses both; torchrun and its ranks get the signal)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

#: Seconds between two looks of the worker at its parent's pid.
PARENT_POLL_S = 0.5
#: prctl option: the signal this process gets when its parent dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1


def die_with_parent_signal() -> bool:
    """Ask Linux to SIGKILL this process when the thread that started it dies; return whether it was set (False
    off Linux or without a C library)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return False
    return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def watch_parent(parent_pid: int, interval_s: float = PARENT_POLL_S) -> threading.Thread:
    """Start and return a daemon thread that, once this process's parent is no longer ``parent_pid`` (it died and
    this process was re-parented), kills this process's group (this process and what it launched, torchrun
    included) when this process leads it, else this process alone."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        else:
            os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="harness-parent-watch", daemon=True)
    thread.start()
    return thread
