"""setup.py's guards, run for real in a subprocess with a stand-in torch on PYTHONPATH (nothing is compiled): a build
whose torch is not the torch of the environment it installs into stops with one line, and metadata / sdist
commands never import torch."""

import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_setup(tmp_path, torch_source: str, *args):
    fake = tmp_path / "fake"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(torch_source)
    env = dict(os.environ, PYTHONPATH=str(fake), MELNET_FAST_CUDA="0")
    return subprocess.run([sys.executable, "setup.py", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


def test_a_build_against_another_torch_than_the_target_environments_stops_with_one_line(tmp_path):
    # The stand-in plays the torch of an isolated build environment; `python -I` (the target probe) ignores
    # PYTHONPATH and finds the real one, as it finds the user's torch under pip's build isolation.
    proc = run_setup(tmp_path, "__version__ = '0.0.1+isolated'\n", "build_ext", "--build-temp", str(tmp_path / "b"))
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"melnet_fast build: building against torch 0.0.1+isolated but the environment it installs into "
                    f"runs torch {torch.__version__}; build against that torch with "
                    "`pip install --no-build-isolation .`"), proc.stderr[-2000:]


def test_metadata_commands_never_import_torch(tmp_path):
    proc = run_setup(tmp_path, "raise ImportError('torch imported by a metadata command')\n",
                     "egg_info", "--egg-base", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "melnet_fast.egg-info" / "PKG-INFO").exists()
