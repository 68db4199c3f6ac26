"""A pruned multilayer perceptron end to end: accuracy, memory and latency per pruning pattern.

Trains a multilayer perceptron (scikit-learn's ``MLPClassifier``, two hidden layers of 2048)
on the handwritten digits that ship with scikit-learn, prunes the weights of both hidden
layers with :func:`spmm.prune` in each pattern at 50 % to 95 % sparsity, fine-tunes each
pruned model for a few epochs with the pruning mask re-applied, and reports for each model:

- the test accuracy, before and after the fine-tune;
- the memory of the pruned weights: dense, scipy CSR, and :func:`spmm.prepare`'s form;
- the latency of the whole forward pass at batch 1 and batch 256, with the pruned layers
  multiplied by numpy (the dense matrices, zeros included), scipy (CSR) and spmm (prepared);
- for spmm, each stored format of the values (``spmm.prepare(w, values=...)``): float32,
  bfloat16, float16 and int8, with the accuracy, memory and latency of each.

It writes ``pruned_mlp.md`` (the table, also printed), ``pruned_mlp.json`` (the raw figures)
and ``pruned_mlp.png`` (accuracy against latency) into ``--out``. About ten minutes on two
shared cores; ``--quick (narrow layers, fewer models) takes seconds. ``docs/pruning.md`` shows a
run and what to make of it.

Usage::

    pip install "spmm[examples]"     # scikit-learn and matplotlib
    python examples/pruned_mlp.py [--out DIR] [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
import timeit
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import threadpoolctl

import spmm

try:
    import matplotlib
    import sklearn
    from matplotlib import ticker
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
except ImportError as exc:  # an optional extra: say how to get it rather than a traceback
    sys.exit(f"pruned_mlp.py needs scikit-learn and matplotlib ({exc}): "
             'pip install "spmm[examples]"')

# Timed calls per round of a measurement: as many as fit in the profile's budget, within
# these bounds (at least 5 so that each round counts; at most 200 for the fast batch-1 calls).
MIN_REPEATS, MAX_REPEATS = 5, 200

# The test set is 25 % of the 1,797 digits (450 images): the larger batch must fit in it.
BATCHES = (1, 256)

# The formats spmm stores the pruned weights in (spmm.prepare's values=): a row each.
FORMATS = ("float32", "bfloat16", "float16", "int8")

# The units the layout column names for each pattern (spmm.prune's defaults, spelled out).
PATTERN_OPTIONS: dict[str, dict[str, Any]] = {
    "unstructured": {},
    "block": {"block": (32, 32)},
    "n_m": {},  # n and m per model: they fix the sparsity
    "tile_wise": {"tile": 128},
}


@dataclass(frozen=True)
class Profile:
    """What one run trains, prunes and times.

    Attributes
    ----------
    hidden : tuple of int
        The widths of the hidden layers.
    epochs : int
        Training epochs of the dense model.
    tune_epochs : int
        Epochs of the masked fine-tune of each pruned model.
    sparsities : tuple of float
        The sparsities of the unstructured, block and tile-wise models.
    n_m : tuple of (int, int)
        The (n, m) of the N:M models (their sparsity is ``1 - n/m``).
    budget : float
        Seconds of timed calls per measurement, over all rounds (before the bounds on
        repeats).
    rounds : int
        Rounds of measurement: each model's variants are timed in turn, this many times over.
    pause : float
        Seconds of sleep before each variant's calls in a round. Thread pools keep spinning
        after a call, and with two cores a spinning worker takes a core from whatever is
        measured next: after one product, this process's threads went on using CPU for 0.1
        to 0.2 s (OpenBLAS) and 20 ms (libgomp) on the development VM (their CPU times in
        /proc/self/task).
    """

    hidden: tuple[int, ...]
    epochs: int
    tune_epochs: int
    sparsities: tuple[float, ...]
    n_m: tuple[tuple[int, int], ...]
    budget: float
    rounds: int
    pause: float


FULL = Profile(hidden=(2048, 2048), epochs=30, tune_epochs=3,
               sparsities=(0.5, 0.75, 0.9, 0.95), n_m=((2, 4), (1, 4)), budget=0.6,
               rounds=3, pause=0.25)
# The quick sparsities are whole numbers of 32 x 32 blocks at width 256 (64 blocks).
QUICK = Profile(hidden=(256, 256), epochs=10, tune_epochs=1,
                sparsities=(0.5, 0.75), n_m=((2, 4),), budget=0.005, rounds=1,
                pause=0.0)


@dataclass
class Row:
    """One model's figures in one stored format (a row of the table). None where a column
    does not apply: a reduced format's row has spmm's figures only."""

    pattern: str
    sparsity: float  # reached: 1 - kept / total over the pruned layers
    layout: str | None  # spmm.prepare's choice, "/"-joined when the layers differ
    values: str  # the format spmm stores the pruned weights in (prepare's values=)
    accuracy_pruned: float | None  # test accuracy right after pruning, before the fine-tune
    accuracy: float  # test accuracy of the model that is timed (spmm's, for its format)
    dense_bytes: int | None
    scipy_csr_bytes: int | None
    spmm_bytes: int | None
    # Median seconds of one forward pass, keyed by batch size (JSON turns the keys into str).
    numpy_seconds: dict[int, float] | None
    scipy_seconds: dict[int, float] | None
    spmm_seconds: dict[int, float] | None


# --------------------------------------------------------------------------------------------
# The model.


def load_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits (8 x 8 images, 10 classes), standardized, split 75/25, as float32."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, stratify=y,
                                                        random_state=seed)
    scaler = StandardScaler().fit(x_train)
    # float32 throughout: MLPClassifier trains in the input's dtype, and float32 is the dtype
    # inference runs in.
    return (scaler.transform(x_train).astype(np.float32), y_train,
            scaler.transform(x_test).astype(np.float32), y_test)


def train(x: np.ndarray, y: np.ndarray, profile: Profile, seed: int) -> MLPClassifier:
    """The dense model: Adam with scikit-learn's defaults, for at most ``profile.epochs``
    epochs (fewer when the training loss stops improving)."""
    clf = MLPClassifier(hidden_layer_sizes=profile.hidden, max_iter=profile.epochs,
                        random_state=seed)
    with warnings.catch_warnings():
        # A fixed epoch budget is the point (the run time is bounded): that the loss could
        # still fall is expected, not worth a warning.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def pruned_layers(clf: MLPClassifier) -> range:
    """Indices into ``clf.coefs_`` of the pruned layers: the weights into each hidden layer.

    The output layer (2048 x 10 at full width) stays dense: it is 0.5 % of the weights, and
    its ten columns are narrower than a tile or a block.
    """
    return range(len(clf.coefs_) - 1)


def forward(x: np.ndarray, weights: Sequence[Any], biases: Sequence[np.ndarray]) -> np.ndarray:
    """The logits of the perceptron: ``relu(x @ W + b)`` per hidden layer, then ``x @ W + b``.

    Each ``W`` is whatever ``x @ W`` accepts: a numpy array, a scipy sparse array or a
    :class:`spmm.PreparedMatrix`, so one function times all three.
    """
    h = x
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w
        h += b
        if i < len(weights) - 1:
            np.maximum(h, 0, out=h)
    return h


def as_float32(clf: MLPClassifier) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Copies of ``clf``'s weights and biases in float32, the dtype inference runs in."""
    return ([w.astype(np.float32) for w in clf.coefs_],
            [b.astype(np.float32) for b in clf.intercepts_])


