"""The README's example runs as written, and its two set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_usage_example_runs():
    (block,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    exec(compile(block, "README.md", "exec"), {})


def test_exactly_two_set_up_commands_install_then_run_the_benchmark_and_the_tests():
    commands = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    assert commands == [
        'python -m venv .venv && . .venv/bin/activate && pip install ".[bench]" && '
        "python bench/run.py --suite quick",
        'python -m venv .venv && . .venv/bin/activate && pip install ".[test]" && pytest',
    ]
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "pip install \".[test]\" && pytest" in ci
