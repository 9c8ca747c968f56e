"""The worker of one side of ``harness ab``: started as ``CMD -m harness.runner.ab_worker`` in that side's
environment (its interpreter, its torch, its variables), it measures latency windows on request.

Protocol: JSON lines. Its standard output is kept for the protocol (anything printed is sent to standard error); it
first writes ``{"env": {...}}`` (:func:`harness.env.capture`), then answers each task line
``{"case": {...}, "latency": {options}}`` with ``{"status": "ok"|"failed"|"skipped", "error", "samples_ms",
"median_ms", "contended"}``; end of input ends it. The model and inputs of the last case are kept, so the rounds of
one case build it once.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, TextIO


def _protocol_stream() -> TextIO:
    """Return a stream on the process's original standard output, and point file descriptor 1 at standard error so
    that what torch, timm or a model print cannot break a protocol line."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return stream


def main() -> None:
    """Serve latency tasks read from standard input until it ends."""
    out = _protocol_stream()
    import torch

    import harness.zoo  # noqa: F401  (register the builders)
    from harness.case import Case
    from harness.env import capture
    from harness.errors import SkipCase
    from harness.metrics import latency
    from harness.zoo.build import build_inputs, build_model

    out.write(json.dumps({"env": capture()}, default=str) + "\n")
    built: tuple[str, Any, Any] | None = None
    default_threads = torch.get_num_threads()
    for line in sys.stdin:
        task = json.loads(line)
        answer: dict[str, Any]
        try:
            case = Case.from_dict(task["case"])
            torch.set_num_threads(case.threads or default_threads)
            if built is None or built[0] != case.case_id:
                built = None  # the previous case's model is released before the next is built
                built = (case.case_id, build_model(case), build_inputs(case))
            values = latency.measure(built[1], built[2], case, latency.Options.model_validate(task["latency"]))
            answer = {"status": "ok", "error": "", "samples_ms": list(values["latency_ms_samples"]),
                      "median_ms": values["latency_ms_median"], "contended": bool(values.get("latency_contended"))}
        except SkipCase as exc:
            answer = {"status": "skipped", "error": str(exc)}
        except Exception as exc:
            answer = {"status": "failed", "error": "".join(traceback.format_exception(exc)[-6:])}
        out.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
