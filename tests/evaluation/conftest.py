"""Fixtures of the evaluation tests: one thread (the CPU is shared), for the module fixtures too (they train small
models, and a module fixture would run before a per-test fixture)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread_per_module():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
