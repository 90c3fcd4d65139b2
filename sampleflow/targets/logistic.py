"""Bayesian logistic regression on real data sets (Blessing et al. 2024, "Beyond ELBOs", targets
``ionosphere.py``, ``sonar.py``, ``german_credit.py``, ``breast_cancer.py``; data in the shared data folder,
see its TARGETS.md §4).

With design matrix X (n × d, a column of ones first: w₀ is the intercept) and labels y ∈ {0, 1},

    log π̃(w) = Σ_n [ y_n log σ(x_n·w) + (1 − y_n) log σ(−x_n·w) ] + Σ_j log N(w_j; 0, s²)
             = Σ_n [ y_n z_n − softplus(z_n) ] + log prior,     z = Xw,

    ∇ log π̃(w) = Xᵀ(y − σ(Xw)) − w / s².

Data sets and their conventions (kept exactly as the benchmark code has them):

* ``ionosphere`` (d = 35) and ``sonar`` (d = 61): labels (file ± 1 + 1)/2; each feature column centred and
  divided by its population std (a std of 0 replaced by 1); prior N(0, 1).
* ``german_credit_flat_prior`` / ``german_credit_normal10_prior`` (d = 25) and ``breast_cancer_normal10_prior``
  (d = 31): features divided by their population std, **not** centred, and Beyond-ELBOs' *reversed* sign,
  p(ℓ = 1) = σ(−x·w) — implemented as the usual model with y = 1 − ℓ. The flat-prior German credit density is
  what BE's code evaluates (its prior line is commented out); it is proper because the data are not separable.
  Breast cancer with the flat prior is improper (separable data) and is not registered; build it with
  ``BreastCancer(prior_sd=None)`` only for checks.

No closed-form log Z: ``log_Z`` is None.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from .base import Target, TargetInputError
from .registry import register

__all__ = ["LogisticRegression", "Ionosphere", "Sonar", "GermanCredit", "BreastCancer"]

_LOG_2PI = math.log(2 * math.pi)


class LogisticRegression(Target):
    """Bayesian logistic regression, p(y_n = 1 | w) = σ(x_n·w), prior N(0, prior_sd² I) (or flat when
    ``prior_sd`` is None). ``X`` (n × d) already holds the intercept column; ``y`` holds 0/1 labels."""

    version = "1"

    def __init__(self, X, y, *, prior_sd: float | None = 1.0, name: str = "logistic_regression",
                 box: tuple | None = None, reference_file: str | None = None):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise TargetInputError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
        if not np.all((y == 0) | (y == 1)):
            raise TargetInputError("labels y must be 0 or 1")
        if prior_sd is not None and not (float(prior_sd) > 0 and math.isfinite(float(prior_sd))):
            raise TargetInputError(f"prior_sd must be positive or None, got {prior_sd!r}")
        super().__init__(int(X.shape[1]), name=name, log_Z=None, box=box)
        self.prior_sd = None if prior_sd is None else float(prior_sd)
        self.n_data = int(X.shape[0])
        self._register("X", X)
        self._register("y", y)
        self._reference_file = reference_file
        if self.prior_sd is not None:
            self._prior_const = -0.5 * self.dim * (_LOG_2PI + 2 * math.log(self.prior_sd))

    def _log_prob(self, w):
        X, y = self._param("X", w), self._param("y", w)
        z = w @ X.T                                              # (..., n)
        ll = (z * y).sum(-1) - F.softplus(z).sum(-1)
        if self.prior_sd is not None:
            ll = ll - 0.5 * (w * w).sum(-1) / self.prior_sd ** 2 + self._prior_const
        return ll

    def _score(self, w):
        X, y = self._param("X", w), self._param("y", w)
        g = (y - torch.sigmoid(w @ X.T)) @ X
        if self.prior_sd is not None:
            g = g - w / self.prior_sd ** 2
        return g

    @property
    def has_reference_samples(self) -> bool:
        return self._reference_file is not None

    def _reference_samples(self):
        if self._reference_file is None:
            raise NotImplementedError(f"target '{self.name}' has no reference samples")
        return torch.as_tensor(np.asarray(data.load_array(self._reference_file), dtype=np.float64))


def _standardise(X: np.ndarray, centre: bool) -> np.ndarray:
    sd = X.std(axis=0)                                           # population std (ddof 0)
    sd = np.where(sd == 0, 1.0, sd)
    Z = (X - X.mean(axis=0)) / sd if centre else X / sd
    return np.concatenate([np.ones((X.shape[0], 1)), Z], axis=1)


def _uci_pm1(stem: str, name: str) -> LogisticRegression:
    X = np.asarray(data.load_array(f"{stem}_X.npy"), dtype=np.float64)
    y = (np.asarray(data.load_array(f"{stem}_y.npy"), dtype=np.float64) + 1) / 2
    return LogisticRegression(_standardise(X, centre=True), y, prior_sd=1.0, name=name, box=(-5.0, 5.0))


def Ionosphere() -> LogisticRegression:
    """Ionosphere (351 × 34, UCI): d = 35, prior N(0, 1), centred and scaled features (BE ``ionosphere.py``)."""
    return _uci_pm1("ionosphere", "ionosphere")


def Sonar() -> LogisticRegression:
    """Sonar (208 × 60, UCI): d = 61, prior N(0, 1), centred and scaled features (BE ``sonar.py``)."""
    return _uci_pm1("sonar", "sonar")


def GermanCredit(prior_sd: float | None = 10.0) -> LogisticRegression:
    """German credit (1000 × 24, UCI ``german.data-numeric``): d = 25, BE's reversed sign, features scaled
    not centred. ``prior_sd=None`` is BE's flat prior (log-likelihood only), 10.0 the N(0, 10²) prior.

    Reference draws ``german_credit_reference_10k.npy`` (BE) are attached to both: which prior they were drawn
    under is not recorded, and at 10k draws the difference (~0.3 Monte Carlo s.e.) is not detectable."""
    raw = np.loadtxt(data.path("german.data-numeric"))
    X, lab = raw[:, :24], raw[:, 24] - 1
    name = "german_credit_flat_prior" if prior_sd is None else (
        "german_credit_normal10_prior" if prior_sd == 10.0 else f"german_credit_normal{prior_sd:g}_prior")
    return LogisticRegression(_standardise(X, centre=False), 1.0 - lab, prior_sd=prior_sd, name=name,
                              box=([-12.0] + [-3.0] * 24, [6.0] + [3.0] * 24),
                              reference_file="german_credit_reference_10k.npy")


def BreastCancer(prior_sd: float | None = 10.0) -> LogisticRegression:
    """Breast cancer (Wisconsin diagnostic, 569 × 30, UCI): d = 31, BE's reversed sign, features scaled not
    centred, prior N(0, prior_sd²). The data are used in float64 (BE casts them to float32 first, which moves
    log π̃ by ~1e-7 relative; the check values of TARGETS.md §6 are the float64 ones).

    ``prior_sd=None`` (BE's flat prior) is **improper** (separable data) — for checks only, not registered.
    Reference draws ``breast_cancer_reference_10k.npy`` (10080 × 31) are draws of the N(0, 10²) model and are
    attached only to that one."""
    raw = np.loadtxt(data.path("breast_cancer.data"))
    X, lab = raw[:, 2:], raw[:, 1]
    name = "breast_cancer_flat_prior" if prior_sd is None else (
        "breast_cancer_normal10_prior" if prior_sd == 10.0 else f"breast_cancer_normal{prior_sd:g}_prior")
    ref = "breast_cancer_reference_10k.npy" if prior_sd == 10.0 else None
    return LogisticRegression(_standardise(X, centre=False), 1.0 - lab, prior_sd=prior_sd, name=name,
                              box=(-60.0, 60.0), reference_file=ref)


def _german_flat():
    return GermanCredit(prior_sd=None)


def _german_normal10():
    return GermanCredit(prior_sd=10.0)


def _breast_cancer_normal10():
    return BreastCancer(prior_sd=10.0)


register("ionosphere", Ionosphere, "Bayesian logistic regression, Ionosphere (d=35, N(0,1) prior; BE 2024)")
register("sonar", Sonar, "Bayesian logistic regression, Sonar (d=61, N(0,1) prior; BE 2024)")
register("german_credit_flat_prior", _german_flat,
         "Bayesian logistic regression, German credit (d=25), flat prior as BE's code evaluates it")
register("german_credit_normal10_prior", _german_normal10,
         "Bayesian logistic regression, German credit (d=25), N(0,10²) prior")
register("breast_cancer_normal10_prior", _breast_cancer_normal10,
         "Bayesian logistic regression, breast cancer (d=31), N(0,10²) prior; reference draws from BE")
