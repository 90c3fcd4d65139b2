"""Metrics: log Z / ELBO / EUBO / ESS, sample distances, mode coverage, moment errors, and ``evaluate``.

Each function states its exact definition and the published protocol it follows (see
``../shared/PUBLISHED.md``); ``evaluate(samples, target)`` returns every metric that applies as a flat dict.
"""
from .distances import (SINKHORN_PROTOCOLS, SinkhornNotConverged, energy_distance, entropic_ot, gaussian_w2,
                        median_pairwise_distance, mmd, sinkhorn, sliced_wasserstein, wasserstein2)
from .evaluate import METRICS, evaluate
from .logz import elbo, ess, eubo, log_mean_exp, log_Z_importance
from .modes import entropic_mode_coverage, mode_histogram
from .moments import mean_error, moment_errors, std_error, weighted_mean_std, weights_from_log

__all__ = [
    "log_Z_importance", "elbo", "eubo", "ess", "log_mean_exp",
    "sinkhorn", "entropic_ot", "SINKHORN_PROTOCOLS", "SinkhornNotConverged", "wasserstein2", "gaussian_w2",
    "mmd", "median_pairwise_distance", "energy_distance", "sliced_wasserstein",
    "entropic_mode_coverage", "mode_histogram",
    "mean_error", "std_error", "moment_errors", "weighted_mean_std", "weights_from_log",
    "evaluate", "METRICS",
]
from .kl import gaussian_fit_kl, gaussian_kl, kde_kl, kde_log_density, ou_gaussian_kl

__all__ += ["gaussian_kl", "gaussian_fit_kl", "ou_gaussian_kl", "kde_log_density", "kde_kl"]
