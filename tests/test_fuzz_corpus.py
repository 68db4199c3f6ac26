"""The fuzz corpus: every input the fuzzer (tests/fuzz/run.py) ever found failing, replayed.

Each recipe runs in a forked child (a crash fails the test instead of ending the run) and
must now pass the fuzzer's checks: scipy's product within the rounding bound, or a TypeError
or ValueError, the operands unchanged. A few random cases also run, so that the harness itself
keeps working between fuzzing runs (the long run is ``python tests/fuzz/run.py``, in CI).
"""

from __future__ import annotations

import pytest
from fuzz import harness
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.asan

CASES = harness.load_corpus()


@pytest.mark.parametrize("recipe", [recipe for _, recipe in CASES],
                         ids=[name.removesuffix(".json") for name, _ in CASES])
def test_every_input_that_ever_failed_now_passes(recipe):
    verdict = harness.run_isolated(recipe)
    assert verdict["status"] in ("ok", "known"), (
        f"{harness.describe(recipe)}: {verdict['status']}: {verdict.get('why')}\n"
        f"{verdict.get('trace', '')}")


@settings(max_examples=25, suppress_health_check=list(HealthCheck))
@given(harness.recipes())
def test_random_recipes_pass_the_fuzzers_checks(recipe):
    verdict = harness.run_isolated(recipe)
    assert verdict["status"] in ("ok", "known"), (
        f"{harness.describe(recipe)}: {verdict['status']}: {verdict.get('why')}\n"
        f"{verdict.get('trace', '')}")


def test_the_harness_sees_a_crash_as_a_crash():
    """run_isolated reports a child killed by a signal, rather than dying with it."""
    import faulthandler
    import os
    import signal

    def crash(recipe):
        faulthandler.disable()  # (no traceback on the test's output: this crash is intended)
        os.kill(os.getpid(), signal.SIGSEGV)

    original = harness.check
    harness.check = crash
    try:
        verdict = harness.run_isolated(CASES[0][1] if CASES else {})
    finally:
        harness.check = original
    # (Under AddressSanitizer, its handler reports the signal and ends the child itself.)
    assert verdict["status"] == "crash", verdict
