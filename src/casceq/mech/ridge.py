"""Ridge regression from streamed sufficient statistics, on standardised inputs, alpha chosen on a validation set.

Fit, then apply (as ``concept_erasure.LeaceFitter``): :class:`RidgeFitter` accumulates, per split part
(``"fit"``, ``"val"``, ``"test"``), the moments ``n, Σx, Σy, Σxxᵀ, Σxyᵀ, Σy²`` of rows streamed shard by
shard, so memory is ``O(D²)`` whatever the number of positions. :meth:`RidgeFitter.probe` standardises
(population mean/std of the training rows, as sklearn's ``StandardScaler``), picks alpha on ``"val"``, refits on
``"fit" + "val"`` and returns a frozen, callable :class:`RidgeProbe`; :meth:`RidgeFitter.r2` scores any part
from its moments alone. The solution equals ``sklearn.linear_model.Ridge(alpha)`` on standardised inputs
(tested to 1e-6 relative).

Moments are accumulated around a shift (the first batch's means) in float64, so a large common offset in the
states (residual streams often have one) does not cancel catastrophically in ``Σxxᵀ - n·μμᵀ``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from casceq.errors import InputError

ALPHAS: tuple[float, ...] = tuple(float(10.0**k) for k in np.arange(-1.0, 6.01, 0.5))
"""Ridge penalties tried on the validation part (inputs are standardised, so these are comparable)."""

PARTS = ("fit", "val", "test")


@dataclass
class _Moments:
    n: int
    sx: np.ndarray  # [D]
    sy: np.ndarray  # [T]
    sxx: np.ndarray  # [D, D]
    sxy: np.ndarray  # [D, T]
    syy: np.ndarray  # [T]

    @classmethod
    def zeros(cls, d: int, t: int) -> _Moments:
        return cls(0, np.zeros(d), np.zeros(t), np.zeros((d, d)), np.zeros((d, t)), np.zeros(t))

    def __add__(self, o: _Moments) -> _Moments:
        return _Moments(
            self.n + o.n, self.sx + o.sx, self.sy + o.sy, self.sxx + o.sxx, self.sxy + o.sxy, self.syy + o.syy
        )


@dataclass(frozen=True)
class RidgeProbe:
    """A fitted linear map ``y = x @ coef + intercept`` (coefficients in raw input units).

    Attributes:
        coef: [D, T] coefficients on raw (unstandardised) inputs.
        intercept: [T].
        mean: [D] input mean used for standardising.
        scale: [D] input standard deviation used for standardising (1 where constant).
        alpha: The ridge penalty on standardised inputs.
        val_r2: Mean validation R² at ``alpha`` (NaN when alpha was given).
    """

    coef: np.ndarray
    intercept: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    alpha: float
    val_r2: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Predictions [N, T] for inputs x [N, D]."""
        return np.asarray(x, dtype=np.float64) @ self.coef + self.intercept


