"""The build record beside melnet_fast._C: written by the build, matching the running torch here; an extension
whose record names another torch or CUDA is not loaded, one warning says both versions and the rebuild command,
and every op falls back to a backend that works."""

import json
import os
import subprocess
import sys

import pytest
import torch

from melnet_fast import _build_record, _extension

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_built_extension_records_the_torch_it_runs_with():
    record = _extension.build_record()
    assert record is not None, _extension.load_error()
    assert record["torch"] == str(torch.__version__) and record["torch_cuda"] == torch.version.cuda
    assert record["cxx_standard"] in ("c++17", "c++20")
    assert _extension.extension() is not None and _extension.load_error() is None
    assert record["with_cuda"] == _extension.has_cuda_kernels()


@pytest.mark.parametrize("record, version, cuda, expected", [
    pytest.param({"torch": "2.11.0+cu130", "torch_cuda": "13.0"}, "2.11.0+cu130", "13.0", None, id="same"),
    pytest.param({"torch": "2.14.1+cu130", "torch_cuda": "13.0"}, "2.11.0+cu130", "13.0",
                 "built against torch 2.14.1+cu130 (CUDA 13.0) but torch 2.11.0+cu130 (CUDA 13.0) is running",
                 id="other-torch"),
    pytest.param({"torch": "2.11.0+cu130", "torch_cuda": "13.0"}, "2.11.0+cu130", "12.8",
                 "(CUDA 13.0) but torch 2.11.0+cu130 (CUDA 12.8)", id="other-cuda"),
    pytest.param({"torch": "2.11.0+cu130", "torch_cuda": "13.0"}, "2.11.0+cpu", None,
                 "but torch 2.11.0+cpu (no CUDA) is running", id="cpu-torch"),
    pytest.param(None, "2.11.0", None, "has no readable build record", id="no-record"),
])
def test_mismatch_names_both_builds(record, version, cuda, expected):
    problem = _build_record.mismatch(record, version, cuda)
    if expected is None:
        assert problem is None
    else:
        assert expected in problem


def test_write_then_read(tmp_path):
    record = {"torch": "2.11.0", "torch_cuda": None, "cuda_archs": ["9.0"]}
    path = _build_record.write(str(tmp_path), record)
    assert os.path.basename(path) == _build_record.FILE_NAME
    assert _build_record.read(str(tmp_path)) == record
    umask = os.umask(0o022)
    try:
        _build_record.write(str(tmp_path), record)
    finally:
        os.umask(umask)
    assert (os.stat(path).st_mode & 0o777) == 0o644  # readable by the accounts that use the installation
    (tmp_path / _build_record.FILE_NAME).write_text("[1, 2]")
    assert _build_record.read(str(tmp_path)) is None
    assert _build_record.read(str(tmp_path / "missing")) is None


# Runs in a fresh interpreter whose torch reports another version (or CUDA) than the extension's record: the
# package must import with one warning, leave melnet_fast._C unloaded, and still compute every op.
MISMATCH_SCRIPT = r"""
import json, sys, warnings
import torch
torch.__version__, torch.version.cuda = sys.argv[1], (None if sys.argv[2] == "none" else sys.argv[2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import melnet_fast
    from melnet_fast import MelNet, MelNetConfig, ops
mine = [str(w.message) for w in caught if "melnet_fast" in str(w.message)]
x = torch.randn(2, 8, 16)
model = MelNet(MelNetConfig.preset("tiny"))
loss = model.loss(x)
loss.backward()
mu, log_sigma, logit_pi = (torch.randn(3, 5, 4, requires_grad=True) for _ in range(3))
nll = ops.gmm_nll(torch.randn(3, 5), mu, log_sigma, logit_pi)
sample = model.sample(1, 8, generator=torch.Generator().manual_seed(0))
print(json.dumps({"warnings": mine, "sys_modules_has_C": "melnet_fast._C" in sys.modules,
                  "backends": melnet_fast.available_backends(), "loss": float(loss),
                  "nll_finite": bool(torch.isfinite(nll).all()), "sample_shape": list(sample.shape),
                  "sample_finite": bool(torch.isfinite(sample).all())}))
"""


@pytest.mark.parametrize("version, cuda", [
    pytest.param("0.0.1+other", str(torch.version.cuda).lower(), id="other-torch"),
    pytest.param(str(torch.__version__), "99.9", id="other-cuda"),
])
def test_a_mismatched_extension_is_not_loaded_and_everything_falls_back(version, cuda):
    assert _extension.extension() is not None, "needs a built extension: " + str(_extension.load_error())
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", MISMATCH_SCRIPT, version, cuda], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["warnings"]) == 1, out["warnings"]
    warning = out["warnings"][0]
    record = _extension.build_record()
    assert f"built against torch {record['torch']}" in warning
    running_cuda = "no CUDA" if cuda == "none" else f"CUDA {cuda}"
    assert f"torch {version} ({running_cuda}) is running" in warning
    assert "pip install --no-build-isolation" in warning
    assert not out["sys_modules_has_C"]
    assert "cpu" not in out["backends"] and "cuda" not in out["backends"] and "reference" in out["backends"]
    assert out["nll_finite"] and out["sample_finite"] and out["sample_shape"] == [1, 8, 16]
    assert out["loss"] == out["loss"]  # not NaN
