"""Finiteness checks of inputs without a host sync where one would cost: at once on CPU tensors, deferred on a GPU
(read with raise_deferred_errors, which the trainer calls at every step), at once everywhere with
MELNET_FAST_SYNC_CHECKS=1. The deferred path is exercised here on CPU tensors by treating no device type as
checked at once."""

import pytest

from melnet_fast.ops import _checks, gmm_nll, raise_deferred_errors
from tests.ops.helpers import make_gmm_inputs


def bad_inputs():
    x, mu, log_sigma, logit_pi = make_gmm_inputs((3, 4), 2)
    log_sigma[1, 2, 0] = float("inf")
    return x, mu, log_sigma, logit_pi


def test_cpu_tensors_are_checked_at_once():
    with pytest.raises(ValueError, match="log_sigma must be finite"):
        gmm_nll(*bad_inputs())
    raise_deferred_errors()  # nothing was left for later


def test_deferred_check_raises_when_read(monkeypatch):
    monkeypatch.setattr(_checks, "SYNC_DEVICES", ())
    monkeypatch.delenv(_checks.SYNC_CHECKS_ENV, raising=False)
    gmm_nll(*make_gmm_inputs((3, 4), 2))
    gmm_nll(*bad_inputs())  # no error yet: the verdict stays on the device
    with pytest.raises(ValueError, match=r"log_sigma must be finite; it holds NaN or inf \(found by a deferred"):
        raise_deferred_errors()
    raise_deferred_errors()  # read once: cleared
    gmm_nll(*make_gmm_inputs((3, 4), 2))
    raise_deferred_errors()  # finite inputs leave a good verdict


def test_sync_checks_on_request(monkeypatch):
    monkeypatch.setattr(_checks, "SYNC_DEVICES", ())
    monkeypatch.setenv(_checks.SYNC_CHECKS_ENV, "1")
    with pytest.raises(ValueError, match="log_sigma must be finite"):
        gmm_nll(*bad_inputs())
