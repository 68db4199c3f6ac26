"""spmm: fast sparse x dense matrix products for numpy and scipy users.

``spmm.multiply(a, b)`` computes ``a @ b`` when one operand is a scipy.sparse matrix and the
other is dense, on an OpenMP or a C++ ``std::thread`` pool backend. See ``docs/usage.md``.
"""

try:
    from . import _spmm_ext  # noqa: F401 - fail early, with advice, if it is missing
except ImportError as exc:  # pragma: no cover - depends on how spmm was (not) built
    import os as _os

    raise ImportError(
        f"spmm's compiled extension could not be imported ({exc}). If you are running from "
        "the source tree, this imported the uncompiled sources: install spmm with "
        "`pip install .` and run from another directory (or use `pytest`, not "
        f"`python -m pytest`, from the repository root). Package directory: "
        f"{_os.path.dirname(__file__)}"
    ) from exc

from ._config import available_backends, config_context, get_config, set_config
from ._pipeline import explain, multiply
from ._prepared import PreparedMatrix, prepare
from ._prune import prune, prune_mask
from ._show import show_config
from ._threadpool import register as _register_threadpool

__version__ = "0.1.0"

__all__ = [
    "PreparedMatrix",
    "__version__",
    "available_backends",
    "config_context",
    "explain",
    "get_config",
    "multiply",
    "prepare",
    "prune",
    "prune_mask",
    "set_config",
    "show_config",
]

_register_threadpool()
