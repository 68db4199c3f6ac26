"""``python -m spmm``: print the configuration; ``python -m spmm demo``: run the demo."""

from __future__ import annotations

import argparse

from . import show_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m spmm",
        description="Show spmm's configuration, or run a small benchmark demo.",
    )
    parser.add_argument("command", nargs="?", choices=["config", "demo"], default="config",
                        help="'config' (default) prints show_config(); 'demo' times a "
                             "pruned-layer product on each backend against scipy")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import main as demo

        demo()
    else:
        show_config()


if __name__ == "__main__":
    main()
