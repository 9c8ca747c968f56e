"""Calibrate the nightly gate's history rules (harness.history) on this machine.

  python tools/calibrate_nightly.py collect --results calib --aa 12 --slow 2
      runs suites/nightly.yaml 12 times (A/A: one commit, nothing changed), then 2 times with every model 10%
      slower (HARNESS_INJECT_SLOWDOWN='*=0.1'), all into the results directory `calib` (keep it apart from
      results/: the slowed runs look like ordinary ones, by design). Each run takes ~1.5 min on 2 cores.
  python tools/calibrate_nightly.py replay --results calib --slow 2
      judges every night as `harness compare --history 30` would have that night: the false alarms over the A/A
      nights' case-nights, and how many series the slowed nights flagged within 2 nights.
  python tools/calibrate_nightly.py simulate --results calib --slow 2
      the same rules on synthetic series at the between-night noise measured in `calib`'s A/A nights (and at
      1%, 2%, 4%): false alarms per case-night, detection of 5/10/20% steps within 2 nights.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from harness.compare import ENV_KEYS
from harness.history import case_series, noise_of
from harness.history_calibration import replay, simulate_detection, simulate_false_alarms
from harness.run_index import run_ids
from harness.store import ResultStore

SUITE = "nightly"
STEPS = (0.05, 0.10, 0.20)


def collect(args: argparse.Namespace) -> None:
    """Run the nightly suite ``--aa`` times, then ``--slow`` times with the injected slowdown."""
    nights = [("A/A", {})] * args.aa + [("slowed", {"HARNESS_INJECT_SLOWDOWN": f"*={args.fraction}"})] * args.slow
    for i, (kind, extra) in enumerate(nights, 1):
        print(f"night {i}/{len(nights)} ({kind})", flush=True)
        command = [sys.executable, "-m", "harness.cli", "run", args.suite, "--results", args.results,
                   "--no-progress"]
        subprocess.run(command, env={**os.environ, **extra}, check=False)


def _records(results: str) -> tuple[list[str], object]:
    store = ResultStore(results)
    runs = run_ids(store, SUITE)[::-1]  # oldest first
    if not runs:
        sys.exit(f"no run of suite {SUITE!r} in {results}/")
    return runs, store.read(suite=SUITE)


def measured_noise(results: str, aa_runs: int) -> list[float]:
    """Return σ (relative) of each case's series over the first ``aa_runs`` runs of ``results``."""
    runs, records = _records(results)
    series = case_series(records, runs[:aa_runs], ENV_KEYS)
    return [noise_of(np.log([n.value_ms for n in nights if not n.left_out]),
                     np.array([n.noise_rel for n in nights if not n.left_out])) for nights in series.values()]


def replay_command(args: argparse.Namespace) -> None:
    """Print the replayed rates of ``--results``: false alarms on the A/A nights, detection on the slowed ones."""
    runs, records = _records(args.results)
    aa, slowed = runs[:len(runs) - args.slow], runs[len(runs) - args.slow:]
    result = replay(records, runs, ENV_KEYS, min_effect=args.min_effect, window=args.window)
    rates = result.rates(aa)
    print(f"{len(aa)} A/A nights, {len(slowed)} slowed nights of {args.results}/ (min effect {args.min_effect:g})")
    print(f"A/A case-nights judged: {rates.judged}; regressed: {rates.regressed} ({rates.regressed_rate:.1%}); "
          f"any alarm: {rates.alarms} ({rates.alarm_rate:.1%})")
    if slowed:
        caught = result.detected_within(slowed[:2])
        print(f"slowed series judged: {caught.judged}; flagged regressed within 2 nights: {caught.regressed} "
              f"({caught.regressed_rate:.0%})")
    sigmas = measured_noise(args.results, len(aa))
    print(f"between-night noise σ of the A/A series: median {np.median(sigmas):.1%}, "
          f"range {min(sigmas):.1%}–{max(sigmas):.1%}")


def simulate_command(args: argparse.Namespace) -> None:
    """Print synthetic false-alarm and detection rates at the measured noise and at fixed levels."""
    levels = [0.01, 0.02, 0.04]
    if args.results:
        runs = _records(args.results)[0]
        levels.append(float(np.median(measured_noise(args.results, len(runs) - args.slow))))
    print("σ (between nights) | false alarms / case-night | detected within 2 nights: " +
          " / ".join(f"{s:.0%}" for s in STEPS))
    for sigma in sorted(levels):
        common = {"sigma": sigma, "drift": sigma / 10, "within": sigma / 2, "min_effect": args.min_effect}
        fa = simulate_false_alarms(series=args.series, nights=args.nights, **common)
        detected = [simulate_detection(step, series=args.series, history=15, **common).regressed_rate
                    for step in STEPS]
        print(f"{sigma:6.1%} | {fa.regressed_rate:.2%} of {fa.judged} | " + " / ".join(f"{d:.0%}" for d in detected))


def main() -> None:
    """Parse the command line and run the sub-command."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("collect", help="run the nightly suite A/A, then slowed")
    p.add_argument("--results", required=True)
    p.add_argument("--suite", default=str(Path(__file__).resolve().parent.parent / "suites" / "nightly.yaml"))
    p.add_argument("--aa", type=int, default=12)
    p.add_argument("--slow", type=int, default=2)
    p.add_argument("--fraction", type=float, default=0.1)
    p.set_defaults(func=collect)
    for name, func in (("replay", replay_command), ("simulate", simulate_command)):
        p = sub.add_parser(name)
        p.add_argument("--results", required=name == "replay")
        p.add_argument("--slow", type=int, default=0, help="the last SLOW runs are the slowed ones")
        p.add_argument("--min-effect", type=float, default=0.05)
        p.add_argument("--window", type=int, default=30)
        p.add_argument("--series", type=int, default=200)
        p.add_argument("--nights", type=int, default=30)
        p.set_defaults(func=func)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