def masked_fine_tune(clf: MLPClassifier, masks: dict[int, np.ndarray], x: np.ndarray,
                     y: np.ndarray, epochs: int) -> None:
    """``epochs`` epochs of ``partial_fit``, the pruned weights set to zero after each one.

    The weights are masked in place: the Adam optimizer that ``fit`` left in ``clf`` (and
    that ``partial_fit`` carries on with) updates the arrays it was given, not new ones.
    Pruned weights drift from zero during an epoch and are reset at its end, so the model
    ends pruned exactly as ``masks`` say.
    """
    for _ in range(epochs):
        clf.partial_fit(x, y)
        for i, mask in masks.items():
            clf.coefs_[i] *= mask


# --------------------------------------------------------------------------------------------
# Measurement.


def timed_calls(run: Callable[[], object], budget: float) -> list[float]:
    """Wall times of calls of ``run()`` filling about ``budget`` seconds, after a warm-up call.

    The warm-up also pays for first-use work that inference does once (the form
    ``spmm.prepare`` builds for ``x @ p``, BLAS buffers). Wall time, because the products
    are multithreaded.
    """
    run()
    timer = timeit.Timer(run)
    once = timer.timeit(number=1)
    repeats = int(np.clip(budget / max(once, 1e-9), MIN_REPEATS, MAX_REPEATS))
    return timer.repeat(repeat=repeats, number=1)


