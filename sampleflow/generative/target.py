"""A trained score model as a *target* for the samplers of :mod:`sampleflow.samplers` (DESIGN.md §3:
"a trained score model is also a target for the samplers above").

The target density is the model's marginal at a small noise level, π = p_{t₀} (t₀ = ``t_min``, by default
the SDE's own t_min), whose score is the network's ∇log p_{t₀}(x) (Song et al. 2021, "Score-based generative
modeling through SDEs"). Its log-density is *not* available in closed form: :meth:`ScoreModelTarget.log_prob`
computes it exactly through the probability-flow ODE (:func:`.likelihood.log_likelihood`, exact divergence
for d ≤ 32, Hutchinson above; Song et al. 2021 §4.3), which costs hundreds of network evaluations per call.
That makes score-only samplers (ULA, SVGD, SBTM) cheap and Metropolis-corrected ones (MALA, HMC, SMC) slow
but exact; see ``joint_log_prob``.

The score at very small noise levels is where a trained network is least accurate (the true score of data
concentrated near a manifold blows up as σ → 0); for a learned model choose ``t_min`` at a scaled noise
level σ̃ of a few per cent of the data's spread (``sigma_tilde=`` does that), not the SDE's 1e-3.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..targets.base import Target, TargetInputError
from .likelihood import log_likelihood
from .model import ScoreModel

__all__ = ["ScoreModelTarget"]


class ScoreModelTarget(Target):
    """π(x) = p_{t₀}(x), the trained model's marginal at time t₀, as a :class:`~sampleflow.targets.base.Target`.

    score(x)    = ``model.score(x, t₀)`` (one network evaluation; d = C·H·W for images, flat points).
    log_prob(x) = log p_{t₀}(x) by the probability-flow ODE (:func:`log_likelihood`; slow: an adaptive
                  RK45 solve with the exact divergence for d ≤ 32). Normalised, so ``log_Z`` = 0.
    sample(n)   = draws from the model (:func:`.samplers.heun_edm`, 18 steps; exact up to the model and the
                  solver), so ``evaluate`` can compare a sampler with the model's own samples.

    Parameters: ``model`` (a :class:`ScoreModel`, evaluated as is: load the EMA weights first), ``t_min``
    (t₀; default the SDE's t_min) or ``sigma_tilde`` (t₀ with σ̃(t₀) = sigma_tilde); ``joint_log_prob``:
    what :meth:`log_prob_and_score` (the call of the MCMC kernels) returns as log-density —
    ``"ode"`` (default: the exact ODE log-likelihood; MALA/HMC correct but slow) or ``"zero"`` (a
    placeholder 0, for samplers that use the score only, such as ULA: then :meth:`check_finite` checks the
    score, and a Metropolis sampler would accept every move, i.e. become ULA); ``likelihood``: keyword
    arguments for :func:`log_likelihood` (e.g. ``{"rtol": 1e-4}``); ``box``: a (low, high) plotting box.
    """

    SAMPLE_STEPS = 100

    def __init__(self, model: ScoreModel, t_min: float | None = None, *, sigma_tilde: float | None = None,
                 joint_log_prob: str = "ode", likelihood: dict | None = None, box=None,
                 name: str = "score_model", dim: int | None = None):
        if not isinstance(model, ScoreModel):
            raise TargetInputError(f"model must be a sampleflow.generative.ScoreModel, got {type(model).__name__}")
        if joint_log_prob not in ("ode", "zero"):
            raise TargetInputError(f"joint_log_prob must be 'ode' or 'zero', got {joint_log_prob!r}")
        sde = model.sde
        if t_min is not None and sigma_tilde is not None:
            raise TargetInputError("give t_min or sigma_tilde, not both")
        if sigma_tilde is not None:
            if not (sigma_tilde > 0):
                raise TargetInputError(f"sigma_tilde must be positive, got {sigma_tilde!r}")
            t_min = float(sde.t_from_sigma_tilde(torch.tensor(float(sigma_tilde), dtype=torch.float64)))
        t_min = sde.t_min if t_min is None else float(t_min)
        if not (math.isfinite(t_min) and 0 < t_min < sde.T):
            raise TargetInputError(f"t_min must lie in (0, T = {sde.T}), got {t_min!r}")
        if dim is None:
            dim = getattr(model.net, "dim", None)
        if dim is None:
            raise TargetInputError("cannot infer the dimension from model.net; pass dim=")
        super().__init__(int(dim), name=name, log_Z=0.0, box=box if box is not None else (-3.0, 3.0))
        self.model = model
        self.sde = sde
        self.t_min = t_min
        self.joint_log_prob = joint_log_prob
        self.likelihood_kwargs = dict(likelihood or {})

    def _model_dtype(self) -> torch.dtype:
        p = next(iter(self.model.parameters()), None)
        return p.dtype if p is not None else torch.get_default_dtype()

    def _flat(self, x: Tensor) -> tuple[Tensor, tuple]:
        lead = x.shape[:-1]
        return x.reshape(-1, self.dim).to(self._model_dtype()), lead

    def _score(self, x: Tensor) -> Tensor:
        xf, lead = self._flat(x)
        with torch.no_grad():
            s = self.model.score(xf, self.t_min)
        return s.to(x.dtype).reshape(*lead, self.dim)

    def _log_prob(self, x: Tensor) -> Tensor:
        """log p_{t₀}(x) through the probability-flow ODE (Song et al. 2021, §4.3; slow, exact divergence)."""
        xf, lead = self._flat(x)
        if xf.shape[0] == 0:
            return x.new_zeros(lead)
        sde = self.sde
        if abs(self.t_min - sde.t_min) > 1e-12 * max(1.0, sde.T):
            sde = _shifted(sde, self.t_min)
        res = log_likelihood(self.model, sde, xf, **self.likelihood_kwargs)
        return res.log_prob.detach().to(x.dtype).reshape(lead)

    def log_prob_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._check_points(x)
        s = self._score(x)
        if self.joint_log_prob == "zero":
            return x.new_zeros(x.shape[:-1]), s
        return self._log_prob(x), s

    def check_finite(self, x: Tensor, argname: str = "x") -> None:
        if self.joint_log_prob == "ode":
            return super().check_finite(x, argname)
        s = self.score(x)
        bad = ~torch.isfinite(s).all(-1)
        if bool(bad.any()):
            raise TargetInputError(f"the score of target '{self.name}' is not finite at {int(bad.sum())} of "
                                   f"{bad.numel()} points of {argname}")

    def _sample(self, n: int, generator, device) -> Tensor:
        """Draws of π = p_{t₀} as the forward SDE defines it: x₀ from the model (EDM Heun to σ = 0 with
        ``SAMPLE_STEPS`` steps: these are reference draws, so accuracy first — with the exact score of a 2-D
        Gaussian, 18 steps overestimate a variance of 0.5 by 12 %, 50 steps by 2 %), then the exact forward
        transition x = s(t₀) (x₀ + σ̃(t₀) C ε)."""
        from .samplers import heun_edm
        sde = self.sde
        x0 = heun_edm(self.model, sde, (n, self.dim), steps=self.SAMPLE_STEPS, generator=generator,
                      dtype=self._model_dtype(), device=device).x
        t = torch.tensor(self.t_min, dtype=x0.dtype, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return sde.mean_scale(t) * (x0 + sde.sigma_tilde(t) * sde.apply_chol(eps))

    def describe(self) -> dict:
        d = super().describe()
        d.update(t_min=self.t_min, sde=type(self.sde).__name__, joint_log_prob=self.joint_log_prob)
        return d


def _shifted(sde, t_min: float):
    """A shallow copy of ``sde`` whose t_min is ``t_min`` (the likelihood integrates from t_min)."""
    import copy
    s = copy.copy(sde)
    s.t_min = float(t_min)
    return s
