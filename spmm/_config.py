"""Configuration: backend, thread count, kernel and instruction set.

Resolution order for each setting: the call's keyword, then ``set_config`` /
``config_context`` (thread-local, as in scikit-learn), then the ``SPMM_*`` environment
variables, then the defaults. Environment variables are read when a setting is needed, not at
import, so an invalid one never breaks ``import spmm``: it is a ``ValueError`` at the first
call that needs configuration.
"""

from __future__ import annotations

import numbers
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from sys import modules as _modules
from typing import Any

from . import _dask_bridge, _spmm_ext
from ._checks import choices

# The names, each defined once in C++ (include/spmm/names.hpp); a name's code is its index.
VOCABULARY = _spmm_ext.vocabulary()
KERNELS = ("auto", *VOCABULARY["kernel"])
BACKENDS = VOCABULARY["backend"]
PARTITIONS = ("auto", *VOCABULARY["partition"])
SIMD_LEVELS = VOCABULARY["simd"]


def codes(kind: str) -> dict[str, int]:
    """``{name: code}`` for one list of :data:`VOCABULARY` (``"kernel"``, ``"backend"``,
    ``"partition"`` or ``"simd"``)."""
    return {name: code for code, name in enumerate(VOCABULARY[kind])}

# The largest num_threads: 64 threads per CPU of the machine (os.cpu_count(), not the
# affinity mask, so the bound does not move when the mask does), and never more than 4096.
# 64 per CPU leaves room to study oversubscription; beyond it a thread count is a mistake
# (a typo, a size passed for a count) that would try to start that many OS threads: libgomp
# then ends the process with exit() when it cannot create them, and the threads backend
# would hold them. 4096 caps what the bound allows on the largest machines: each thread
# reserves a stack (8 MiB of address space by default), 32 GiB at 4096, and containers often
# limit a process to a few thousand threads (pids.max). Even below the bound, a process
# limit can stop thread creation: the threads backend then raises RuntimeError.
MAX_THREADS: int = min(4096, 64 * (os.cpu_count() or 1))

ENV_VARS = {
    "backend": "SPMM_BACKEND",
    "num_threads": "SPMM_NUM_THREADS",
    "kernel": "SPMM_KERNEL",
    "simd": "SPMM_SIMD",
}

_threadlocal = threading.local()


def available_backends() -> list[str]:
    """Backends this build of spmm can run, in the order of :data:`BACKENDS`.

    Returns
    -------
    list of str
        Always ``"serial"`` and ``"threads"``; ``"openmp"`` too when the extension was
        compiled with OpenMP.
    """
    return [b for b in BACKENDS if b != "openmp" or _spmm_ext.has_openmp()]


def available_simd() -> list[str]:
    """Instruction-set levels this build and CPU support, lowest first.

    ``"scalar"`` (always) is the portable C++ code, compiled for the architecture's baseline
    (SSE2 on x86-64, NEON on aarch64) and auto-vectorized by the compiler. On x86-64,
    ``"avx2"`` (AVX2 + FMA) and ``"avx512"`` (AVX-512 F, BW, DQ and VL) follow when the CPU
    has them; on aarch64, ``"neon"`` always follows. The ``tiled`` kernel then runs a
    register-blocked version written for that instruction set. ``"avx2_vnni"`` (AVX-VNNI),
    ``"avx512_vnni"`` (AVX512_VNNI) and ``"avx512_bf16"`` (AVX512_BF16 and VNNI) run the
    ``avx2`` / ``avx512`` kernels, ``"neon_dot"`` (SDOT) and ``"neon_bf16"`` (BFDOT and SDOT)
    the ``neon`` ones, and add the dot-product instructions that
    ``prepare(activations=...)`` uses. The default is the last one.
    """
    return list(_SIMD_LEVELS)


_SIMD_LEVELS = tuple(_spmm_ext.simd_levels())  # asked once: the CPU does not change


def float_kernel_levels() -> dict[str, str]:
    """Each level of :func:`available_simd` and the level whose float kernels it runs: a level
    that only adds dot-product instructions (``avx512_vnni``...) runs those of the level below
    it (``{"avx512_vnni": "avx512", ...}``); the others run their own."""
    family, kernel = codes("family")["csr_rows"], codes("kernel")["tiled"]
    return {level: _spmm_ext.kernel_body(family, kernel, codes("simd")[level])[1]
            for level in _SIMD_LEVELS}