def time_forward(variants: dict[str, Sequence[Any]], biases: Sequence[np.ndarray],
                 inputs: dict[int, np.ndarray], profile: Profile) -> dict[str, dict[int, float]]:
    """Median seconds of the forward pass with each variant's weights, per batch size.

    The variants are timed in turn, ``profile.rounds`` times over, and each median is taken
    over the calls of every round: a few seconds of disturbance (another process) then spoil
    one round's calls, not the median.

    When some weights are sparse, the dense ones (the output layer, 2048 x 10) are multiplied
    on one BLAS thread: their product is tiny, and OpenBLAS's workers, which spin after each
    call, would otherwise compete with the sparse products for the cores.
    """
    calls: dict[tuple[str, int], list[float]] = {(name, batch): [] for name in variants
                                                 for batch in inputs}
    for _ in range(profile.rounds):
        for name, weights in variants.items():
            sparse = any(not isinstance(w, np.ndarray) for w in weights)
            with threadpoolctl.threadpool_limits(limits=1 if sparse else None,
                                                 user_api="blas"):
                time.sleep(profile.pause)
                for batch, x in inputs.items():
                    calls[name, batch] += timed_calls(
                        lambda x=x, w=weights: forward(x, w, biases),
                        profile.budget / profile.rounds)
    return {name: {batch: statistics.median(calls[name, batch]) for batch in inputs}
            for name in variants}


def layout_name(p: spmm.PreparedMatrix) -> str:
    """``p``'s layout with its unit: "csr", "block 32x32", "tile 1x128", "n_m 2:4".

    ``PreparedMatrix.layout`` (and ``.block``, ``.n_m``) came with the structured layouts;
    before them every prepared matrix was CSR.
    """
    layout = getattr(p, "layout", "csr")
    block, n_m = getattr(p, "block", None), getattr(p, "n_m", None)
    if block is not None:
        return f"{layout} {block[0]}x{block[1]}"
    return layout if n_m is None else f"{layout} {n_m[0]}:{n_m[1]}"


