"""SignalStop in a real process: a first signal is a request, a second one stops at once, and a signal before
there is anything to save stops with the signal's status."""

import signal
import subprocess
import sys

import pytest

from melnet_fast.train import stop_signals

# Loads stop_signals.py by path (standard library only): the process starts in milliseconds.
SCRIPT = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("stop_signals", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
mode, sig = sys.argv[2], getattr(signal, sys.argv[3])
with m.SignalStop() as stop:
    if mode == "early":
        try:
            os.kill(os.getpid(), sig)
        except m.Stopped as e:
            print("stopped before any work", flush=True)
            sys.exit(e.exit_status)
    with stop.deferring():
        os.kill(os.getpid(), sig)
        print(f"still running, requested={stop.requested}", flush=True)
        if mode == "twice":
            os.kill(os.getpid(), sig)
            print("survived the second signal", flush=True)
    sys.exit(stop.exit_status)
"""


def _run(mode: str, sig: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, stop_signals.__file__, mode, sig], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_first_signal_is_a_request_and_the_exit_status_is_the_signals(sig):
    result = _run("once", sig)
    number = getattr(signal, sig)
    assert result.returncode == 128 + number, result.stderr
    assert f"still running, requested={int(number)}" in result.stdout
    assert f"{sig} received: finishing the current step" in result.stderr


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_second_signal_stops_at_once(sig):
    result = _run("twice", sig)
    assert result.returncode == -getattr(signal, sig), "ended by the signal itself"
    assert "survived" not in result.stdout
    assert f"second {sig}: stopping at once" in result.stderr


def test_a_signal_before_any_work_stops_with_its_status():
    result = _run("early", "SIGTERM")
    assert result.returncode == 128 + signal.SIGTERM
    assert "stopped before any work" in result.stdout
