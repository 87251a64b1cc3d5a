"""PEP 517 backend of melnet_fast: setuptools', with the torch to build against chosen per environment.

An isolated build (`pip install .`, `pip install git+...`, an sdist) gets the torch release that the environment
it installs into runs, so that the extension is built against the torch it will run with; an environment
without torch gets the newest supported release, which pip then also installs as the package's dependency.
setup.py stops with a one-line message when the two still differ (see build_flags.target_torch).
"""

import build_flags
from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (every hook this module does not override)


def _with_torch(requires):
    return list(requires) + [build_flags.torch_build_requirement(build_flags.target_torch()), "ninja"]


def get_requires_for_build_wheel(config_settings=None):
    return _with_torch(_setuptools.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings=None):
    return _with_torch(_setuptools.get_requires_for_build_editable(config_settings))
