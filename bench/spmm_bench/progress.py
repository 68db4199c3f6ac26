"""Progress display: a tqdm bar when tqdm is installed, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class Progress:
    """Counts finished measurements out of ``total``.

    With tqdm, a live bar; without it (the core harness needs no extras), one line per group
    and a count every ``every`` seconds.
    """

    def __init__(self, total: int, enabled: bool = True, stream: TextIO | None = None,
                 every: float = 10.0) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.every = every
        self._last = 0.0
        self._description = ""
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, file=self.stream, unit="pt", dynamic_ncols=True)

    def add_total(self, extra: int) -> None:
        """Count ``extra`` more measurements."""
        self.total += extra
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def describe(self, text: str) -> None:
        """Say what is running now (the group and thread count)."""
        self._description = text
        if self._bar is not None:
            self._bar.set_description(text)
        elif self.enabled:
            self._line()

    def update(self, n: int = 1) -> None:
        """One more measurement done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._last > self.every:
            self._line()

    def write(self, text: str) -> None:
        """A line of text that does not break the bar."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        elif self.enabled:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Finish the display."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._line()

    def _line(self) -> None:
        self._last = time.monotonic()
        print(f"[{self.done}/{self.total}] {self._description}", file=self.stream, flush=True)
