"""Network building blocks for learned samplers and score models.

* :mod:`.time` — :class:`SinusoidalTimeEmbedding` (sin/cos time features), :func:`broadcast_time`;
* :mod:`.mlp` — :class:`MLP`, :class:`ResidualMLP`, :class:`TimeMLP` (control/score network f(x, t)), :class:`TimeScalar`
  (learned coefficient c(t)), :func:`count_parameters`;
* :mod:`.parametrisations` — :class:`PlainControl`, :class:`ScoreInformedControl`,
  :class:`InterpolatedScoreControl`, :func:`build_control`, :func:`clip_score`;
* :mod:`.potential` — :class:`GradientField`, a score parametrised as the gradient of a scalar network;
* :mod:`.unet` — :class:`UNet`, a small convolutional U-Net for image score models (flat in, flat out);
* :mod:`.ema` — :class:`EMA` of weights for evaluation.

All are plain ``torch.nn.Module`` s (EMA is a plain object); dtype and device follow the parameters and
inputs; they compose with ``torch.func`` (``functional_call``, ``vmap``, ``jacrev``, ``jvp``).
"""
from .ema import EMA
from .mlp import MLP, ResidualMLP, TimeMLP, TimeScalar, count_parameters, make_activation
from .parametrisations import (
    InterpolatedScoreControl,
    PlainControl,
    ScoreInformedControl,
    build_control,
    clip_score,
)
from .potential import GradientField
from .time import SinusoidalTimeEmbedding, as_time_tensor, broadcast_time
from .unet import UNet

__all__ = [
    "EMA",
    "MLP",
    "ResidualMLP",
    "GradientField",
    "TimeMLP",
    "TimeScalar",
    "count_parameters",
    "make_activation",
    "PlainControl",
    "ScoreInformedControl",
    "InterpolatedScoreControl",
    "build_control",
    "clip_score",
    "SinusoidalTimeEmbedding",
    "broadcast_time",
    "as_time_tensor",
    "UNet",
]
