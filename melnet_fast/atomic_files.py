"""Atomic file writes, and the clean-up of what an interrupted write leaves behind.

A write goes to a temporary file in the target's folder, named `.<target name>.<pid>-<random>.tmp`, which is
flushed, fsynced and renamed over the target: readers see the old file or the new one, never half of one. A
process killed during a write (kill -9, power loss) leaves its temporary file behind; `remove_orphans` deletes
the ones whose writer is no longer running, and nothing else (the pattern and the dead PID must both match).
Files get the mode any file the user creates gets (0666 minus the umask), not mkstemp's private 0600.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import List

PathLike = str | os.PathLike

# The temporary names of atomic_write_bytes: `.<target>.<pid>-<mkstemp's random part>.tmp`.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    try:  # Linux >= 4.7 shows it without changing it (os.umask can only read by setting)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never half of one (see the
    module docstring). An OSError (full disk, read-only folder) leaves the old file as it was."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}-", suffix=".tmp",
                                   dir=directory)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None:  # name the file being written, not its temporary
            raise OSError(e.errno, e.strerror, path) from None
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """atomic_write_bytes of `text` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_orphans(directory: PathLike) -> List[Path]:
    """Delete the temporary files that interrupted atomic writes left in `directory` (not recursive): only
    names of atomic_write_bytes's pattern whose writer PID is not running. Returns the deleted paths."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if match is None or not entry.is_file() or _running(int(match["pid"])):
            continue
        try:
            entry.unlink()
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        removed.append(entry)
    return removed
