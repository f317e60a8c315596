"""Numbers that may be missing, as a person reads them: never "nan", always the reason."""

from __future__ import annotations

import math


def missing(value) -> bool:
    """True for a value that cannot be shown as a number: None, NaN, ±inf, or not a number at all."""
    try:
        return value is None or not math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def number(value) -> float | None:
    """The value as a float, or None when it cannot be shown as a number (see `missing`)."""
    return None if missing(value) else float(value)


def pct(value, reason: str = "not computed") -> str:
    return f"n/a ({reason})" if missing(value) else f"{value:.1%}"


def fixed(value, spec: str, reason: str = "not computed") -> str:
    return f"n/a ({reason})" if missing(value) else format(float(value), spec)


def interval(ci, reason: str = "not computed") -> str:
    if not ci or any(missing(x) for x in ci):
        return f"n/a ({reason})"
    return f"{ci[0]:.1%}–{ci[1]:.1%}"


def p_text(p) -> str:
    if missing(p):
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def points(diff) -> str:
    return f"{diff * 100:+.1f} points"