def default_num_threads() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1 and at most
    :data:`MAX_THREADS`."""
    cpus = _spmm_ext.affinity_cpus()  # read on every call: the mask may change at run time
    if cpus > 0:  # a cpu_set_t's worth of CPUs at most: within the bound
        return cpus
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_THREADS))


def _local() -> dict[str, Any]:
    """This thread's explicitly set values (``None`` means "not set here")."""
    try:
        return _threadlocal.config
    except AttributeError:
        _threadlocal.config = dict.fromkeys(ENV_VARS)
        return _threadlocal.config


def validate_backend(value: Any, source: str) -> str:
    """Return ``value`` if it is a backend this build has, else raise ValueError."""
    if not isinstance(value, str) or value not in BACKENDS:
        raise ValueError(f"{source} must be one of {choices(BACKENDS)}; got {value!r}")
    if value == "openmp" and not _spmm_ext.has_openmp():
        raise ValueError(
            f"{source} is {value!r}, which is not available: spmm was built without OpenMP. "
            f"Available backends: {choices(available_backends())}"
        )
    return value


def validate_kernel(value: Any, source: str) -> str:
    """Return ``value`` if it names a kernel, else raise ValueError."""
    if not isinstance(value, str) or value not in KERNELS:
        raise ValueError(f"{source} must be one of {choices(KERNELS)}; got {value!r}")
    return value


def validate_num_threads(value: Any, source: str) -> int:
    """Return ``value`` if it is an int from 1 to :data:`MAX_THREADS` (bools excluded), else
    raise ValueError."""
    if type(value) is int and 1 <= value <= MAX_THREADS:  # the common case, checked cheaply
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{source} must be a positive integer; got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{source} must be a positive integer (1 or more); got {value!r}")
    if int(value) > MAX_THREADS:
        raise ValueError(
            f"{source} must be at most {MAX_THREADS} (64 threads per CPU of this machine's "
            f"{os.cpu_count() or 1}, and never more than 4096); got {value!r}")
    return int(value)


def validate_simd(value: Any, source: str) -> str:
    """Return ``value`` if this machine and build support it, else raise ValueError."""
    if not isinstance(value, str) or value not in SIMD_LEVELS:
        raise ValueError(f"{source} must be one of {choices(SIMD_LEVELS)}; got {value!r}")
    if value not in available_simd():
        raise ValueError(
            f"{source} is {value!r}, which this build and CPU do not support; "
            f"supported: {choices(available_simd())}"
        )
    return value


_VALIDATORS = {
    "backend": validate_backend,
    "num_threads": validate_num_threads,
    "kernel": validate_kernel,
    "simd": validate_simd,
}


def _from_environment(key: str) -> Any:
    """The validated value of ``key``'s environment variable, or ``None`` when unset/empty."""
    name = ENV_VARS[key]
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    if key == "num_threads":
        # Plain ASCII digits only: int() would also take "1_0" or other scripts' digits.
        if not (raw.isascii() and raw.isdigit()):
            raise ValueError(f"environment variable {name}={raw!r} must be a positive integer")
        return validate_num_threads(int(raw), f"environment variable {name}")
    return _VALIDATORS[key](raw, f"environment variable {name}")


_ENV_NAMES = tuple(os.fsencode(name) for name in ENV_VARS.values())

# (raw values, validated values) of the last environment parsed. Reading and validating the
# variables with os.environ costs microseconds, more than a small product, so they are parsed
# again only when their raw values change (`python bench/overhead.py` measures the per-call
# cost). A failed parse is not kept: an invalid variable is an error at every call.
_environment_cache: tuple[tuple[bytes | None, ...], tuple[Any, ...]] | None = None


def _parse_environment(raw: tuple[bytes | None, ...]) -> tuple[Any, ...]:
    """Parse and validate the variables whose raw values are ``raw``, and cache them."""
    global _environment_cache
    values = tuple(_from_environment(key) for key in ENV_VARS)
    _environment_cache = (raw, values)
    return values


