"""The examples run end to end and write what they promise.

``examples/pruned_mlp.py --quick`` runs in a fresh process (as a user runs it) into a
temporary directory. The examples need the extra ``examples`` (scikit-learn, matplotlib), so
this file is skipped where either is missing; CI installs the extra and sets
SPMM_REQUIRE_EXAMPLES=1, which turns the skip into a failure.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from conftest import run_interpreter

if os.environ.get("SPMM_REQUIRE_EXAMPLES") != "1":
    for _module in ("sklearn", "matplotlib"):
        pytest.importorskip(_module, reason=f"the examples need {_module}, which is not "
                            'installed (pip install ".[examples]")')

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# (pattern, sparsity in %) of each model of the --quick table: the dense model, then the
# pruned, each in every format spmm stores its weights in.
QUICK_MODELS = {("dense", 0), ("unstructured", 50), ("unstructured", 75), ("block", 50),
                ("block", 75), ("n_m", 50), ("tile_wise", 50), ("tile_wise", 75)}
FORMATS = ("float32", "bfloat16", "float16", "int8")


def markdown_rows(text: str) -> list[dict[str, str]]:
    """The rows of the one Markdown table in ``text``, keyed by the header's cells."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header, body = split[0], split[2:]  # split[1] is the --- line
    return [dict(zip(header, cells, strict=True)) for cells in body]


def number(cell: str) -> float:
    return float(cell.rstrip("%"))


def test_pruned_mlp_quick_writes_a_row_per_model_and_the_plot(tmp_path: Path) -> None:
    done = run_interpreter([str(EXAMPLES / "pruned_mlp.py"), "--quick", "--threads", "2",
                            "--out", str(tmp_path)], timeout=120)
    assert done.returncode == 0, f"the example failed:\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "pruned_mlp.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    rows = markdown_rows((tmp_path / "pruned_mlp.md").read_text(encoding="utf-8"))
    assert markdown_rows(done.stdout) == rows  # printed as saved
    assert {(r["pattern"], round(number(r["sparsity"]))) for r in rows} == QUICK_MODELS
    assert [r["values"] for r in rows] == ["float32"] + [*FORMATS] * (len(QUICK_MODELS) - 1)

    dense = next(r for r in rows if r["pattern"] == "dense")
    assert number(dense["accuracy tuned"]) > 80  # digits are easy: a broken model is not
    float32 = {(r["pattern"], r["sparsity"]): r for r in rows if r["values"] == "float32"}
    for r in rows:
        reduced = r["values"] != "float32"
        assert 0 < number(r["accuracy tuned"]) <= 100
        timed = [k for k in r if k.endswith(" ms")]
        assert len(timed) == 6
        for key in timed:
            if (r["pattern"] == "dense" or reduced) and not key.endswith(
                    "spmm ms" if reduced else "numpy ms"):
                assert r[key] == "—"
            else:
                assert 0 < number(r[key]) < 10_000, (key, r[key])
        if reduced:  # spmm's figures only, in fewer bytes than its float32 form
            assert r["accuracy pruned"] == r["dense MiB"] == r["scipy CSR MiB"] == "—"
            reference = float32[r["pattern"], r["sparsity"]]
            assert 0 < number(r["spmm MiB"]) < number(reference["spmm MiB"]) / 2
            assert abs(number(r["accuracy tuned"]) - number(reference["accuracy tuned"])) < 5
            continue
        assert 0 < number(r["accuracy pruned"]) <= 100
        assert number(r["dense MiB"]) == number(dense["dense MiB"])  # the same layers
        if r["pattern"] != "dense":
            assert 0 < number(r["spmm MiB"])
            # CSR holds 8 bytes per kept float32 weight, dense 4 per weight: at 75 % it is
            # half the dense size.
            if number(r["sparsity"]) >= 75:
                assert number(r["scipy CSR MiB"]) < number(r["dense MiB"])
    # prepare's automatic layout: CSR for unstructured weights, each structured pattern's own
    # layout for the others.
    expected = {"dense": "—", "unstructured": "csr", "block": "block", "tile_wise": "tile",
                "n_m": "n_m"}
    for r in rows:
        assert r["spmm layout"].split()[0] == expected[r["pattern"]], r

    # The raw figures: a record per row, every time finite and positive.
    raw = json.loads((tmp_path / "pruned_mlp.json").read_text(encoding="utf-8"))["rows"]
    assert [r["pattern"] for r in raw] == [r["pattern"] for r in rows]
    assert [r["values"] for r in raw] == [r["values"] for r in rows]
    for r in raw:
        for times in (r["numpy_seconds"], r["scipy_seconds"], r["spmm_seconds"]):
            assert times is None or all(math.isfinite(t) and t > 0 for t in times.values())
