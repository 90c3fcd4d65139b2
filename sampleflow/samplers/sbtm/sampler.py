"""``sbtm``: the score-based transport modelling sampler as a registered :class:`Sampler` (start law,
network, initial fit, the particle loop of :mod:`.flow`, diagnostics into :class:`Samples`)."""
from __future__ import annotations

import warnings

import torch

from ...samples import Samples
from ..base import CountingTarget, Sampler, Timer
from ..registry import register
from .config import SBTMConfig
from .flow import sbtm_flow
from .score import ScoreTrainer, build_score_network

__all__ = ["SBTM"]


@register
class SBTM(Sampler):
    """Score-based transport modelling (Ilin et al. 2025): n deterministic particles, no weights. NFE = the
    target score evaluations: n for the finiteness check at the start, then n per Euler step (2n per Heun
    step), i.e. n·(1 + steps) with Euler."""

    name = "sbtm"
    Config = SBTMConfig
    presets = {"default": {}, "cpu": {"n_steps": 500}}

    def initial_law(self, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation (each (d,)) of the Gaussian start f₀."""
        low, high = (b.to(device=device, dtype=dtype) for b in self.target.box)
        c = self.config
        mean = (low + high) / 2 if c.init_mean is None else torch.full_like(low, c.init_mean)
        std = (high - low) / 4 if c.init_std is None else torch.full_like(low, c.init_std)
        return mean, std

    def monitors(self, n: int, generator) -> dict:
        """The every-``log_every``-steps diagnostics the config asks for and the target allows."""
        from ...metrics.distances import sliced_wasserstein
        from ...metrics.kl import gaussian_fit_kl, kde_kl
        c, t = self.config, self.target
        out = {}
        if c.kl == "gaussian":
            if not (hasattr(t, "mean") and hasattr(t, "cov")):
                raise ValueError(f"kl='gaussian' needs a Gaussian target (with mean and cov); "
                                 f"'{t.name}' is not one")
            out["kl"] = lambda x: gaussian_fit_kl(x.double(), t.mean, t.cov)
        elif c.kl == "kde":
            if t.log_Z is None or t.log_Z.error not in (0, 0.0, None):
                raise ValueError(f"kl='kde' needs a target with an exact log Z; '{t.name}' has "
                                 f"{t.log_Z!r}")
            log_z = float(t.log_Z.value)
            out["kl"] = lambda x: kde_kl(x.double(), lambda y: t.log_prob(y) - log_z)
        if c.distance:
            if not t.has_exact_sampler:
                raise ValueError(f"distance=True needs a target with an exact sampler; '{t.name}' has none")
            ref = t.sample(min(n, 2000), generator=generator).double()
            out["sliced_wasserstein"] = lambda x: sliced_wasserstein(x[:2000].double(), ref)
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> Samples:
        n = self._check_n(n)
        c = self.config
        device, dtype = self._device_dtype(generator, c.dtype)
        counted = CountingTarget(self.target)
        d = self.target.dim
        with Timer() as t:
            mean, std = self.initial_law(dtype, device)
            x0 = mean + std * torch.randn(n, d, generator=generator, dtype=dtype, device=device)
            start_score = counted.score(x0)
            if not bool(torch.isfinite(start_score).all()):
                raise ValueError(f"the score of target '{self.target.name}' is not finite at some of the initial "
                                 "SBTM particles; choose init_mean/init_std inside the target's support")
            seed = int(torch.randint(0, 2**62, (), generator=generator, device=device))
            net = build_score_network(d, c, seed).to(device=device, dtype=dtype)
            trainer = ScoreTrainer(net, c, d, generator)

            def init_score(x):
                return -(x - mean) / (std * std)

            fit = trainer.fit_initial(x0, init_score(x0))
            flow = sbtm_flow(x0, counted.score, trainer, c, init_score=init_score,
                             monitors=self.monitors(n, generator), progress_desc=f"sbtm n={n}")
        x = flow.x
        n_bad = int((~torch.isfinite(x).all(1)).sum())
        if n_bad:
            warnings.warn(f"sbtm: {n_bad} of {n} particles are not finite after {c.n_steps} steps "
                          f"(step_size={c.step_size} may be too large)", RuntimeWarning, stacklevel=2)
        info = {"steps": c.n_steps, "step_size": c.step_size, "integrator": c.integrator, "n_particles": n,
                "divergence": trainer.divergence, "train_iterations": trainer.iterations, **fit,
                "nfe_score": counted.nfe_score, "n_nonfinite": n_bad,
                "diagnostics": {k: v.tolist() for k, v in flow.history.items()},
                "monitors": flow.monitors, "trajectory_steps": flow.trajectory_steps}
        return Samples(x=x, trajectory=flow.trajectory, nfe=counted.nfe, wall_time=t.seconds,
                       sampler=self.name, target=self.target.name, info=info)
