"""The code in the docs runs, and prints what the docs say it prints.

Each page in PAGES is read like a session: its ```python blocks run in order in one namespace.

- A block with ``>>>`` prompts is a doctest: every output is checked (``...`` in an expected
  output stands for what depends on the machine or the build, such as a CPU count).
- Any other ```python block is executed.
- ``<!-- skip: why -->`` on the line before a block leaves it out, for a block that cannot
  run here (a script that times things, or that needs a file of the reader's). The reason is
  required.
- ``<!-- needs: torch -->`` on the line before a block runs it in a namespace of its own, and
  only where PyTorch is installed (a skip otherwise; ``SPMM_REQUIRE_TORCH=1`` turns that skip
  into a failure, as in ``test_torch.py``).

An errors table, one whose header is ``| raised when | call | error |``, is checked row by
row: the call (a Python expression in backticks), run in a copy of the page's namespace, must
raise exactly the row's error, ``Type: message``. A "raised when" cell that starts with an
environment variable in backticks (`` `SPMM_KERNEL=fast` ``) sets it for the call. A call that
mentions ``torch`` needs PyTorch; a row that cannot happen in this build or on this CPU
(:func:`cannot_happen_here`) is skipped.

Products below the built-in work threshold run on the calling thread here, as for a user (the
suite's default is to run every product in parallel), so ``explain`` reports what a user sees.
"""

from __future__ import annotations

import doctest
import os
import re
from pathlib import Path

import pytest

from spmm import _config, _spmm_ext

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ("usage.md", "architecture.md", "pruning.md")

BLOCK = re.compile(r"(?:^<!-- (skip|needs): *(.*?) *-->\n)?^```python\n(.*?)^```", re.M | re.S)
ERRORS_HEADER = "| raised when | call | error |"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

ENVIRONMENT = re.compile(r"^`(SPMM_[A-Z_]+)=([^`]*)`")


class Block:
    """A ```python block of a page: its code, first line number and marker (None, or
    ``("skip", reason)`` / ``("needs", module)``)."""

    def __init__(self, page: str, match: re.Match) -> None:
        self.page = page
        self.code = match.group(3)
        self.line = match.string.count("\n", 0, match.start(3)) + 1
        self.marker = (match.group(1), match.group(2)) if match.group(1) else None

    def __repr__(self) -> str:
        return f"{self.page}:{self.line}"

    def run(self, namespace: dict) -> None:
        """Run the block in ``namespace``: as a doctest when it has prompts, else as code."""
        if ">>>" not in self.code:
            exec(compile(self.code, f"{self.page}:{self.line}", "exec"), namespace)
            return
        test = doctest.DocTestParser().get_doctest(self.code, namespace, repr(self),
                                                   self.page, self.line - 1)
        report: list[str] = []
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        result = runner.run(test, out=report.append, clear_globs=False)
        namespace.update(test.globs)  # (a DocTest runs in a copy of the names it is given)
        assert result.failed == 0, "".join(report)


def blocks(page: str) -> list[Block]:
    return [Block(page, m) for m in BLOCK.finditer((DOCS / page).read_text())]


def error_rows(page: str) -> list[tuple[str, str, str, str]]:
    """(raised when, call, exception type, message) of every row of the page's errors
    tables."""
    rows, in_table = [], False
    for line in (DOCS / page).read_text().splitlines():
        if line.startswith(ERRORS_HEADER):
            in_table = True
        elif in_table and line.startswith("|") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            call, error = cells[1].strip("`"), cells[2].strip("`")
            kind, _, message = error.partition(": ")
            rows.append((cells[0], call, kind, message))
        elif not line.startswith("|"):
            in_table = False
    return rows


def needs_torch() -> None:
    """Skip unless PyTorch is installed (fail instead with SPMM_REQUIRE_TORCH=1)."""
    if os.environ.get("SPMM_REQUIRE_TORCH") != "1":
        pytest.importorskip("torch", reason="PyTorch is optional and not installed")


def run_page(page: str) -> dict:
    """Run the page's blocks in order (those that need an optional module apart)."""
    namespace: dict = {"__name__": f"docs.{page}"}
    for block in blocks(page):
        if block.marker is None:
            block.run(namespace)
    return namespace


def cannot_happen_here(when: str, call: str) -> bool:
    """Whether an error of the tables cannot happen in this build or on this CPU: asking for
    the openmp backend fails only without OpenMP, and an ``SPMM_SIMD`` level only on a CPU
    without it."""
    if 'backend="openmp"' in call:
        return _spmm_ext.has_openmp()
    env = ENVIRONMENT.match(when)
    return env is not None and env[1] == "SPMM_SIMD" and env[2] in _config.available_simd()


@pytest.fixture(autouse=True)
def _as_a_user_runs_it(default_parallel_threshold, tmp_path, monkeypatch) -> None:
    """The built-in work threshold, and a scratch directory for files the examples write."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_of_the_page_runs_and_prints_what_it_shows(page):
    assert blocks(page), f"{page} has no python block: the pattern no longer finds them"
    run_page(page)


@pytest.mark.parametrize("block", [b for p in PAGES for b in blocks(p)
                                   if b.marker and b.marker[0] == "needs"], ids=repr)
def test_blocks_needing_an_optional_module_run_where_it_is_installed(block):
    assert block.marker[1] == "torch", f"{block}: unknown module {block.marker[1]!r}"
    needs_torch()
    block.run({"__name__": f"docs.{block.page}"})


def test_skipped_blocks_say_why():
    for page in PAGES:
        for block in blocks(page):
            if block.marker and block.marker[0] == "skip":
                assert block.marker[1], f"{block}: <!-- skip: reason --> needs a reason"


ROWS = [(page, *row) for page in PAGES for row in error_rows(page)]
_NAMESPACES: dict[str, dict] = {}  # each page's namespace, run once for all its rows


def test_the_errors_tables_are_found():
    assert len([r for r in ROWS if r[0] == "usage.md"]) >= 30


@pytest.mark.parametrize(("page", "when", "call", "kind", "message"), ROWS,
                         ids=[f"{r[0]}:{r[2]}:{r[1][:20]}" for r in ROWS])
def test_each_error_in_the_tables_is_raised_with_its_message(page, when, call, kind, message,
                                                             monkeypatch):
    if cannot_happen_here(when, call):
        pytest.skip("this build and CPU cannot raise it")
    if "torch" in call:
        needs_torch()
    if page not in _NAMESPACES:
        _NAMESPACES[page] = run_page(page)
    namespace = dict(_NAMESPACES[page])
    if "torch" in call:
        import torch

        namespace["torch"] = torch
    env = ENVIRONMENT.match(when)
    if env:
        monkeypatch.setenv(env[1], env[2])
    with pytest.raises(Exception) as raised:
        eval(call, namespace)
    assert type(raised.value).__name__ == kind
    pattern = ".*?".join(re.escape(part) for part in message.split("..."))
    assert re.fullmatch(pattern, str(raised.value)), str(raised.value)
