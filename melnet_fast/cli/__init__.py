"""The `melnet-fast` command (also `python -m melnet_fast`): train, sample, tts, eval, invert, data, demo, info; gan
(the cMelGAN baseline: train, sample) and compare (sample quality of several runs).

User errors (missing data, unknown preset, incompatible checkpoint, bad arguments, an unwritable output, a run
another process is writing) are printed as one line with exit status 2; set MELNET_FAST_DEBUG=1 to see the
traceback instead. A stop signal before there is anything to save ends a command with status 128 + its number.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List

from melnet_fast.cli import (
    compare_cmd,
    data_cmd,
    demo,
    eval_cmd,
    gan_cmd,
    info_cmd,
    invert_cmd,
    sample_cmd,
    train_cmd,
    tts_cmd,
)
from melnet_fast.cli.common import UserError
from melnet_fast.train.preflight import PreflightError
from melnet_fast.train.run_lock import RunLockedError
from melnet_fast.train.stop_signals import Stopped

# What a user can cause and fix: one line, no traceback.
USER_ERRORS = (UserError, PreflightError, RunLockedError)


def build_parser() -> argparse.ArgumentParser:
    from melnet_fast import __version__

    parser = argparse.ArgumentParser(
        prog="melnet-fast", description="MelNet, fast: train on audio, sample, evaluate, invert spectrograms.",
        epilog="Start with `melnet-fast demo` (a few minutes on a CPU). `melnet-fast COMMAND --help` for details.")
    parser.add_argument("--version", action="version", version=f"melnet_fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (train_cmd, sample_cmd, tts_cmd, eval_cmd, invert_cmd, data_cmd, demo, info_cmd, gan_cmd,
                   compare_cmd):
        module.add_parser(sub)
    return parser


def main(argv: List[str] | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        if os.environ.get("MELNET_FAST_DEBUG"):
            raise
        print(f"melnet-fast {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except Stopped as e:
        print(f"melnet-fast {args.command}: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("melnet-fast: interrupted", file=sys.stderr)
        return 130


__all__ = ["main", "build_parser", "UserError"]
