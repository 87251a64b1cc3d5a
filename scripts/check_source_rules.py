"""Source rules that a compiler does not check. Run by tests/test_source_rules.py (CI) and the pre-commit hook.

fast-math: the CUDA sources build with --use_fast_math, which turns expf, logf, tanhf, powf, '/' and friends into
approximations far outside the kernels' tolerance. Every transcendental function of device code therefore comes
from the one maths header, csrc/scalar_math.h (math::exp, math::log, ...); no other file that a .cu source
includes may call a libm function or a fast-math intrinsic.

The same for the Triton kernels: on NVIDIA GPUs tl.exp, tl.log, tl.sigmoid and friends are approximations; the
kernels take theirs from the twin of the header, melnet_fast/kernels/scalar_math.py.

    python scripts/check_source_rules.py        # prints the violations, exit status 1 when there are any
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
MATHS_HEADER = CSRC / "scalar_math.h"
TRITON_DIR = ROOT / "melnet_fast" / "kernels"  # the Triton kernels
TRITON_TWIN = TRITON_DIR / "scalar_math.py"

# libm's transcendental functions (float, double and long double spellings) and the fast-math intrinsics.
_LIBM = ("exp", "exp2", "exp10", "expm1", "log", "log2", "log10", "log1p", "pow", "tanh", "sinh", "cosh", "sin",
         "cos", "tan", "erf", "erfc", "lgamma", "tgamma", "cbrt", "sqrt", "rsqrt", "hypot", "atan", "atan2")
_INTRINSICS = ("__expf", "__exp10f", "__logf", "__log2f", "__log10f", "__powf", "__tanhf", "__sinf", "__cosf",
               "__tanf", "__fdividef", "__saturatef")
# name( with an optional qualifier, not a member (a.name(, p->name(); math::name( is the header's and allowed
_CALL = re.compile(r"(?<![.>\w])((?:\w+)?::)?\b(\w+)\s*\(")
FORBIDDEN = {*(_LIBM), *(n + "f" for n in _LIBM), *(n + "l" for n in _LIBM), *_INTRINSICS}


def strip_comments_and_strings(text: str) -> str:
    """The source with comments and string / character literals blanked (line numbers kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        two = text[i:i + 2]
        if two == "//":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif two == "/*":
            j = text.find("*/", i + 2)
            block = text[i: n if j < 0 else j + 2]
            out.append("\n" * block.count("\n"))
            i = n if j < 0 else j + 2
        elif text[i] in "\"'":
            quote, j = text[i], i + 1
            while j < n and text[j] != quote:
                j += 2 if text[j] == "\\" else 1
            out.append(quote + quote)
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def includes(path: Path) -> list[Path]:
    """The repository files path includes with #include "..." (resolved beside it, then in csrc/)."""
    found = []
    for name in re.findall(r'^\s*#\s*include\s+"([^"]+)"', path.read_text(), flags=re.M):
        for base in (path.parent, CSRC):
            if (base / name).exists():
                found.append((base / name).resolve())
                break
    return found


def device_sources(root: Path = CSRC) -> list[Path]:
    """Every .cu file under root/cuda and every repository file they include, directly or not."""
    todo = sorted((root / "cuda").glob("*.cu"))
    seen: list[Path] = []
    while todo:
        path = todo.pop().resolve()
        if path not in seen:
            seen.append(path)
            todo.extend(includes(path))
    return sorted(seen)


def fast_math_violations(path: Path, text: str | None = None) -> list[str]:
    """'file:line: name(' for every forbidden call in the file's code (comments and strings ignored)."""
    code = strip_comments_and_strings(path.read_text() if text is None else text)
    found = []
    for m in _CALL.finditer(code):
        qualifier, name = m.group(1), m.group(2)
        if name in FORBIDDEN and qualifier in (None, "::", "std::"):
            line = code.count("\n", 0, m.start()) + 1
            found.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: "
                         f"{(qualifier or '') + name}(")
    return found


# tl.exp( / tl.math.log( / tl.extra.cuda.libdevice.tanh( ... in Python source
_TRITON_CALL = re.compile(r"\btl\.(?:math\.|extra\.\w+\.libdevice\.)?(\w+)\s*\(")


def triton_violations(path: Path, text: str | None = None) -> list[str]:
    """'file:line: tl.name(' for every approximate Triton maths call in the file (comment lines ignored)."""
    found = []
    for n, line in enumerate((path.read_text() if text is None else text).splitlines(), 1):
        code = line.split("#", 1)[0]
        for m in _TRITON_CALL.finditer(code):
            if m.group(1) in FORBIDDEN or m.group(1) in ("sigmoid", "fdiv", "div_full"):
                found.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{n}: {m.group(0)}")
    return found


def triton_sources(root: Path = TRITON_DIR) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if p.resolve() != TRITON_TWIN.resolve())


def check() -> list[str]:
    """Every violation of the rules above in the repository."""
    return ([v for path in device_sources() if path != MATHS_HEADER for v in fast_math_violations(path)]
            + [v for path in triton_sources() for v in triton_violations(path)])


if __name__ == "__main__":
    problems = check()
    for p in problems:
        print(f"{p}: an approximate maths call in GPU code; use csrc/scalar_math.h (math::) or its Triton twin "
              "(melnet_fast/kernels/scalar_math.py)")
    sys.exit(1 if problems else 0)
