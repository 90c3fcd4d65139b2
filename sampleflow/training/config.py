"""Training configuration and the learning-rate schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TrainConfig", "lr_at"]


@dataclass
class TrainConfig:
    """Settings of :class:`~sampleflow.training.Trainer` (defaults: the learned-diffusion-sampler papers).

    iterations:       budget in optimisation steps (a skipped non-finite step counts as one).
    time_budget:      seconds of training (summed over resumed sessions); the run stops after the
                      first iteration that ends past it, or at ``iterations``, whichever comes first.
    lr, lr_final:     the learning rate decays *geometrically* from ``lr`` at the first iteration to
                      ``lr_final`` at the last one (index ``iterations - 1``):
                      ``lr_i = lr * (lr_final / lr) ** (i / (iterations - 1))``.  ``lr_final=None``
                      (or ``iterations == 1``) keeps ``lr`` constant.  The schedule is a function of
                      the iteration index only, so a run stopped early by ``time_budget`` ends above
                      ``lr_final``; to train further, raise ``iterations`` and call ``run`` again.
    grad_clip:        clip the global (all-parameter) gradient 2-norm to this value; None = off.
    ema_decay:        keep an exponential moving average of the weights, ``ema = d*ema + (1-d)*w``
                      after each applied step (used for evaluation); None = off.
    ema_warmup:       use d_k = min(ema_decay, (1 + k)/(10 + k)) at the k-th update (see
                      :class:`sampleflow.nn.EMA`), so that short runs are not dominated by the
                      initial weights.
    max_nonfinite:    this many consecutive non-finite losses or gradients raise
                      :class:`~sampleflow.training.TrainingDivergedError`; each one is skipped.
    checkpoint_every: write a checkpoint every k iterations (and always at the end, on Ctrl-C and
                      on an early stop) when the trainer has a ``checkpoint_path``; 0/None = only
                      at the end and on Ctrl-C.
    log_every:        append a row to the history every k iterations (and at the last one); the row
                      holds the mean of loss, grad-norm and info values over the finite steps since
                      the previous row, and the lr of the row's iteration.
    progress:         progress bar: None = automatic (:func:`sampleflow.progress.progress` decides:
                      shown on a terminal), True/False = force.
    betas, eps, weight_decay: Adam's (AdamW's decoupled decay when ``weight_decay > 0``).
    """

    iterations: int = 10_000
    time_budget: float | None = None
    lr: float = 5e-3
    lr_final: float | None = 1e-4
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    ema_warmup: bool = False
    max_nonfinite: int = 50
    checkpoint_every: int | None = 500
    log_every: int = 10
    progress: bool | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}")

        if not isinstance(self.iterations, int) or isinstance(self.iterations, bool) or self.iterations < 1:
            bad("iterations", "must be a positive integer")
        if self.time_budget is not None and not (self.time_budget > 0):
            bad("time_budget", "must be a positive number of seconds or None")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad("lr", "must be a positive finite number")
        if self.lr_final is not None and not (self.lr_final > 0 and math.isfinite(self.lr_final)):
            bad("lr_final", "must be a positive finite number or None (constant lr)")
        if self.grad_clip is not None and not (self.grad_clip > 0):
            bad("grad_clip", "must be positive or None (no clipping)")
        if self.ema_decay is not None and not (0.0 <= self.ema_decay < 1.0):
            bad("ema_decay", "must be in [0, 1) or None (no EMA)")
        if not isinstance(self.max_nonfinite, int) or self.max_nonfinite < 1:
            bad("max_nonfinite", "must be a positive integer")
        if self.checkpoint_every is not None and (not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0):
            bad("checkpoint_every", "must be a non-negative integer or None")
        if not isinstance(self.log_every, int) or self.log_every < 1:
            bad("log_every", "must be a positive integer")
        self.betas = tuple(float(b) for b in self.betas)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            bad("betas", "must be two numbers in [0, 1)")


def lr_at(config: TrainConfig, index: int) -> float:
    """The learning rate of the iteration with 0-based ``index`` (geometric decay, see TrainConfig)."""
    if config.lr_final is None or config.iterations == 1:
        return float(config.lr)
    frac = min(max(index, 0), config.iterations - 1) / (config.iterations - 1)
    if index >= config.iterations - 1:
        return float(config.lr_final)  # exact at the end, no rounding in the power
    return float(config.lr * (config.lr_final / config.lr) ** frac)
