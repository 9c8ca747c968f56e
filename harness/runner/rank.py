"""One process of a torch.distributed group, as torchrun starts it (:mod:`harness.runner.torchrun` launches the
group): ``python -m harness.runner.rank TASK OUT`` joins the group, runs the case with
:func:`harness.runner.worker.execute_case` and writes its outcome to ``OUT/rank<r>.pkl``; it exits with status 1
when its case did not succeed, so torchrun stops the others instead of leaving them waiting in a collective."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

from harness.runner.parent import die_with_parent_signal


def main(argv: list[str]) -> int:
    """Run one task in this torchrun process: join the group, execute the case, write the outcome; return the
    process's exit status (0: ok, 1: the case failed or was skipped)."""
    die_with_parent_signal()  # torchrun starts each rank in a session of its own: killing the worker's group misses it
    if os.getppid() == 1:  # the parent died before the signal was asked for
        return 1
    import torch
    import torch.distributed as dist

    from harness.runner.worker import execute_case

    task_path, out_dir = argv
    task = pickle.loads(Path(task_path).read_bytes())
    cuda = task["case"]["device"] == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    outcome = execute_case(task["case"], task["metrics"])
    (Path(out_dir) / f"rank{dist.get_rank()}.pkl").write_bytes(pickle.dumps(outcome))
    if outcome["status"] != "ok":
        return 1
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