def evaluate(pattern: str, options: dict[str, Any], dense: MLPClassifier, data: tuple,
             inputs: dict[int, np.ndarray], profile: Profile) -> list[Row]:
    """Prune a copy of ``dense`` with ``options``, fine-tune it, check and measure it: a row
    for float32 (with numpy and scipy beside spmm), then one per reduced format."""
    x_train, y_train, x_test, y_test = data
    clf = copy.deepcopy(dense)  # the copy's optimizer still updates the copy's coefs_
    layers = pruned_layers(clf)
    masks = {i: spmm.prune_mask(clf.coefs_[i], pattern=pattern, **options) for i in layers}
    for i, mask in masks.items():
        clf.coefs_[i] *= mask
    accuracy_pruned = accuracy_score(y_test, forward(x_test, *as_float32(clf)).argmax(1))
    masked_fine_tune(clf, masks, x_train, y_train, profile.tune_epochs)

    # The tuned weights are zero exactly where the mask prunes, so pruning them again selects
    # the same weights; spmm.prune stores every kept one (zeros too), which keeps the
    # pattern's structure for prepare to detect.
    dense_w, biases = as_float32(clf)
    sparse = {i: spmm.prune(dense_w[i], pattern=pattern, **options) for i in layers}
    prepared = {fmt: {i: spmm.prepare(s, values=fmt) for i, s in sparse.items()}
                for fmt in FORMATS}
    csr_w = [sparse.get(i, w) for i, w in enumerate(dense_w)]
    spmm_w = {fmt: [layers_of.get(i, w) for i, w in enumerate(dense_w)]
              for fmt, layers_of in prepared.items()}
    dense_w = [sparse[i].toarray() if i in sparse else w for i, w in enumerate(dense_w)]

    # Check the three before timing them: the same logits, to float32 rounding.
    logits = {fmt: forward(x_test, w, biases) for fmt, w in spmm_w.items()}
    for name, weights in (("numpy", dense_w), ("scipy", csr_w)):
        np.testing.assert_allclose(forward(x_test, weights, biases), logits["float32"],
                                   rtol=1e-4, atol=1e-4, err_msg=f"spmm and {name} disagree")
    seconds = time_forward({"numpy": dense_w, "scipy": csr_w,
                            **{f"spmm {fmt}": w for fmt, w in spmm_w.items()}},
                           biases, inputs, profile)
    sparsity = 1 - (sum(s.nnz for s in sparse.values())
                    / sum(s.shape[0] * s.shape[1] for s in sparse.values()))
    rows = []
    for fmt in FORMATS:
        # After the products: footprint() counts every form the prepared matrix holds,
        # including one built on first use of x @ p: what inference keeps in memory.
        footprints = [p.footprint() for p in prepared[fmt].values()]
        reference = fmt == "float32"  # numpy's, scipy's and the pruned accuracy: once
        rows.append(Row(
            pattern=pattern, sparsity=sparsity,
            layout="/".join(dict.fromkeys(layout_name(p) for p in prepared[fmt].values())),
            values=fmt, accuracy_pruned=float(accuracy_pruned) if reference else None,
            accuracy=float(accuracy_score(y_test, logits[fmt].argmax(1))),
            dense_bytes=sum(f["dense"] for f in footprints) if reference else None,
            scipy_csr_bytes=sum(f["scipy_csr"] for f in footprints) if reference else None,
            spmm_bytes=sum(f["prepared"] for f in footprints),
            numpy_seconds=seconds["numpy"] if reference else None,
            scipy_seconds=seconds["scipy"] if reference else None,
            spmm_seconds=seconds[f"spmm {fmt}"]))
    return rows


def baseline(dense: MLPClassifier, data: tuple, inputs: dict[int, np.ndarray],
             profile: Profile) -> Row:
    """The unpruned model, with numpy."""
    x_test, y_test = data[2], data[3]
    weights, biases = as_float32(dense)
    accuracy = float(accuracy_score(y_test, forward(x_test, weights, biases).argmax(1)))
    return Row(pattern="dense", sparsity=0.0, layout=None, values="float32",
               accuracy_pruned=accuracy,
               accuracy=accuracy,
               dense_bytes=sum(weights[i].nbytes for i in pruned_layers(dense)),
               scipy_csr_bytes=None, spmm_bytes=None,
               numpy_seconds=time_forward({"numpy": weights}, biases, inputs, profile)["numpy"],
               scipy_seconds=None, spmm_seconds=None)


def models(profile: Profile) -> list[tuple[str, dict[str, Any]]]:
    """(pattern, the keywords of spmm.prune) of every pruned model, in table order."""
    out = []
    for pattern, options in PATTERN_OPTIONS.items():
        if pattern == "n_m":
            out += [(pattern, {"n": n, "m": m}) for n, m in profile.n_m]
        else:
            out += [(pattern, {"sparsity": s, **options}) for s in profile.sparsities]
    return out


