"""The run-directory lock: exclusive between real processes, re-entrant within one, a dead holder's lock taken
over with a message."""

import json
import os
import signal
import subprocess
import sys

import pytest

from melnet_fast.train import run_lock
from melnet_fast.train.run_lock import RunLock, RunLockedError

# A second process that takes the lock and holds it until its stdin closes. It loads run_lock.py by path (the
# module needs only the standard library), so it starts in milliseconds instead of importing torch.
HOLDER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("run_lock", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
with module.RunLock(sys.argv[2], "test holder"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    """A live process holding tmp_path's lock."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, run_lock.__file__, str(tmp_path)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path, holder):
    with pytest.raises(RunLockedError) as caught:
        RunLock(tmp_path, "train", hint="choose another --out").acquire()
    message = str(caught.value)
    assert f"PID {holder.pid}" in message and "test holder" in message and "choose another --out" in message
    assert caught.value.holder["pid"] == holder.pid
    assert "\n" not in message


def test_a_clean_exit_releases_the_lock(tmp_path, holder):
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    assert not (tmp_path / "run.lock").exists(), "a released lock leaves no file"
    with RunLock(tmp_path, "train") as lock:
        assert lock.taken_over is None


def test_the_lock_of_a_killed_process_is_taken_over_with_a_message(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run.lock").exists(), "kill -9 leaves the lock file behind"
    said = []
    with RunLock(tmp_path, "train", say=said.append) as lock:
        assert lock.taken_over["pid"] == holder.pid
        assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    assert len(said) == 1 and f"PID {holder.pid}" in said[0] and "no longer running" in said[0]


def test_reentrant_within_a_process(tmp_path):
    outer = RunLock(tmp_path, "demo").acquire()
    with RunLock(tmp_path, "train") as inner:
        assert inner.held and outer.held
    assert (tmp_path / "run.lock").exists(), "the outer holder still holds it"
    assert outer.acquire() is outer  # acquiring twice through one object counts once
    outer.release()
    assert not outer.held and not (tmp_path / "run.lock").exists()
    outer.release()  # releasing again is harmless
