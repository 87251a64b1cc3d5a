"""The package with only its core dependencies: a fresh virtual environment (no system site-packages) holding
torch, numpy and what they themselves require, nothing else, imports melnet_fast, computes a tiny model's loss
and gradients and draws a sample; the optional features say which extra to install.

Installing torch into a new environment takes minutes and gigabytes, so the environment gets the very files of
this one's torch and numpy instead: its site-packages links exactly the files that the dependency closure of
torch and numpy (read from their metadata, as pip resolves it) installed here, and the package folder. A package
outside that closure (safetensors, tqdm, matplotlib, ...) cannot be imported there, which the test checks first.
"""

import importlib.metadata
import json
import os
import subprocess
import venv

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import melnet_fast
from melnet_fast import _optional

CORE = ("torch", "numpy")


def dependency_closure(names) -> set[str]:
    """Canonical names of the distributions `names` require, recursively (markers evaluated, no extras)."""
    env = {**default_environment(), "extra": ""}
    todo, seen = [canonicalize_name(n) for n in names], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in importlib.metadata.distribution(name).requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(canonicalize_name(req.name))
    return seen


def installed_files() -> dict[tuple[str, ...], set[str]]:
    """path parts inside site-packages -> the distributions that installed that file."""
    owners: dict[tuple[str, ...], set[str]] = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for f in dist.files or []:
            parts = f.parts
            if parts and parts[0] != "..":  # scripts and data outside site-packages
                owners.setdefault(tuple(parts), set()).add(name)
    return owners


def link_closure(site: str, keep: set[str], owners, source: str) -> None:
    """Symlink into `site` every entry of `source` (site-packages) that only distributions in `keep` installed; a
    folder shared with another distribution (a namespace like nvidia/) is made and filled one level deeper."""
    def visit(prefix: tuple[str, ...]):
        children: dict[str, set[str]] = {}
        for parts, dists in owners.items():
            if parts[:len(prefix)] == prefix and len(parts) > len(prefix):
                children.setdefault(parts[len(prefix)], set()).update(dists)
        for child, dists in children.items():
            path = prefix + (child,)
            if not dists & keep:
                continue
            if dists <= keep:
                os.symlink(os.path.join(source, *path), os.path.join(site, *path))
            else:
                os.makedirs(os.path.join(site, *path), exist_ok=True)
                visit(path)
    visit(())


SCRIPT = r"""
import importlib.util, json, sys
import torch
absent = sorted(m for m in sys.argv[1].split(",") if importlib.util.find_spec(m) is None)
import melnet_fast
import melnet_fast.audio
import melnet_fast.plots
from melnet_fast import MelNet, MelNetConfig

torch.manual_seed(0)
model = MelNet(MelNetConfig.preset("tiny"))
x = torch.randn(2, 8, 16)
loss = model.loss(x)
loss.backward()
grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
sample = model.sample(1, 8, temperature=0.8, generator=torch.Generator().manual_seed(0))
messages = {}
for feature, call in [("save", lambda: model.save("m.safetensors")),
                      ("audio", lambda: melnet_fast.audio.mel_spectrogram(torch.randn(800), model.config)),
                      ("plots", lambda: melnet_fast.plots.plot_tiers("p.png", sample[0], 3, model.config))]:
    try:
        call()
        messages[feature] = None
    except ModuleNotFoundError as e:
        messages[feature] = str(e)
print(json.dumps({"absent": absent, "loss": float(loss), "grads_finite": grads_finite,
                  "sample_shape": list(sample.shape), "sample_finite": bool(torch.isfinite(sample).all()),
                  "backends": melnet_fast.available_backends(), "messages": messages,
                  "path": melnet_fast.__file__}))
"""


@pytest.fixture(scope="module")
def core_only_python(tmp_path_factory):
    root = tmp_path_factory.mktemp("core-only")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    source = str(importlib.metadata.distribution("torch").locate_file(""))  # this environment's site-packages
    keep = dependency_closure(CORE)
    link_closure(site, keep, installed_files(), source)
    os.symlink(os.path.dirname(melnet_fast.__file__), os.path.join(site, "melnet_fast"))
    return python, root


def run_in(python, root, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([str(python), *args], capture_output=True, text=True, cwd=root, env=env, timeout=300)


def test_core_dependencies_alone_run_the_model_and_name_the_extras(core_only_python):
    python, root = core_only_python
    optional = [m for m in _optional.OPTIONAL if m != "triton"]  # triton: a dependency of torch's Linux wheels
    proc = run_in(python, root, "-c", SCRIPT, ",".join(optional))
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["absent"] == sorted(optional), "the environment is not core-only: these import there: " + str(
        sorted(set(optional) - set(out["absent"])))
    assert out["path"].startswith(str(root)), out["path"]
    assert out["loss"] == out["loss"] and out["grads_finite"]
    assert out["sample_shape"] == [1, 8, 16] and out["sample_finite"]
    assert "cpu" in out["backends"]  # the compiled kernels need no optional package either
    extras = {"save": "melnet_fast[train]", "audio": "melnet_fast[audio]", "plots": "melnet_fast[plots]"}
    for feature, extra in extras.items():
        message = out["messages"][feature]
        assert message is not None and extra in message and "pip install" in message, (feature, message)


def test_info_command_in_the_core_only_environment(core_only_python):
    python, root = core_only_python
    proc = run_in(python, root, "-m", "melnet_fast", "info", "--json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(proc.stdout)
    assert info["melnet_fast"] == melnet_fast.__version__ and info["extension"]["loaded"]