# --------------------------------------------------------------------------------------------
# Output.


def describe_run(profile: Profile, dense: MLPClassifier, threads: int | None,
                 seconds: float | None = None) -> str:
    """What ran where: versions, threads, CPU (the header of the table file)."""
    blas = dict.fromkeys(f"{i['internal_api']} {i['version']}, {i['num_threads']} threads"
                         for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas")
    config = spmm.get_config()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        f"- command: `{' '.join(['python examples/pruned_mlp.py', *sys.argv[1:]])}`",
        f"- model: digits (64 pixels, 10 classes), hidden layers {profile.hidden}, "
        f"{dense.n_iter_} epochs of Adam (at most {profile.epochs}); each pruned model "
        f"fine-tuned {profile.tune_epochs} epoch(s) with its mask",
        "- pruned: the weights into each hidden layer; the output layer stays dense",
        f"- machine: {cpu}, {len(os.sched_getaffinity(0))} CPUs for this process "
        f"({os.cpu_count()} online); threads: {threads or 'all'}",
        f"- spmm {spmm.__version__} (backend {config['backend']}, {config['num_threads']} "
        f"threads, {config['simd']}); numpy {np.__version__} ({', '.join(blas) or 'no BLAS'})"
        f"; scipy {scipy.__version__}; scikit-learn {sklearn.__version__}",
    ]
    if seconds is not None:
        lines.append(f"- run time: {seconds:.0f} s")
    return "\n".join(lines)


