"""An exclusive lock on a run directory, so that two processes never write one run at the same time.

The lock is an advisory `flock` on RUN_DIR/run.lock, which names its holder (PID, host, command, start time).
The kernel drops a flock when its process dies however it dies (kill -9 included), so a lock file whose flock
is free was left by a process that is gone: the next claimant takes it over and says so. A clean release
deletes the file. Within one process the lock is re-entrant (a command that holds it can build a Trainer,
which takes it too).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Dict, Tuple

LOCK_NAME = "run.lock"

# Locks this process holds: resolved lock path -> (file descriptor, holders).
_held: Dict[str, Tuple[int, int]] = {}


class RunLockedError(RuntimeError):
    """Another process holds the run directory's lock. `holder`: what its lock file says (pid, host, ...)."""

    def __init__(self, message: str, holder: dict):
        super().__init__(message)
        self.holder = holder


def _read_holder(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "another process (it has not written its PID yet)"
    host = holder.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    since = f", since {holder['started']}" if holder.get("started") else ""
    return f"PID {holder['pid']}{where} ({holder.get('command') or 'melnet-fast'}{since})"


class RunLock:
    """with RunLock(run_dir, "train"): ... holds RUN_DIR/run.lock exclusively (the folder must exist).

    command: what the holder is doing, shown to a process that finds the run locked. say: where the takeover
    of a stale lock is reported (default: ignored). hint: the way forward appended to the RunLockedError.
    Raises RunLockedError when another process holds the lock.
    """

    def __init__(self, run_dir: str | os.PathLike, command: str, *, say: Callable[[str], None] | None = None,
                 hint: str = "wait for it to finish, or choose another run directory"):
        self.path = Path(run_dir) / LOCK_NAME
        self.command, self.say, self.hint = command, say or (lambda text: None), hint
        self._key = os.path.realpath(self.path)
        self._mine = False  # whether this object counts among the holders
        self.taken_over: dict | None = None  # what a stale lock file said, when this lock took it over

    def acquire(self) -> RunLock:
        """Take the lock (a no-op when this object holds it already). RunLockedError when another process
        holds it."""
        if self._mine:
            return self
        if self._key in _held:
            fd, count = _held[self._key]
            _held[self._key] = (fd, count + 1)
            self._mine = True
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP):  # some network file systems
                    self.say(f"{self.path}: this file system cannot lock files ({e.strerror}); nothing stops a "
                             f"second process from writing the run")
                    break
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = self._wait_for_holder()
                raise RunLockedError(f"{self.path.parent} is in use by {_describe(holder)}: {self.hint}",
                                     holder) from None
            # The file may have been deleted by a releasing holder between our open and flock: lock the file
            # that is at the path now.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _read_holder(self.path)
        if stale.get("pid"):
            self.taken_over = stale
            self.say(f"{self.path} was left by {_describe(stale)}, which is no longer running: taking the "
                     f"run over")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        _held[self._key] = (fd, 1)
        self._mine = True
        return self

    def _wait_for_holder(self) -> dict:
        # A holder writes its record right after taking the lock: give it a moment.
        for _ in range(20):
            holder = _read_holder(self.path)
            if holder.get("pid"):
                return holder
            time.sleep(0.01)
        return {}

    def release(self) -> None:
        """Let go of the lock (the file is deleted when the last holder in this process lets go)."""
        if not self._mine:
            return
        self._mine = False
        fd, count = _held[self._key]
        if count > 1:
            _held[self._key] = (fd, count - 1)
            return
        del _held[self._key]
        try:
            self.path.unlink()  # before unlocking: a claimant that opened the old file retries (see acquire)
        except OSError:
            pass
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._mine

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

