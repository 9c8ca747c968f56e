"""``harness coco-eval``: COCO box AP and AR of a detections file against COCO annotations."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from harness.cli.common import EXIT_OK, EXIT_USAGE
from harness.terminal import markup_text


def add_parser(sub: Any) -> None:
    """Add the ``coco-eval`` command to the sub-command parsers ``sub``."""
    from harness.metrics.coco import EVALUATORS

    parser = sub.add_parser(
        "coco-eval", help="COCO box AP and AR of a detections file against COCO annotations",
        description="Evaluate COCO results (a JSON list of {image_id, category_id, bbox: [x, y, width, height] "
        "in pixels, score}) against COCO instances annotations (images, annotations, categories) with COCOeval: "
        "iouType bbox, IoU 0.50:0.05:0.95, maxDets 1/10/100, areas (px²) small < 32², medium < 96², large ≥ 96². "
        "Prints its 12 summary stats (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl; fractions "
        "0-1, -1 where no object of that area exists). Exit status 2 for a missing or invalid file.",
    )
    parser.add_argument("annotations", metavar="ANNOTATIONS", help="COCO instances json (e.g. instances_val2017.json)")
    parser.add_argument("detections", metavar="DETECTIONS", help="COCO results json: a list of detections")
    parser.add_argument("--evaluator", choices=list(EVALUATORS), default="faster",
                        help="faster: faster-coco-eval (same numbers, faster); pycocotools: the reference "
                        "(default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object {AP: ..., ..., ARl: ...}")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Print COCOeval's 12 box stats of a COCO results file against COCO annotations; exit 2 on bad input."""
    from harness.errors import HarnessError
    from harness.metrics.coco import evaluate, summary_lines

    try:
        stats = evaluate(args.annotations, args.detections, args.evaluator)
    except HarnessError as exc:
        err.print(f"[red]error:[/] {markup_text(exc)}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(stats))
    else:
        for line in summary_lines(stats):
            out.print(markup_text(line), highlight=False, soft_wrap=True)
    return EXIT_OK
