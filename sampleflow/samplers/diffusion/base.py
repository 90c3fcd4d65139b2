"""The learned diffusion sampler: a discrete path (``sampleflow.sde.paths``) + control networks
(``sampleflow.nn``) trained with a path-measure divergence (``losses``) by the shared
:class:`~sampleflow.training.Trainer`.

Each method (PIS, DIS, DDS, bridge, CMCD) is a small subclass that says which path and which control
parametrisation it uses; the training step, sampling and state handling are shared here.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ..._rng import make_generator
from ...nn import EMA, build_control
from ...samples import Samples
from ...sde.simulate import simulate
from ...training import TrainConfig, Trainer
from ..base import CountingTarget, Sampler, Timer
from .losses import (LOSSES, TRAJECTORY_MODE, kl_loss, log_variance_loss, log_variance_per_start_loss,
                     trajectory_balance_loss)

__all__ = ["DiffusionConfig", "DiffusionSampler", "DIFFUSION_PRESETS"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_AUTOCAST = {None: None, "none": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@dataclass
class DiffusionConfig:
    """Options shared by the learned diffusion samplers. Defaults: Richter & Berner (ICLR 2024) —
    200 uniform steps, batch 2048, Adam lr 5e-3 decayed geometrically to 1e-4, gradient clipping at
    norm 1, 4-layer width-64 GELU MLP with sin/cos time features, EMA of the weights for evaluation,
    60k iterations (the sde_sampler budget).

    loss:          "lv" (log-variance), "lv_start" (log-variance per start point), "kl" (reverse KL,
                   backpropagated through the solver) or "tb" (trajectory balance, learned log Z).
    n_steps, T:    time grid (generative time 0 → T).
    batch_size:    trajectories per iteration.
    n_per_start:   trajectories per start point for "lv_start".
    iterations, time_budget, lr, lr_final, grad_clip, ema_decay, max_nonfinite, checkpoint_every,
    log_every:     see :class:`~sampleflow.training.TrainConfig`.
    lr_log_Z:      learning-rate factor of the learned log Z ("tb").
    width, depth:  control network; ``score_clip`` clips ∇log π̃ componentwise inside the control.
    score_informed: add a learned time-dependent multiple of the (clipped) target score to the network.
    dtype:         "float32" or "float64".
    autocast:      None or "bfloat16": run the networks under autocast (path arithmetic stays in dtype).
    eval_batch:    trajectories per chunk when sampling.
    init_seed:     seed of the networks' initial weights (drawn from their own generator, never from
                   torch's global one, so that the same seeds give the same samples).
    replay_chunk:  detached losses (lv, lv_start, tb): replay log w this many steps at a time under
                   activation checkpointing — backward memory flat in n_steps, one more forward pass;
                   None = all steps at once (fastest).
    """

    loss: str = "lv"
    n_steps: int = 200
    T: float = 1.0
    batch_size: int = 2048
    n_per_start: int = 4
    iterations: int = 60_000
    time_budget: float | None = None
    lr: float = 5e-3
    lr_final: float | None = 1e-4
    lr_log_Z: float = 10.0
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    max_nonfinite: int = 50
    checkpoint_every: int | None = 500
    log_every: int = 10
    width: int = 64
    depth: int = 4
    score_informed: bool = True
    score_clip: float | None = 1e4
    dtype: str = "float32"
    autocast: str | None = None
    eval_batch: int = 4096
    replay_chunk: int | None = None
    init_seed: int = 0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("n_steps", "batch_size", "iterations", "width", "depth", "eval_batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.loss == "lv_start" and (self.n_per_start < 2 or self.batch_size % self.n_per_start):
            raise ValueError(f"n_per_start must be ≥ 2 and divide batch_size ({self.batch_size}), "
                             f"got {self.n_per_start}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.autocast not in _AUTOCAST:
            raise ValueError(f"autocast must be None or 'bfloat16', got {self.autocast!r}")
        if not self.T > 0:
            raise ValueError(f"T must be positive, got {self.T!r}")

    def train_config(self) -> TrainConfig:
        return TrainConfig(iterations=self.iterations, time_budget=self.time_budget, lr=self.lr,
                           lr_final=self.lr_final, grad_clip=self.grad_clip, ema_decay=self.ema_decay,
                           ema_warmup=True,
                           max_nonfinite=self.max_nonfinite, checkpoint_every=self.checkpoint_every,
                           log_every=self.log_every)


#: presets shared by every diffusion sampler ("default" = the paper's settings)
DIFFUSION_PRESETS = {
    "default": {},
    "cpu": {"n_steps": 100, "batch_size": 512, "iterations": 2000, "lr_final": 5e-4},
    "test": {"n_steps": 20, "batch_size": 256, "iterations": 200, "checkpoint_every": None},
}


class DiffusionSampler(Sampler):
    """Shared machinery; subclasses implement :meth:`build_path` and :meth:`build_controls`."""

    learned: ClassVar[bool] = True
    Config: ClassVar[type] = DiffusionConfig
    presets: ClassVar[dict] = DIFFUSION_PRESETS
    #: control parametrisation when ``score_informed`` ("score" / "interpolated") and its initial coefficient
    control_kind: ClassVar[str] = "score"
    coef_init: ClassVar[float] = 0.0

    def __init__(self, target, config=None):
        super().__init__(target, config)
        self._build()

    def _build(self, device=None) -> None:
        """Path, networks (initialised from ``init_seed``) and learned log Z from the config."""
        c = self.config
        self.dtype = _DTYPES[c.dtype]
        self.path = self.build_path()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.init_seed)
            self.modules = torch.nn.ModuleDict(self.build_controls()).to(dtype=self.dtype, device=device)
        self.log_Z = (torch.nn.Parameter(torch.zeros((), dtype=self.dtype, device=device)) if c.loss == "tb"
                      else None)
        self.trainer: Trainer | None = None
        self.history = None
        self.iterations_done = 0
        self.ema: EMA | None = None

    def to(self, device) -> "DiffusionSampler":
        """Move the networks (and the learned log Z) to ``device``; simulation follows them."""
        self.modules.to(device)
        if self.log_Z is not None:
            self.log_Z.data = self.log_Z.data.to(device)
        return self

    # ------------------------------------------------------------------ to override
    def build_path(self):
        raise NotImplementedError

    def build_controls(self) -> dict[str, torch.nn.Module]:
        """{"control": forward control} (+ "backward" for a bridge, + any learned path parameter)."""
        return {"control": self._control()}

    def _control(self, kind: str | None = None, coef_init: float | None = None):
        c = self.config
        kind = kind or (self.control_kind if c.score_informed else "plain")
        return build_control(self.target.dim, kind=kind, width=c.width, depth=c.depth,
                             coef_init=self.coef_init if coef_init is None else coef_init, T=c.T,
                             clip=c.score_clip)

    def before_simulation(self) -> None:
        """Hook: push learned path parameters (e.g. CMCD's step) into the path."""

    # ------------------------------------------------------------------ simulation
    def _device(self):
        return next(self.modules.parameters()).device

    def simulate(self, target, n: int, generator, mode: str, x0=None, return_trajectory=False):
        self.before_simulation()
        return simulate(self.path, target, self.modules["control"], generator=generator, n=n, x0=x0,
                        backward_control=self.modules["backward"] if "backward" in self.modules else None,
                        mode=mode, dtype=self.dtype, device=self._device(),
                        return_trajectory=return_trajectory, autocast_dtype=_AUTOCAST[self.config.autocast],
                        replay_chunk=self.config.replay_chunk if mode == "detached" else None)

    def loss_and_info(self, target, generator):
        """One batch: the loss with its graph and {"logZ": IS estimate, "elbo": mean log w}."""
        c = self.config
        mode = TRAJECTORY_MODE[c.loss]
        x0 = None
        if c.loss == "lv_start" and not self.path.prior_is_point:
            starts = self.path.prior_sample(c.batch_size // c.n_per_start, generator, self.dtype, self._device())
            x0 = starts.repeat_interleave(c.n_per_start, dim=0)
        out = self.simulate(target, c.batch_size if x0 is None else None, generator, mode, x0=x0)
        lw = out.log_w
        if c.loss == "kl":
            loss = kl_loss(lw)
        elif c.loss == "lv":
            loss = log_variance_loss(lw)
        elif c.loss == "lv_start":
            loss = (log_variance_loss(lw) if x0 is None else log_variance_per_start_loss(lw, c.n_per_start))
        else:
            loss = trajectory_balance_loss(lw, self.log_Z)
        with torch.no_grad():
            lwd = lw.detach()
            log_z = float(torch.logsumexp(lwd, 0) - math.log(lwd.numel()))
            info = {"logZ": log_z, "elbo": float(lwd.mean())}
        return loss, info

    # ------------------------------------------------------------------ training
    def _make_trainer(self, checkpoint, generator, **overrides):
        entries = {"control": self.modules}
        scales = {}
        if self.log_Z is not None:
            entries["log_Z"] = self.log_Z
            scales["log_Z"] = self.config.lr_log_Z
        tc = dataclasses.replace(self.config.train_config(), **overrides)
        return Trainer(entries, tc, checkpoint_path=checkpoint,
                       extra_state=lambda: {"sampler": self.name, "config": dataclasses.asdict(self.config),
                                            "target": self.target.name, "dim": self.target.dim},
                       generator=generator, lr_scales=scales, desc=f"{self.name}[{self.config.loss}]")

    def fit(self, generator: torch.Generator | int | None = None, *, iterations: int | None = None,
            time_budget: float | None = None, checkpoint: str | Path | None = None, resume: bool = False,
            callback=None, progress: bool | None = None) -> "DiffusionSampler":
        """Train the controls. ``iterations`` / ``time_budget`` override the config's budget;
        ``checkpoint`` is a file written every ``checkpoint_every`` iterations, at the end and on
        Ctrl-C; ``resume=True`` continues from it (same total budget, same random stream)."""
        g = make_generator(0 if generator is None else generator, self._device())
        overrides = {k: v for k, v in {"iterations": iterations, "time_budget": time_budget,
                                       "progress": progress}.items() if v is not None}
        self.trainer = self._make_trainer(checkpoint, g, **overrides)
        counting = CountingTarget(self.target)
        self._train_target = counting
        with Timer() as timer:
            self.history = self.trainer.run(lambda i: self.loss_and_info(counting, g), callback=callback,
                                            resume=resume)
        self.iterations_done = self.trainer.iteration
        self.ema = self.trainer.ema
        self.fit_info = {"iterations": self.trainer.iteration, "train_seconds": timer.seconds,
                         "train_nfe": counting.nfe, "stop_reason": self.trainer.stop_reason}
        return self

    # ------------------------------------------------------------------ sampling
    def _ema_context(self):
        if self.trainer is not None and self.trainer.ema is not None:
            return self.trainer.ema_weights()
        return contextlib.nullcontext()

    def sample(self, n: int, generator: torch.Generator | None = None, *, method: str = "sde",
               return_trajectory: bool = False, ode_solver: str = "heun", divergence: str = "exact") -> Samples:
        """``n`` samples with log importance weights, from the learned SDE (``method="sde"``: log w of
        eq. (1)) or from its probability-flow ODE (``method="ode"``: log π̃(x_T) − log q_T(x_T), the
        model density by the instantaneous change of variables, divergence ``"exact"`` or
        ``"hutchinson"``). EMA weights when training kept them."""
        n = self._check_n(n)
        if method == "ode":
            return self._sample_ode(n, generator, ode_solver, divergence)
        if method != "sde":
            raise ValueError(f"method must be 'sde' or 'ode', got {method!r}")
        g = generator if generator is not None else make_generator(0, self._device())
        counting = CountingTarget(self.target)
        xs, lws, trajs = [], [], []
        with Timer() as timer, self._ema_context():
            done = 0
            while done < n:
                b = min(self.config.eval_batch, n - done)
                out = self.simulate(counting, b, g, "none", return_trajectory=return_trajectory)
                xs.append(out.x)
                lws.append(out.log_w.detach())
                if return_trajectory:
                    trajs.append(out.trajectory)
                done += b
        info = {"loss": self.config.loss, "n_steps": self.config.n_steps, **getattr(self, "fit_info", {})}
        if self.log_Z is not None:
            info["learned_log_Z"] = float(self.log_Z.detach())
        seed = int(torch.randint(0, 2 ** 62, (), generator=g, device=g.device))
        return Samples(x=torch.cat(xs), log_weights=torch.cat(lws),
                       trajectory=torch.cat(trajs, 1) if return_trajectory else None,
                       nfe=counting.nfe, wall_time=timer.seconds, sampler=self.name, target=self.target.name,
                       info=info, log_weight_fn=lambda x: self.backward_log_weights(x, seed))

    def backward_log_weights(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """log w along the target (backward) chain started at points ``x`` of π (EMA weights); its mean
        over x ~ π is the EUBO (see :func:`sampleflow.sde.simulate.simulate_backward`)."""
        from ...sde.simulate import simulate_backward
        g = make_generator(seed, self._device())
        with self._ema_context():
            self.before_simulation()
            return simulate_backward(self.path, self.target, self.modules["control"],
                                     x.to(dtype=self.dtype, device=self._device()), generator=g,
                                     backward_control=self.modules["backward"] if "backward" in self.modules else None,
                                     autocast_dtype=_AUTOCAST[self.config.autocast])

    def ode_velocity(self, target):
        """The probability-flow velocity (x, t) ↦ ½(f + b) of the learned process (Nelson's relation;
        Song et al. 2021, ICLR, §4.3; Richter & Berner 2024 for the bridge form)."""
        path, ctl = self.path, self.modules["control"]
        bctl = self.modules["backward"] if "backward" in self.modules else None
        need_score = path.needs_score or any(bool(getattr(c, "needs_target_score", False)) for c in (ctl, bctl) if c)

        def velocity(x, t):
            score = target.score(x) if need_score else None
            prior_score = path.prior_score(x)
            u = ctl(x, t, score=score, prior_score=prior_score)
            v = None if bctl is None else bctl(x, t, score=score, prior_score=prior_score)
            return path.ode_velocity(float(t), x, score, u, v)
        return velocity

    def _sample_ode(self, n, generator, solver, divergence):
        from ...sde.ode import odeint_with_logdet
        if self.path.prior_is_point:
            raise ValueError(f"sampler '{self.name}' starts from the point δ₀: its probability-flow ODE is "
                             "singular at t = 0; use method='sde'")
        g = generator if generator is not None else make_generator(0, self._device())
        counting = CountingTarget(self.target)
        xs, lws = [], []
        with Timer() as timer, self._ema_context():
            self.before_simulation()
            f = self.ode_velocity(counting)
            grid = self.path.times(torch.empty((), dtype=self.dtype, device=self._device()))
            done = 0
            while done < n:
                b = min(self.config.eval_batch, n - done)
                x0 = self.path.prior_sample(b, g, self.dtype, self._device())
                with torch.no_grad():
                    xT, dlogp = odeint_with_logdet(f, x0, grid, method=solver, divergence=divergence, generator=g)
                    log_q = self.path.prior_log_prob(x0) + dlogp
                    lws.append(counting.log_prob(xT) - log_q)
                xs.append(xT)
                done += b
        info = {"loss": self.config.loss, "n_steps": self.config.n_steps, "method": "ode", "ode_solver": solver,
                "divergence": divergence, **getattr(self, "fit_info", {})}
        return Samples(x=torch.cat(xs), log_weights=torch.cat(lws), nfe=counting.nfe, wall_time=timer.seconds,
                       sampler=self.name, target=self.target.name, info=info)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["modules"] = self.modules.state_dict()
        state["log_Z"] = None if self.log_Z is None else self.log_Z.detach().clone()
        state["ema"] = None if self.trainer is None or self.trainer.ema is None else self.trainer.ema.state_dict()
        state["history"] = None if self.history is None else self.history.to_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        old = self.config
        super().load_state_dict(state)
        if self.config != old:  # another architecture, grid or loss: rebuild to the saved config
            self._build(device=self._device())
        self.modules.load_state_dict(state["modules"])
        if state.get("log_Z") is not None and self.log_Z is not None:
            with torch.no_grad():
                self.log_Z.copy_(state["log_Z"])
        if state.get("ema") is not None:
            self.trainer = self._make_trainer(None, None)
            self.trainer.ema.load_state_dict(state["ema"])
