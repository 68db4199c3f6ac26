"""Fuzz spmm for a bounded time: ``python tests/fuzz/run.py --seconds 180``.

Draws recipes (``harness.recipes``) with Hypothesis, runs each in a forked child
(``harness.run_isolated``) and, on a failure (a crash, a hang, a wrong answer, an exception
other than TypeError/ValueError, a valid input refused), lets Hypothesis shrink it and writes
the smallest failing recipe to the corpus (``tests/fuzz/corpus/``), which the test suite
replays (``tests/test_fuzz_corpus.py``): commit it with the fix. A failure of a kind already
found (``harness.signature``) is counted but not shrunk again, so that one frequent failure
does not hide the others. Prints the executions, the
time taken and what failed; exits 1 if anything did.

Run it with the installed package, as the test suite runs (not from the repository root,
whose ``spmm/`` folder holds no compiled extension).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, str(Path(__file__).parent))
import harness


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0,
                        help="stop starting new rounds after this long (default 180)")
    parser.add_argument("--round", type=int, default=50,
                        help="examples per Hypothesis round (default 50)")
    parser.add_argument("--corpus", type=Path, default=harness.CORPUS,
                        help="where failing recipes are written")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the children report; the parent only draws and forks

    start = time.monotonic()
    counts = {"executions": 0}
    last: dict = {}
    failures: list[tuple[Path, dict]] = []
    known: dict[str, int] = {}
    reported: dict[tuple, int] = {}  # failures found, by signature: how often seen again

    @settings(max_examples=args.round, database=None, deadline=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
              report_multiple_bugs=False)
    @given(harness.recipes())
    def case(recipe: dict) -> None:
        verdict = harness.run_isolated(recipe)
        counts["executions"] += 1
        if verdict["status"] == "known":
            name = verdict["why"].split(":")[0]
            known[name] = known.get(name, 0) + 1
        if verdict["status"] in harness.FAILURES:
            signature = harness.signature(recipe, verdict)
            if signature in reported:  # found and shrunk already: look for other failures
                reported[signature] += 1
                return
            last["recipe"], last["verdict"] = recipe, verdict
            raise AssertionError(f"{verdict['status']}: {verdict.get('why')}")

    next_report = start + 30
    while time.monotonic() - start < args.seconds:
        last.clear()
        try:
            case()
        except Exception:  # a failure (shrunk), or Hypothesis' own complaint about one
            if last:
                reported[harness.signature(last["recipe"], last["verdict"])] = 0
                path = harness.save(last["recipe"], last["verdict"], args.corpus)
                failures.append((path, last["verdict"]))
                print(f"FAILURE {last['verdict']['status']}: {last['verdict'].get('why')}\n"
                      f"  {harness.describe(last['recipe'])}\n  saved to {path}", flush=True)
        if time.monotonic() > next_report:
            next_report += 30
            print(f"... {counts['executions']} executions, {time.monotonic() - start:.0f} s",
                  flush=True)
    elapsed = time.monotonic() - start
    rate = counts["executions"] / elapsed * 60
    print(f"fuzz: {counts['executions']} executions in {elapsed:.1f} s ({rate:.0f} per minute), "
          f"{len(failures)} failure(s)")
    for path, verdict in failures:
        print(f"  {verdict['status']}: {path}")
    for name, count in known.items():
        print(f"  known ({count}x), not failing the run: {name}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
