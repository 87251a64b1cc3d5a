"""The `melnet-fast` command (also `python -m melnet_fast`): train, sample, eval, invert, demo; gan (the cMelGAN
baseline: train, sample) and compare (sample quality of several runs).

User errors (missing data, unknown preset, incompatible checkpoint, bad arguments) are printed as one line with
exit status 2; set MELNET_FAST_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List

from melnet_fast.cli import compare_cmd, demo, eval_cmd, gan_cmd, invert_cmd, sample_cmd, train_cmd
from melnet_fast.cli.common import UserError


def build_parser() -> argparse.ArgumentParser:
    from melnet_fast import __version__

    parser = argparse.ArgumentParser(
        prog="melnet-fast", description="MelNet, fast: train on audio, sample, evaluate, invert spectrograms.",
        epilog="Start with `melnet-fast demo` (a few minutes on a CPU). `melnet-fast COMMAND --help` for details.")
    parser.add_argument("--version", action="version", version=f"melnet_fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (train_cmd, sample_cmd, eval_cmd, invert_cmd, demo, gan_cmd, compare_cmd):
        module.add_parser(sub)
    return parser


def main(argv: List[str] | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        if os.environ.get("MELNET_FAST_DEBUG"):
            raise
        print(f"melnet-fast {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("melnet-fast: interrupted", file=sys.stderr)
        return 130


__all__ = ["main", "build_parser", "UserError"]
