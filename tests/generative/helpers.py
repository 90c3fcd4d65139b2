"""Shared fixtures for the generative tests: a 2-D Gaussian mixture with analytic noised score."""
import torch

from sampleflow.generative import GaussianMixture, ScoreModel

DT = torch.float64


def mixture() -> GaussianMixture:
    """Three correlated components, unequal weights (spread ≈ ±3)."""
    return GaussianMixture(
        [0.3, 0.5, 0.2],
        [[-2.0, 0.0], [1.5, 1.0], [0.5, -2.0]],
        [[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.05], [-0.05, 0.4]], [[0.15, 0.0], [0.0, 0.15]]],
    )


def analytic_model(mix: GaussianMixture, sde) -> ScoreModel:
    """The exact score of the noised mixture, as a score-parametrised model (no training)."""
    return ScoreModel(mix.score_fn(sde), sde, "score")


CHOL = torch.tensor([[1.0, 0.0], [0.6, 0.5]], dtype=DT)
