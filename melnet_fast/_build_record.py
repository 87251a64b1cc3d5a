"""The record of what melnet_fast._C was built against: a JSON file the build writes beside the extension and
the package reads before it loads the extension, so that an extension built for another torch or CUDA is never
loaded (its C++ ABI would not match: at best an undefined symbol, at worst a crash).

Torch-free and import-free on purpose: setup.py loads this file by its path to write the record.
"""

from __future__ import annotations

import json
import os
import tempfile

FILE_NAME = "_C_build.json"
# The command that rebuilds the extension against the torch that is running (from the source folder).
REBUILD = "pip install --no-build-isolation --no-deps --force-reinstall .  (add -e for an editable install)"


def write(directory: str, record: dict) -> str:
    """Write `record` as FILE_NAME in `directory` (atomically); returns the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, FILE_NAME)
    fd, tmp = tempfile.mkstemp(prefix=FILE_NAME + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, sort_keys=True)
            f.write("\n")
        # mkstemp makes the file 0600: an installation used by other accounts must be able to read it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read(directory: str) -> dict | None:
    """The record in `directory`, or None when there is none or it is not a JSON object."""
    try:
        with open(os.path.join(directory, FILE_NAME), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _cuda(version: str | None) -> str:
    return f"CUDA {version}" if version else "no CUDA"


def mismatch(record: dict | None, torch_version: str, torch_cuda: str | None) -> str | None:
    """None when an extension built as `record` says can run with this torch, else why not (one sentence)."""
    running = f"torch {torch_version} ({_cuda(torch_cuda)})"
    if record is None:
        return f"melnet_fast._C has no readable build record ({FILE_NAME}), so it may not match {running}"
    built = f"torch {record.get('torch')} ({_cuda(record.get('torch_cuda'))})"
    if record.get("torch") != torch_version or record.get("torch_cuda") != torch_cuda:
        return f"melnet_fast._C was built against {built} but {running} is running"
    return None
