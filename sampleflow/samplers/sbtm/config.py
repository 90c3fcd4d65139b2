"""SBTM's configuration: a plain dataclass whose defaults are the paper's 1-D settings (Ilin et al., "Score-based
deterministic density sampling", 2025, and its code: ResNet-MLP [128, 128] with soft-sign, AdamW lr 5·10⁻⁴,
10 minibatches of 400 per particle step, step 0.01, 1000 steps)."""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SBTMConfig"]

_NETWORKS = ("resmlp", "mlp")
_SCHEDULES = ("steps", "epochs", "grad_norm")
_LOSSES = ("ism", "denoising")
_DIVERGENCES = ("auto", "exact", "hutchinson")
_INTEGRATORS = ("euler", "heun")
_KL = ("none", "gaussian", "kde")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


@dataclass
class SBTMConfig:
    """Particle dynamics: ``n_steps`` steps of size ``step_size`` of dX/dt = ∇log π_t(X) − γ_t s_t(X) by
    ``integrator`` "euler" or "heun" (Heun retrains s at the predicted point).

    Start: N(``init_mean``, ``init_std``²) per coordinate (None: the centre of the target's box, and a quarter
    of its width), whose score s₀(x) = −(x − m)/σ² the network is first fitted to by explicit score matching,
    until the relative loss E|s − s₀|²/E|s₀|² < ``init_tol`` (checked every 10 iterations) or
    ``init_max_steps`` iterations.

    Network: ``network`` "resmlp" (residual MLP) or "mlp", ``width``, ``depth`` hidden layers, ``activation``;
    ``potential=True`` parametrises s = ∇φ with a scalar network φ. Optimiser: AdamW(``lr``,
    ``weight_decay``), persistent across steps (warm start).

    Per-step training (``schedule``): "steps" — ``train_steps`` minibatch steps of ``batch_size`` particles
    (drawn from a fresh shuffle of all particles); "epochs" — ``epochs`` whole shuffled passes; "grad_norm" —
    minibatch steps until the gradient norm < ``grad_tol`` (at most ``max_train_steps``; one host sync per
    iteration). A batch larger than n is clipped to n.

    Loss (``loss``): "ism" (implicit score matching, ``divergence`` "exact", "hutchinson" with ``probes``
    Rademacher probes, or "auto" = exact for d ≤ 8) or "denoising" (antithetic, noise ``denoise_sigma``).

    Annealing: ``anneal_steps`` > 0 follows the geometric path log π_t = (1−λ) log f₀ + λ log π with λ rising
    linearly from 0 to 1 over the first ``anneal_steps`` steps. Temperature: the learned-score term is
    multiplied by γ_k, linear from ``score_weight`` to ``score_weight_final`` (None: constant) over the run.

    Logging: per step, the relative Fisher information (1/n)Σ|s − ∇log π|² and the last training loss (kept on
    the device, no host sync); every ``log_every`` steps the ``kl`` estimate ("gaussian": exact KL of the
    particles' fitted Gaussian to a Gaussian target; "kde": the 1-D KDE plug-in) and the sliced Wasserstein
    distance to exact target draws when ``distance`` and the target has an exact sampler.
    ``keep_trajectory`` k > 0 stores every k-th step of the first ``trajectory_particles`` particles.

    Speed: for the ISM loss on the residual MLP with soft-sign or tanh (the defaults) the gradient comes from
    a hand-derived backward pass (:mod:`.fused`; same numbers as autograd to float rounding), always on.
    ``compile=True`` also runs each training iteration (minibatch gather, loss, gradient and the AdamW step)
    and the score evaluation as ``torch.compile`` graphs (Inductor fuses the elementwise work around the
    matmuls; needs a C++ compiler on the CPU; the first step pays the compilation, ~15–30 s, less with
    Inductor's on-disk cache); for other networks/losses it compiles the loss only. Off by default.
    """

    n_steps: int = 1000
    step_size: float = 0.01
    integrator: str = "euler"
    init_mean: float | None = None
    init_std: float | None = None
    init_tol: float = 1e-3
    init_max_steps: int = 2000
    network: str = "resmlp"
    width: int = 128
    depth: int = 2
    activation: str = "softsign"
    potential: bool = False
    lr: float = 5e-4
    weight_decay: float = 1e-4
    schedule: str = "steps"
    train_steps: int = 10
    batch_size: int = 400
    epochs: int = 1
    grad_tol: float = 1e-2
    max_train_steps: int = 100
    loss: str = "ism"
    divergence: str = "auto"
    probes: int = 1
    denoise_sigma: float = 0.1
    anneal_steps: int = 0
    score_weight: float = 1.0
    score_weight_final: float | None = None
    log_every: int = 10
    kl: str = "none"
    distance: bool = False
    keep_trajectory: int = 0
    trajectory_particles: int = 1000
    dtype: str | None = None
    compile: bool = False

    def __post_init__(self):
        for name in ("n_steps", "anneal_steps", "keep_trajectory"):
            v = getattr(self, name)
            if not (_is_int(v) and v >= 0):
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        for name in ("init_max_steps", "width", "depth", "train_steps", "batch_size", "epochs",
                     "max_train_steps", "probes", "log_every", "trajectory_particles"):
            v = getattr(self, name)
            if not (_is_int(v) and v >= 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("step_size", "init_tol", "lr", "grad_tol", "denoise_sigma"):
            v = getattr(self, name)
            if not _positive(v):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a non-negative number, got {self.weight_decay!r}")
        if self.init_std is not None and not _positive(self.init_std):
            raise ValueError(f"init_std must be None or a positive number, got {self.init_std!r}")
        if self.init_mean is not None and not (isinstance(self.init_mean, (int, float))
                                               and math.isfinite(self.init_mean)):
            raise ValueError(f"init_mean must be None or a finite number, got {self.init_mean!r}")
        for name, allowed in (("integrator", _INTEGRATORS), ("network", _NETWORKS), ("schedule", _SCHEDULES),
                              ("loss", _LOSSES), ("divergence", _DIVERGENCES), ("kl", _KL)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("score_weight", "score_weight_final"):
            v = getattr(self, name)
            if v is None and name == "score_weight_final":
                continue
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")
        if self.dtype not in (None, "float32", "float64"):
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")

    def resolved_divergence(self, dim: int) -> str:
        """"exact" or "hutchinson" ("auto": exact up to d = 8)."""
        if self.divergence == "auto":
            return "exact" if dim <= 8 else "hutchinson"
        return self.divergence
