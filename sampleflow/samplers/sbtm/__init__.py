"""Score-based transport modelling (SBTM; Ilin et al., "Score-based deterministic density sampling", 2025):
deterministic particles moved by ∇log π − s, with s ≈ ∇log f_t learned on the fly.

* :mod:`.losses` — implicit score matching (exact / Hutchinson divergence from
  :mod:`sampleflow.sde.divergence`), the antithetic denoising loss,
  explicit score matching, the relative Fisher information (pure functions);
* :mod:`.fused` — the ISM loss gradient of the residual MLP by a hand-derived backward pass and a flat
  AdamW step (the fast training path, pure functions);
* :mod:`.config` — :class:`SBTMConfig` (the paper's settings as defaults);
* :mod:`.score` — the score network and its persistent-optimiser training on the particles;
* :mod:`.flow` — the particle loop (Euler / Heun, annealing, temperature, logging);
* :mod:`.sampler` — the registered sampler ``sbtm``.
"""
from .config import SBTMConfig
from .flow import FlowResult, sbtm_flow
from .losses import denoising_ism_loss, esm_loss, ism_loss, relative_fisher
from .sampler import SBTM
from .score import ScoreTrainer, build_score_network

__all__ = ["SBTM", "SBTMConfig", "sbtm_flow", "FlowResult", "ScoreTrainer", "build_score_network",
           "ism_loss", "denoising_ism_loss", "esm_loss", "relative_fisher"]
