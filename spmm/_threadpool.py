"""threadpoolctl integration: spmm's threads appear in ``threadpool_info()`` and obey
``threadpool_limits()``.

threadpoolctl finds libraries by the file names of loaded shared objects; ours is the
``_spmm_ext`` extension module. Its thread count is a Python setting (``num_threads``), so the
controller reads and writes that setting, for the calling thread, as ``set_config`` does. The
limit thus applies to both parallel backends, whichever is in use.
"""

from __future__ import annotations

import threadpoolctl

from . import _config


class _Unset(int):
    """The effective thread count when none is set in this thread's configuration.

    threadpoolctl restores a limit by passing back the value ``get_num_threads`` returned
    before it; this marker lets ``set_num_threads`` restore "not set" rather than pinning the
    number, so ``SPMM_NUM_THREADS`` and the default keep applying after the limit's scope.
    """


class SpmmController(threadpoolctl.LibController):
    """threadpoolctl controller for spmm's thread count."""

    user_api = "spmm"
    internal_api = "spmm"
    filename_prefixes = ("_spmm_ext",)

    def get_num_threads(self) -> int | None:
        explicit = _config.local_num_threads()
        if explicit is not None:
            return explicit
        try:
            return _Unset(_config.resolve()["num_threads"])
        except ValueError:  # an invalid SPMM_* variable: reported by multiply, not here
            return None

    def set_num_threads(self, num_threads: int | None) -> None:
        if num_threads is None or isinstance(num_threads, _Unset):
            _config.set_num_threads_unchecked(None)
        else:
            _config.set_config(num_threads=num_threads)

    def get_version(self) -> str:
        from . import __version__

        return __version__

    def set_additional_attributes(self) -> None:
        self.backends = _config.available_backends()


_registered = False


def register() -> None:
    """Register the controller with threadpoolctl (once per process)."""
    global _registered
    if not _registered:
        threadpoolctl.register(SpmmController)
        _registered = True
