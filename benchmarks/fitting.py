"""Ordinary least squares on a few variables, by hand (the benchmarks need no numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def least_squares(xs: Sequence[Sequence[float]], ys: Sequence[float]) -> list[float]:
    """The coefficients b minimising sum((x . b - y)^2), with no intercept (add a column of 1s
    for one): the normal equations, solved by Gaussian elimination."""
    if not xs or len(xs) != len(ys):
        raise ValueError(f"need as many rows as values, and some: {len(xs)} rows, {len(ys)} values")
    width = len(xs[0])
    if any(len(x) != width for x in xs):
        raise ValueError("every row needs the same number of variables")
    gram = [[sum(x[i] * x[j] for x in xs) for j in range(width)] for i in range(width)]
    moment = [sum(x[i] * y for x, y in zip(xs, ys, strict=True)) for i in range(width)]
    return solve(gram, moment)


def solve(a: Sequence[Sequence[float]], b: Sequence[float]) -> list[float]:
    """x with a x = b, for a square, non-singular a (partial pivoting)."""
    n = len(b)
    rows = [[*map(float, a[i]), float(b[i])] for i in range(n)]
    scale = max((abs(v) for row in rows for v in row[:n]), default=0.0)
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) <= 1e-12 * scale:
            raise ValueError("the variables are collinear: their coefficients are not determined")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, n):
            factor = rows[r][col] / rows[col][col]
            rows[r] = [v - factor * p for v, p in zip(rows[r], rows[col], strict=True)]
    x = [0.0] * n
    for col in reversed(range(n)):
        known = sum(rows[col][k] * x[k] for k in range(col + 1, n))
        x[col] = (rows[col][n] - known) / rows[col][col]
    return x


def residual_rms(
    xs: Sequence[Sequence[float]], ys: Sequence[float], coefs: Sequence[float]
) -> float:
    """The root mean square of what the fit leaves unexplained, in the units of ``ys``."""
    errors = [
        sum(c * v for c, v in zip(coefs, x, strict=True)) - y for x, y in zip(xs, ys, strict=True)
    ]
    return math.sqrt(sum(e * e for e in errors) / len(errors))
