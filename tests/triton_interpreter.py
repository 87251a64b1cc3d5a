"""Whether Triton's CPU interpreter (TRITON_INTERPRET=1) can run the sweep kernels in this environment.

Triton 3.6's interpreter turns a loop bound passed at run time (`for k in range(0, H, BLOCK)`, as the sweep
kernels do) into a Python int by int() of a one-element array, which numpy 2.4 refuses ("only 0-dimensional
arrays can be converted to Python scalars"); triton 3.8 works with numpy 2.4, and the mixture kernels (no such
loop) work with both. The pinned environment (requirements-dev.txt) has numpy 2.3; elsewhere the sweep's
interpreter tests skip with the reason found here. The probe runs that construct, so a fixed or newly broken
combination is told by what it does, not by version numbers.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings


@functools.lru_cache(maxsize=1)
def problem() -> str | None:
    """None when the interpreter runs a loop over a run-time bound; else why it cannot (a skip reason)."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install 'melnet_fast[triton]')"
    import numpy
    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def count(out_ptr, n):
        total = 0.0
        for _ in range(0, n):
            total += 1.0
        tl.store(out_ptr, total)

    out = torch.zeros(1)
    try:
        with warnings.catch_warnings():  # numpy < 2.4 only deprecates what the probe looks for
            warnings.filterwarnings("ignore", "Conversion of an array with ndim > 0", DeprecationWarning)
            count[(1,)](out, 3)
    except Exception as e:  # the interpreter wraps the numpy error in its own InterpreterError
        return (f"Triton {triton.__version__}'s interpreter cannot run loops over run-time bounds with numpy "
                f"{numpy.__version__} ({type(e).__name__}: {e}); use numpy<2.4 (as requirements-dev.txt pins) "
                "or triton>=3.8")
    if float(out) != 3.0:
        return f"Triton {triton.__version__}'s interpreter counted a 3-step loop as {float(out)}"
    return None
