"""The worker process: builds each case's model and takes its metrics, away from the CLI process.

torch is imported once per worker and the worker is reused between cases; a case that crashes the
process (abort, segfault, out-of-memory kill) takes only the worker down, and the parent starts a new
one. A case that runs in a torch.distributed group is launched from here through torchrun
(:mod:`harness.runner.torchrun`). Messages on the pipe: the worker first sends ``{"env": {...}}``; then for each task
``{"case": {...}, "metrics": {name: options}}`` it answers ``{"status", "error", "failure_class", "values",
"duration_s"}``; ``None`` asks it to exit. After a failure of a class in
:data:`harness.runner.faults.REPLACE_WORKER_AFTER` (a CUDA illegal memory access) it exits after answering.
"""

from __future__ import annotations

import gc
import os
import signal
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from harness.runner.faults import REPLACE_WORKER_AFTER, classify_exception


def measure_case(case: Any, metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Build the case's model (weights drawn from its seed) and inputs, take each metric in order, and return the
    merged values. A seeded metric (one that trains) starts from every generator seeded again with the case's
    seed, whatever the metrics before it drew, and runs under torch's deterministic algorithms; ``deterministic``
    says whether that made it exactly repeatable on the case's device."""
    from harness.metrics import get_metric
    from harness.seeding import deterministic_algorithms, seed_everything
    from harness.zoo.build import build_inputs, build_model

    model = build_model(case)
    inputs = build_inputs(case)
    values: dict[str, Any] = {}
    for name, options in metrics.items():
        module = get_metric(name)
        validated = module.Options.model_validate(options)
        if not getattr(module, "SEEDED", False):
            values |= module.measure(model, inputs, case, validated)
            continue
        seed_everything(case.seed)
        with deterministic_algorithms(case.device) as exact:
            values |= module.measure(model, inputs, case, validated)
        values["deterministic"] = exact and values.get("deterministic", True)
    return values


def release_cuda_memory() -> None:
    """Hand the CUDA memory the last case left cached back: cuBLAS workspaces (live allocations that would count in
    the next case's peak) and the caching allocator's free blocks (an out-of-memory retry at a smaller batch needs
    them)."""
    import torch

    clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear_workspaces is not None:
        clear_workspaces()
    torch.cuda.empty_cache()


def execute_case(case_dict: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Run one case; return ``{status: ok|failed|skipped, error, values, duration_s}`` (never raises)."""
    import torch

    from harness.case import Case
    from harness.errors import SkipCase
    from harness.runner.torchrun import launch, needs_group

    start = time.perf_counter()
    values: dict[str, Any] = {}
    status, error, failure_class = "ok", "", None
    default_threads = torch.get_num_threads()
    try:
        case = Case.from_dict(case_dict)
        if needs_group(case) and not torch.distributed.is_initialized():
            return launch(case, metrics)
        if case.threads:
            torch.set_num_threads(case.threads)
        values = measure_case(case, metrics)
    except SkipCase as exc:
        status, error = "skipped", str(exc)
    except Exception as exc:
        frames = traceback.format_exception(exc)
        status, error = "failed", f"{type(exc).__name__}: {exc}\n" + "".join(frames[-12:])
        failure_class = classify_exception(exc)
    finally:
        torch.set_num_threads(default_threads)
        gc.collect()
        if torch.cuda.is_initialized() and failure_class not in REPLACE_WORKER_AFTER:
            release_cuda_memory()
    return {"status": status, "error": error, "failure_class": failure_class, "values": values,
            "duration_s": time.perf_counter() - start}


def worker_main(conn: Connection) -> None:
    """Serve tasks from ``conn`` until it sends None or closes; Ctrl-C is left to the parent.

    The worker leads a process group of its own, so the parent can kill it together with anything it
    launched (torchrun and its processes).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setpgid(0, 0)
    import harness.zoo  # noqa: F401  (torch, timm and the builders load before the first case's timeout)
    from harness.env import capture

    gc.freeze()  # the modules just loaded live as long as the worker: no collection walks them again (each ~0.2 s)

    conn.send({"env": capture()})
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        outcome = execute_case(task["case"], task["metrics"])
        conn.send(outcome)
        if outcome.get("failure_class") in REPLACE_WORKER_AFTER:
            return  # the CUDA context is lost: the parent starts a fresh worker for the next case
