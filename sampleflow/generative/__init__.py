"""Score-based generative modelling from data (Song et al. 2021; Karras et al. 2022).

* :mod:`.sdes` — VP, sub-VP, VE and EDM forward SDEs (optional fixed noise covariance), ``ve_sigma_max``;
* :mod:`.model` — :class:`ScoreModel` (score / eps / denoiser parametrisations), EDM preconditioning,
  the reference :class:`ScoreMLP`;
* :mod:`.losses` — denoising score matching with σ², likelihood and EDM weightings;
* :mod:`.samplers` — Euler–Maruyama, reverse diffusion, Langevin corrector / predictor–corrector,
  probability-flow Euler, EDM Heun, adaptive RK45;
* :mod:`.likelihood` — log p(x) through the probability-flow ODE, bits/dim, the encoding x → z;
* :mod:`.datasets` — 2-D toy sets, Gaussian mixtures with analytic noised scores, digits, data loading;
* :mod:`.train` — :class:`ScoreModelConfig` (presets), :func:`build_score_model` (MLP / UNet, EDM
  preconditioning), :func:`fit_score_model` on the shared Trainer, :func:`save_score_model` / :func:`load_score_model`;
* :mod:`.target` — :class:`ScoreModelTarget`: a trained model as a target for the samplers;
* :mod:`.run` — run folders behind ``sampleflow generate train|sample``.

Time runs from 0 (data) to T (prior) here.
"""
from .datasets import (GaussianMixture, load_data, load_digits, make_circles, make_moons, make_swiss_roll,
                       toy_dataset)
from .likelihood import LikelihoodResult, bits_per_dim, dequantization_offset, encode, log_likelihood
from .losses import dsm_loss, importance_time_density, sample_times
from .model import (EDMPreconditioning, GaussianFourierFeatures, ScoreMLP, ScoreModel, denoiser_to_eps,
                    edm_preconditioning, eps_to_denoiser, eps_to_score, estimate_sigma_data, score_to_eps)
from .samplers import (SAMPLERS, SampleResult, edm_sigma_grid, euler_maruyama, heun_edm, langevin_step,
                       predictor_corrector, probability_flow_drift, probability_flow_euler, reverse_diffusion,
                       rk45_ode)
from .sdes import EDMSDE, SDE, SubVPSDE, VESDE, VPSDE, get_sde, ve_sigma_max
from .target import ScoreModelTarget
from .train import (SCORE_MODEL_PRESETS, FitResult, ScoreModelConfig, ScoreModelTrainer, build_score_model, build_sde,
                    fit_score_model, load_score_model, save_score_model)
from .run import generate_samples, resolve_data, sample_metrics, sample_run, train_run

__all__ = [
    "SDE", "VPSDE", "SubVPSDE", "VESDE", "EDMSDE", "get_sde", "ve_sigma_max",
    "ScoreModel", "EDMPreconditioning", "edm_preconditioning", "estimate_sigma_data", "ScoreMLP",
    "GaussianFourierFeatures", "eps_to_score", "score_to_eps", "eps_to_denoiser", "denoiser_to_eps",
    "dsm_loss", "sample_times", "importance_time_density",
    "SampleResult", "SAMPLERS", "euler_maruyama", "reverse_diffusion", "langevin_step", "predictor_corrector",
    "probability_flow_euler", "probability_flow_drift", "edm_sigma_grid", "heun_edm", "rk45_ode",
    "LikelihoodResult", "log_likelihood", "encode", "bits_per_dim", "dequantization_offset",
    "GaussianMixture", "make_moons", "make_circles", "make_swiss_roll", "toy_dataset", "load_digits", "load_data",
    "ScoreModelConfig", "SCORE_MODEL_PRESETS", "build_sde", "build_score_model", "ScoreModelTrainer", "FitResult",
    "fit_score_model", "save_score_model", "load_score_model", "ScoreModelTarget",
    "resolve_data", "train_run", "sample_run", "generate_samples", "sample_metrics",
]
