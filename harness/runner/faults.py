"""How a case failed: one failure class per failed record, from the exception it raised or how its process ended.

The classes (column ``failure_class``; empty for ok and skipped records):

========================  ===========================================================================
``exception``             the case raised an exception of any other kind (a bad configuration, a bug)
``oom``                   out of memory: torch's CUDA ``OutOfMemoryError``, the CPU allocator's
                          "can't allocate memory", Python's ``MemoryError``, or the worker killed by
                          SIGKILL that the harness did not send (Linux's out-of-memory killer sends it)
``illegal_memory_access`` a CUDA kernel touched memory it must not (the CUDA context is lost with it, so
                          the worker is replaced before the next case)
``crash``                 the worker process died of a signal (segfault, abort, bus error, ...) or exited
``timeout``               the case ran past its timeout and the worker was killed
``nonfinite``             the model's output or training loss held NaN or infinite values
========================  ===========================================================================

Torch-free: exceptions are recognised by their type names and messages.
"""

from __future__ import annotations

import re
import signal

FAILURE_CLASSES: tuple[str, ...] = ("exception", "oom", "illegal_memory_access", "crash", "timeout", "nonfinite")

#: (failure class, exception type names, message pattern) in the order they are tried.
EXCEPTION_RULES: tuple[tuple[str, frozenset[str], re.Pattern[str] | None], ...] = (
    ("nonfinite", frozenset({"NonFiniteOutput"}), None),
    ("oom", frozenset({"OutOfMemoryError", "MemoryError"}),
     re.compile(r"out of memory|can't allocate memory|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED", re.I)),
    ("illegal_memory_access", frozenset(),
     re.compile(r"illegal memory access|misaligned address|illegal address|unspecified launch failure", re.I)),
)

#: Failure classes after which the worker process must not run another case.
REPLACE_WORKER_AFTER: frozenset[str] = frozenset({"illegal_memory_access"})


def classify_exception(exc: BaseException) -> str:
    """Return the failure class of an exception a case raised (see the module doc; ``exception`` by default),
    judged with the exceptions it was raised from (a count that stopped on an out-of-memory error is an ``oom``)."""
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__
    names = {cls.__name__ for link in chain for cls in type(link).__mro__}
    text = "\n".join(str(link) for link in chain)
    for failure_class, type_names, pattern in EXCEPTION_RULES:
        if names & type_names or (pattern is not None and pattern.search(text)):
            return failure_class
    return "exception"


def classify_exit(exitcode: int | None) -> str:
    """Return the failure class of a worker that ended with ``exitcode`` (negative: killed by that signal)
    without answering: ``oom`` for a SIGKILL the harness did not send, else ``crash``."""
    return "oom" if exitcode == -signal.SIGKILL else "crash"


def exit_hint(exitcode: int | None) -> str:
    """Return what an exit code most likely means, to append to the error text ('' when nothing to add)."""
    if exitcode == -signal.SIGKILL:
        return " (a SIGKILL the harness did not send: most likely the out-of-memory killer)"
    return ""