class RidgeFitter:
    """Streams rows into per-part moments, then fits a :class:`RidgeProbe`.

    Args:
        dim: Input width D.
        n_targets: Number of targets T.
    """

    def __init__(self, dim: int, n_targets: int) -> None:
        self.dim, self.n_targets = dim, n_targets
        self.shift_x: np.ndarray | None = None
        self.shift_y: np.ndarray | None = None
        self.parts = {p: _Moments.zeros(dim, n_targets) for p in PARTS}

    def update(self, part: str, x: np.ndarray, y: np.ndarray) -> None:
        """Add rows x [N, D] with targets y [N, T] (or [N]) to ``part`` (``"fit"``, ``"val"`` or ``"test"``)."""
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:  # e.g. a silent clip's voiced positions; reshape(0, -1) cannot infer the width
            return
        y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
        if x.ndim != 2 or x.shape[1] != self.dim or y.shape[1] != self.n_targets:
            raise InputError(
                f"ridge: expected x [N, {self.dim}] and y [N, {self.n_targets}], got {x.shape}, {y.shape}"
            )
        if self.shift_x is None:
            self.shift_x, self.shift_y = x.mean(0), y.mean(0)
        assert self.shift_y is not None
        xs, ys = x - self.shift_x, y - self.shift_y
        m = self.parts[part]
        self.parts[part] = m + _Moments(len(x), xs.sum(0), ys.sum(0), xs.T @ xs, xs.T @ ys, (ys * ys).sum(0))

    def n_rows(self, part: str) -> int:
        """Rows accumulated in ``part``."""
        return self.parts[part].n

    def _solve(
        self, m: _Moments, alphas: Sequence[float]
    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """Standardised solutions w(alpha) [D, T] for each alpha, plus mean, scale and target mean (shifted)."""
        mu, ybar = m.sx / m.n, m.sy / m.n
        sxx = m.sxx - m.n * np.outer(mu, mu)
        sxy = m.sxy - m.n * np.outer(mu, ybar)
        scale = np.sqrt(np.clip(np.diag(sxx) / m.n, 0.0, None))
        scale[scale < 1e-12] = 1.0  # constant inputs, as StandardScaler treats them
        ztz = sxx / np.outer(scale, scale)
        zty = sxy / scale[:, None]
        eye = np.eye(self.dim)
        return [np.linalg.solve(ztz + a * eye, zty) for a in alphas], mu, scale, ybar

    def _r2(self, m: _Moments, coef: np.ndarray, icpt: np.ndarray) -> np.ndarray:
        """R² per target on moments ``m`` of the shifted predictor ``x' @ coef + icpt``."""
        sse = (
            m.syy
            - 2 * (np.einsum("dt,dt->t", coef, m.sxy) + icpt * m.sy)
            + np.einsum("dt,de,et->t", coef, m.sxx, coef)
            + 2 * icpt * (m.sx @ coef)
            + m.n * icpt**2
        )
        sst = m.syy - m.sy**2 / max(m.n, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sst > 1e-12 * max(m.n, 1), 1.0 - sse / sst, np.nan)

    def _shifted(
        self, w: np.ndarray, mu: np.ndarray, scale: np.ndarray, ybar: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        coef = w / scale[:, None]
        return coef, ybar - mu @ coef

    def probe(self, alpha: float | None = None, alphas: Sequence[float] = ALPHAS) -> RidgeProbe:
        """Fit on ``fit`` (+ ``val`` after choosing alpha on ``val`` by mean R², when ``alpha`` is None)."""
        fit, val = self.parts["fit"], self.parts["val"]
        if fit.n < 2:
            raise InputError("ridge: fewer than 2 training rows")
        val_r2 = float("nan")
        if alpha is None:
            if val.n < 2:
                raise InputError(
                    "ridge: choosing alpha needs validation rows (give alpha or more utterances)"
                )
            ws, mu, scale, ybar = self._solve(fit, alphas)
            scores = [float(np.nanmean(self._r2(val, *self._shifted(w, mu, scale, ybar)))) for w in ws]
            best = int(np.nanargmax(scores))
            alpha, val_r2 = float(alphas[best]), scores[best]
            fit = fit + val
        (w,), mu, scale, ybar = self._solve(fit, [alpha])
        coef, icpt = self._shifted(w, mu, scale, ybar)
        assert self.shift_x is not None and self.shift_y is not None
        # Back to raw inputs: y = (x - shift_x) @ coef + icpt + shift_y.
        raw_icpt = icpt + self.shift_y - self.shift_x @ coef
        return RidgeProbe(coef, raw_icpt, mu + self.shift_x, scale, float(alpha), val_r2)

    def r2(self, probe: RidgeProbe, part: str = "test") -> np.ndarray:
        """R² per target [T] of ``probe`` on ``part`` (NaN for targets constant in that part)."""
        assert self.shift_x is not None and self.shift_y is not None
        icpt = probe.intercept - self.shift_y + self.shift_x @ probe.coef
        return self._r2(self.parts[part], probe.coef, icpt)
