"""Cases that run in a torch.distributed group: launched by the worker through torchrun.

A case with ``world_size`` > 1, or with norm ``syncbn`` (which needs a process group even of one), is
run by ``torchrun --standalone --nproc-per-node WORLD_SIZE -m harness.runner.rank TASK OUT``: each
process (:mod:`harness.runner.rank`) joins the group (NCCL on CUDA, one GPU per process; gloo on the CPU), runs
the case with :func:`harness.runner.worker.execute_case` and writes its outcome to ``OUT/rank<r>.pkl``. A process whose
case failed exits with status 1, so torchrun stops the others instead of leaving them waiting in a
collective. The worker returns process 0's outcome, or the first failed process's error.

The launcher runs in the worker's process group, so a worker killed for a timeout takes torchrun with it
(:meth:`harness.runner.process.WorkerProcess.stop`), and torchrun's processes die with their parent. On
the CPU each process gets ``cpu_count // world_size`` threads (torchrun's default is 1) unless the case
sets ``threads``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.runner.parent import die_with_parent_signal

OUTPUT_TAIL_CHARS = 3000


def needs_group(case: Any) -> bool:
    """Return True when ``case`` must run in a torch.distributed group (world_size > 1 or norm syncbn)."""
    return case.world_size > 1 or case.norm == "syncbn"


def launch(case: Any, metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Run ``case`` on ``case.world_size`` processes through torchrun; return the outcome to record."""
    import torch

    start = time.perf_counter()
    if case.device == "cuda" and torch.cuda.device_count() < case.world_size:
        have = torch.cuda.device_count()
        reason = f"needs {case.world_size} CUDA device(s), one per process; this machine has {have}"
        return {"status": "skipped", "error": reason, "values": {}, "duration_s": 0.0}
    with tempfile.TemporaryDirectory(prefix="harness-torchrun-") as tmp:
        folder = Path(tmp)
        (folder / "task.pkl").write_bytes(pickle.dumps({"case": case.to_dict(), "metrics": metrics}))
        threads = max(1, (os.cpu_count() or 1) // case.world_size)
        env = os.environ | {"OMP_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                   f"--nproc-per-node={case.world_size}", "-m", "harness.runner.rank",
                   str(folder / "task.pkl"), str(folder)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                              preexec_fn=die_with_parent_signal)  # torchrun dies with the worker
        outcomes = {int(p.stem.removeprefix("rank")): pickle.loads(p.read_bytes()) for p in folder.glob("rank*.pkl")}
    duration_s = time.perf_counter() - start
    failed = [(r, o) for r, o in sorted(outcomes.items()) if o["status"] == "failed"]
    if failed:
        rank, outcome = failed[0]
        return outcome | {"error": f"process {rank} of {case.world_size}: {outcome['error']}", "duration_s": duration_s}
    if 0 in outcomes and outcomes[0]["status"] == "skipped":
        return outcomes[0] | {"duration_s": duration_s}
    if done.returncode != 0 or 0 not in outcomes:
        tail = (done.stdout + done.stderr)[-OUTPUT_TAIL_CHARS:]
        return {"status": "failed", "values": {}, "duration_s": duration_s, "failure_class": "crash",
                "error": f"TorchrunError: torchrun exited with status {done.returncode}\n{tail}"}
    return outcomes[0] | {"duration_s": duration_s}
