"""What ``spmm.prepare`` costs once, what it saves per call, and how much memory it holds.

For each workload with a *prepare* measurement (issue 5, item 4): the one-time cost, the call
on the scipy matrix (*unprepared*) and on the prepared one, both on the backend and thread
count the prepare cost was measured with, and the number of calls after which preparing has
paid for itself: ``prepare / (unprepared - prepared)``, or never when the prepared call is not
faster. Beside it, the prepared matrix's bytes (``PreparedMatrix.nbytes``, every form it built:
for X @ W that includes Wᵀ's CSR) against the scipy CSR matrix's and the dense matrix's.
"""

from __future__ import annotations

from typing import Any

from .defaults import DEFAULT_PARTITION


def _spmm(measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in measurements if r["library"] == "spmm" and r["status"] == "ok"
            and r.get("kernel") == "auto" and r.get("partition") == DEFAULT_PARTITION
            and r.get("simd") is None]


def summarize(measurements: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per workload with a measured ``prepare``.

    Returns
    -------
    dict
        ``rows``: ``workload_id``, ``workload``, ``backend``, ``threads``,
        ``prepare_seconds``, ``unprepared_seconds``, ``prepared_seconds``,
        ``calls_to_pay_off`` (None when never), ``pays_off`` (bool, None when a call was not
        measured), ``prepared_nbytes``, ``csr_nbytes``, ``dense_nbytes``.
    """
    spmm = _spmm(measurements)
    calls = {(r["workload_id"], r["backend"], r["threads"], r["variant"]): r for r in spmm
             if r["variant"] in ("prepared", "unprepared")}
    rows = []
    for cost in (r for r in spmm if r["variant"] == "prepare"):
        key = (cost["workload_id"], cost["backend"], cost["threads"])
        slow, fast = calls.get((*key, "unprepared")), calls.get((*key, "prepared"))
        row = {"workload_id": cost["workload_id"], "workload": cost["workload"],
               "backend": cost["backend"], "threads": cost["threads"],
               "prepare_seconds": cost["median"],
               "unprepared_seconds": slow["median"] if slow else None,
               "prepared_seconds": fast["median"] if fast else None,
               "calls_to_pay_off": None, "pays_off": None,
               **{k: cost.get(k) for k in ("prepared_nbytes", "csr_nbytes", "dense_nbytes")}}
        if slow and fast:
            saving = slow["median"] - fast["median"]
            row["pays_off"] = saving > 0
            if saving > 0:
                row["calls_to_pay_off"] = cost["median"] / saving
        rows.append(row)
    return {"rows": rows}