def _ms(seconds: dict[int, float] | None, batch: int) -> str:
    if seconds is None:
        return "—"
    ms = seconds[batch] * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _mib(nbytes: int | None) -> str:
    return "—" if nbytes is None else f"{nbytes / 2**20:.3g}"


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    small, large = BATCHES
    header = ["pattern", "sparsity", "spmm layout", "values", "accuracy pruned",
              "accuracy tuned",
              "dense MiB", "scipy CSR MiB", "spmm MiB",
              f"b{small} numpy ms", f"b{small} scipy ms", f"b{small} spmm ms",
              f"b{large} numpy ms", f"b{large} scipy ms", f"b{large} spmm ms"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in rows:
        cells = [r.pattern, f"{r.sparsity:.0%}", r.layout or "—", r.values,
                 "—" if r.accuracy_pruned is None else f"{r.accuracy_pruned:.1%}",
                 f"{r.accuracy:.1%}",
                 _mib(r.dense_bytes), _mib(r.scipy_csr_bytes), _mib(r.spmm_bytes)]
        for batch in BATCHES:
            cells += [_ms(r.numpy_seconds, batch), _ms(r.scipy_seconds, batch),
                      _ms(r.spmm_seconds, batch)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: Sequence[Row], path: Path) -> None:
    """Accuracy against forward-pass latency, one panel per batch size: spmm's float32
    curves filled, its reduced formats' in the same colour with their own line style."""
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    markers = {"unstructured": "o", "block": "s", "n_m": "^", "tile_wise": "D"}
    styles = {"bfloat16": "--", "float16": "-.", "int8": ":"}
    base = rows[0]
    fig, axes = plt.subplots(1, len(BATCHES), figsize=(12, 5), sharey=True)
    for ax, batch in zip(axes, BATCHES, strict=True):
        for i, (pattern, marker) in enumerate(markers.items()):
            mine = [r for r in rows if r.pattern == pattern and r.values == "float32"]
            if not mine:
                continue
            for fmt, style in styles.items():
                reduced = [r for r in rows if r.pattern == pattern and r.values == fmt]
                ax.plot([1e3 * r.spmm_seconds[batch] for r in reduced],
                        [100 * r.accuracy for r in reduced], marker + style, lw=0.8, ms=4,
                        color=f"C{i}", alpha=0.6, mfc="none",
                        label=f"spmm {fmt} (every pattern, its colour)" if i == 0 else None)
            y = [100 * r.accuracy for r in mine]
            # Joined in order of sparsity: each pattern's trade-off reads as one curve.
            ax.plot([1e3 * r.spmm_seconds[batch] for r in mine], y, marker + "-", lw=0.8,
                    color=f"C{i}", label=f"{pattern}, spmm")
            ax.plot([1e3 * r.scipy_seconds[batch] for r in mine], y, marker, color=f"C{i}",
                    mfc="none", alpha=0.5, label=f"{pattern}, scipy")
            for r, yy in zip(mine, y, strict=True):
                ax.annotate(f"{r.sparsity:.0%}", (1e3 * r.spmm_seconds[batch], yy),
                            textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.plot(1e3 * base.numpy_seconds[batch], 100 * base.accuracy, "*k", ms=12,
                label="dense, numpy")
        ax.axvline(1e3 * base.numpy_seconds[batch], color="k", ls=":", lw=0.8)
        ax.set_xscale("log")
        # Plain numbers (0.05, 2) rather than powers of ten on the log axis.
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(f"forward pass at batch {batch}, ms (log scale)")
        ax.set_title(f"batch {batch}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("test accuracy after fine-tune, %")
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Pruned MLP on digits: accuracy against latency (filled: spmm, hollow: "
                 "scipy, star: dense numpy)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("pruned_mlp_output"),
                        help="directory for the table and the plot (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="narrow layers and fewer models: seconds, for a smoke test")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for spmm, BLAS and training (default: every CPU)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be a positive integer; got {args.threads}")
    profile = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    # One limit for every pool in the process (spmm registers its own with threadpoolctl),
    # so that numpy, scipy and spmm are compared on the same number of threads.
    with threadpoolctl.threadpool_limits(limits=args.threads):
        data = load_data(seed=0)
        dense = train(data[0], data[1], profile, seed=0)
        inputs = {b: np.ascontiguousarray(data[2][:b]) for b in BATCHES}
        rows = [baseline(dense, data, inputs, profile)]
        print(f"dense model: {time.perf_counter() - start:.0f} s, test accuracy "
              f"{rows[0].accuracy:.1%}", flush=True)
        todo = models(profile)
        for k, (pattern, options) in enumerate(todo, 1):
            formats = evaluate(pattern, options, dense, data, inputs, profile)
            rows += formats
            r = formats[0]
            tuned = ", ".join(f"{f.accuracy:.1%} {f.values}" for f in formats)
            print(f"[{k}/{len(todo)}] {pattern} {r.sparsity:.0%} ({r.layout}): accuracy "
                  f"{r.accuracy_pruned:.1%} pruned; tuned: {tuned}; "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        header = describe_run(profile, dense, args.threads, time.perf_counter() - start)

    text = table(rows)
    accuracy_note = (
        f"Accuracy on the {len(data[3])} test digits. Memory: the pruned layers' weights. "
        "Latency: the median time of the whole forward pass (input to logits) with the pruned "
        "layers multiplied by numpy (dense, zeros included), scipy (CSR) or spmm (prepared), "
        f"over {profile.rounds} round(s) of at least {MIN_REPEATS} calls. Each pruned model "
        "has a row per format spmm stores its weights in (values): float32 with numpy and "
        "scipy beside it, then bfloat16, float16 and int8 (spmm only: their accuracy with the "
        "rounded weights, their memory and latency).")
    (args.out / "pruned_mlp.md").write_text(
        f"# Pruned MLP\n\n{header}\n\n{accuracy_note}\n\n{text}\n", encoding="utf-8")
    (args.out / "pruned_mlp.json").write_text(
        json.dumps({"profile": asdict(profile), "threads": args.threads,
                    "rows": [asdict(r) for r in rows]}, indent=1), encoding="utf-8")
    plot(rows, args.out / "pruned_mlp.png")
    print(f"\n{header}\n\n{text}\n\nwritten: {args.out / 'pruned_mlp.md'}, "
          f"{args.out / 'pruned_mlp.json'}, {args.out / 'pruned_mlp.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
