"""Running code in a forked child, so that a crash or a hang is a result, not the end.

Used by the test suite (``conftest.run_in_forked_child``) and the fuzz harness
(``harness.run_isolated``); imports nothing but the standard library.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable


def forked(work: Callable[[], bytes], timeout: float) -> tuple[str, bytes | str]:
    """Run ``work()`` in a child made with ``os.fork()``; what it returned, or why not.

    Returns ``("ok", the bytes work() returned)``; ``("hang", why)`` when the child is still
    running after ``timeout`` seconds (it is killed); ``("crash", why)`` when it died by a
    signal, or exited without writing (``work`` raising is a crash too: catch in ``work``).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's code
        status = 1
        try:
            os.close(read_fd)
            payload = work()
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    with os.fdopen(read_fd, "rb") as pipe:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return ("hang", f"killed after {timeout} s")
            ready, _, _ = select.select([pipe], [], [], remaining)
            if ready:
                chunk = os.read(pipe.fileno(), 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return ("crash", f"killed by {signal.Signals(os.WTERMSIG(status)).name}")
    if not chunks:
        return ("crash", f"exited with status {os.WEXITSTATUS(status)} without a result")
    return ("ok", b"".join(chunks))
