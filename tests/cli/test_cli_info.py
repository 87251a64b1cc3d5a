"""`melnet-fast info` / `python -m melnet_fast info`: versions built against and running, compiled CPU levels and
CUDA architectures, GPUs, and the backend auto picks per op with the reason a backend is missing."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import melnet_fast
from melnet_fast import _extension
from melnet_fast.cli.info_cmd import OPS, _gpu_code
from tests.cli.conftest import cli, ok


def test_info_text_names_versions_kernels_and_backends():
    out = ok(cli("info")).stdout
    record = _extension.build_record()
    assert f"melnet_fast {melnet_fast.__version__}" in out
    assert f"torch       {torch.__version__}" in out
    assert f"built against torch {record['torch']}" in out and record["cxx_standard"] in out
    assert "CPU kernels compiled for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA), baseline" in out
    for op in OPS:
        assert op in out
    if not torch.cuda.is_available():
        assert "GPUs        none visible to torch" in out
        assert "cuda            unavailable: " in out


def test_info_json_is_one_object_with_the_auto_choice_per_op():
    info = json.loads(ok(cli("info", "--json")).stdout)
    assert info["melnet_fast"] == melnet_fast.__version__ and info["torch"] == str(torch.__version__)
    assert info["extension"]["loaded"] and info["extension"]["built_against"] == _extension.build_record()
    assert info["extension"]["cpu_levels"]["running"] in info["extension"]["cpu_levels"]["compiled"]
    assert set(info["auto"]) == set(OPS)
    # The C++ kernels, with the extension.
    assert all(picks["cpu"] == "cpu" for picks in info["auto"].values())
    assert info["backends"]["reference"] is None
    if not torch.cuda.is_available():
        assert "CUDA" in info["backends"]["cuda"] and info["gpus"] == []


def test_the_console_script_is_the_same_command():
    exe = shutil.which("melnet-fast", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                            os.environ.get("PATH", "")]))
    if exe is None:
        pytest.skip("the melnet-fast console script is not on PATH (package not installed with pip)")
    proc = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert f"melnet_fast {melnet_fast.__version__}" in proc.stdout


@pytest.mark.parametrize("capability, archs, expected", [
    pytest.param((9, 0), ["8.0", "8.6", "8.9", "9.0+PTX"], "native code", id="h100-default"),
    pytest.param((8, 7), ["8.0", "8.6", "8.9", "9.0+PTX"], "native code", id="orin-runs-sm86-cubin"),
    pytest.param((10, 0), ["8.0", "8.6", "8.9", "9.0+PTX"], "PTX", id="blackwell-via-ptx"),
    pytest.param((12, 0), ["9.0"], "no code for sm_120: rebuild with MELNET_FAST_CUDA_ARCHS=12.0", id="no-ptx"),
    pytest.param((8, 0), ["9.0"], "no code for sm_80", id="older-gpu"),
    pytest.param((10, 0), ["9.0a"], "no code for sm_100", id="arch-specific-is-not-portable"),
    pytest.param((9, 0), ["9.0a"], "native code", id="arch-specific-on-its-gpu"),
])
def test_which_code_a_gpu_runs(capability, archs, expected):
    assert expected in _gpu_code(capability, archs)