def resolve_values(backend: Any = None, num_threads: Any = None,
                   kernel: Any = None) -> tuple[str, int, str, str]:
    """The effective ``(backend, num_threads, kernel, simd)`` for one call.

    Every environment variable is validated, even one a keyword overrides, so a typo in the
    environment is reported at the first call instead of being silently ignored.

    Parameters
    ----------
    backend, num_threads, kernel
        The call's keywords; ``None`` means "not given".
    """
    # The environment's cached values and _local(), inlined: this runs on every product.
    raw = _spmm_ext.environment_values(*_ENV_NAMES)
    cached = _environment_cache
    env = cached[1] if cached is not None and cached[0] == raw else _parse_environment(raw)
    env_backend, env_threads, env_kernel, env_simd = env
    try:
        local = _threadlocal.config
    except AttributeError:
        local = _local()
    if backend is not None:
        backend = validate_backend(backend, "the 'backend' parameter")
    elif (backend := local["backend"]) is None and (backend := env_backend) is None:
        backend = "openmp" if _spmm_ext.has_openmp() else "threads"
    if num_threads is not None:
        num_threads = validate_num_threads(num_threads, "the 'num_threads' parameter")
    elif (num_threads := local["num_threads"]) is None and (num_threads := env_threads) is None:
        num_threads = _spmm_ext.affinity_cpus() or default_num_threads()
        if "dask" in _modules:  # inside a dask task: its share of the cores
            num_threads = _dask_bridge.task_threads(num_threads)
    if kernel is not None:
        kernel = validate_kernel(kernel, "the 'kernel' parameter")
    elif (kernel := local["kernel"]) is None and (kernel := env_kernel) is None:
        kernel = "auto"
    simd = env_simd if env_simd is not None else _SIMD_LEVELS[-1]
    return backend, num_threads, kernel, simd


def resolve(**overrides: Any) -> dict[str, Any]:
    """The effective configuration for one call, as a dict keyed like :data:`ENV_VARS`.

    Parameters
    ----------
    **overrides
        The call's keywords (``backend``, ``num_threads``, ``kernel``); ``None`` means
        "not given".
    """
    return dict(zip(ENV_VARS, resolve_values(**overrides), strict=True))


def get_config() -> dict[str, Any]:
    """Return the effective configuration of the calling thread.

    Returns
    -------
    dict
        Keys ``"backend"``, ``"num_threads"``, ``"kernel"`` and ``"simd"``, each holding the
        value a call without keywords would use (never ``None``). A copy: changing it changes
        nothing.

    Raises
    ------
    ValueError
        If an ``SPMM_*`` environment variable holds an invalid value.

    See Also
    --------
    set_config, config_context
    """
    return resolve()


def set_config(
    backend: str | None = None,
    num_threads: int | None = None,
    kernel: str | None = None,
) -> None:
    """Set spmm's configuration for the calling thread.

    Values set here take precedence over the ``SPMM_*`` environment variables and are
    overridden by a call's keywords. Other threads are not affected (scikit-learn's rule).

    Parameters
    ----------
    backend : {"openmp", "threads", "serial"}, optional
        Threading backend. Global default: ``SPMM_BACKEND``, else ``"openmp"`` when built
        with OpenMP, else ``"threads"``.
    num_threads : int, optional
        Number of threads, from 1 to 64 per CPU of the machine (as counted by
        ``os.cpu_count()``, whatever the affinity mask) and never more than 4096. Global default:
        ``SPMM_NUM_THREADS``, else the CPUs this process may run on (inside a dask task,
        its task slot's share of them: see ``docs/dask.md``). More than the CPUs is allowed
        (oversubscription).
    kernel : {"auto", "naive", "reordered", "tiled"}, optional
        Kernel variant. Global default: ``SPMM_KERNEL``, else ``"auto"``.

    ``None`` leaves a setting unchanged. The instruction set is chosen with the ``SPMM_SIMD``
    environment variable only.

    Raises
    ------
    ValueError
        If a value is invalid; the message names the valid values.
    """
    given = {"backend": backend, "num_threads": num_threads, "kernel": kernel}
    checked = {k: _VALIDATORS[k](v, f"the {k!r} parameter") for k, v in given.items()
               if v is not None}
    _local().update(checked)


@contextmanager
def config_context(
    *,
    backend: str | None = None,
    num_threads: int | None = None,
    kernel: str | None = None,
) -> Iterator[None]:
    """Context manager that sets the configuration for the calling thread within its scope.

    Parameters are as in :func:`set_config`; the previous values are restored on exit, also
    when the block raises.

    Examples
    --------
    >>> import spmm
    >>> with spmm.config_context(backend="serial"):
    ...     spmm.get_config()["backend"]
    'serial'
    """
    saved = dict(_local())
    set_config(backend=backend, num_threads=num_threads, kernel=kernel)
    try:
        yield
    finally:
        _local().clear()
        _local().update(saved)


def set_num_threads_unchecked(value: int | None) -> None:
    """Set (or with ``None`` clear) this thread's ``num_threads``; used by threadpoolctl."""
    _local()["num_threads"] = value


def local_num_threads() -> int | None:
    """This thread's explicitly set ``num_threads``, or ``None``."""
    return _local()["num_threads"]
