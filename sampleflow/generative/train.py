"""Training score-based generative models from data, on the shared :class:`~sampleflow.training.Trainer`.

The objective is denoising score matching (:func:`.losses.dsm_loss`; Vincent 2011; Song et al. 2021,
"Score-based generative modeling through SDEs", eq. (7); Karras et al. 2022 for the EDM weighting and
log-normal time sampling) on minibatches drawn with replacement from the data with an explicit
``torch.Generator``. The Trainer supplies Adam, gradient clipping, the EMA of the weights (used for
sampling), skipping of non-finite steps, atomic checkpoints and resume (Ctrl-C included) and the history;
this module adds a linear learning-rate warm-up in front of the Trainer's geometric decay.

    cfg = ScoreModelConfig.preset("cpu", sde="vp")
    model = build_score_model(cfg, data)                   # ScoreMLP for vectors, UNet for images
    result = fit_score_model(model, data, cfg, generator=0, checkpoint="run/checkpoint.pt")
    save_score_model("run/model.pt", model, cfg)           # EMA weights + config (JSON) , atomic
    model, cfg, info = load_score_model("run/model.pt")

Everything is float32 by default; ``ScoreModelConfig.dtype="float64"`` for reference computations.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._rng import make_generator
from ..io import atomic_write
from ..nn.unet import UNet
from ..training import TrainConfig, Trainer, TrainHistory
from ..training.config import lr_at
from .losses import TIME_SAMPLINGS, WEIGHTINGS, dsm_loss
from .model import PARAMETRISATIONS, EDMPreconditioning, ScoreMLP, ScoreModel, estimate_sigma_data
from .sdes import SDE, get_sde, ve_sigma_max

__all__ = ["ScoreModelConfig", "SCORE_MODEL_PRESETS", "build_sde", "build_score_model", "ScoreModelTrainer",
           "FitResult", "fit_score_model", "save_score_model", "load_score_model", "warmup_lr",
           "MODEL_FORMAT"]

MODEL_FORMAT = "sampleflow.generative.model/1"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_SDE_NAMES = ("vp", "subvp", "ve", "edm")


@dataclass
class ScoreModelConfig:
    """Settings of a score-based generative model and of its training. Defaults ("default" preset):
    VP SDE (β ∈ [0.1, 20]) with ε-prediction and λ = σ² (Ho et al. 2020; Song et al. 2021), a 4-layer
    width-128 SiLU :class:`ScoreMLP` with Gaussian Fourier time features, batch 512, Adam lr 2e-3 with a
    200-iteration linear warm-up, then geometric decay to 1e-4 over 20 000 iterations, gradient clipping
    at norm 1, EMA 0.999 with warm-up.

    sde:             "vp" | "subvp" | "ve" | "edm"; ``beta_min``/``beta_max`` (VP, sub-VP),
                     ``sigma_min``/``sigma_max`` (VE, EDM; None = the SDE's default, except VE's σ_max which
                     is then the largest pairwise distance of the data, Song & Ermon 2020, technique 1).
    parametrisation: "eps" | "score" | "denoiser" (see :class:`ScoreModel`).
    preconditioning: EDM preconditioning (Karras et al. 2022, Table 1); None = on exactly for "denoiser".
    sigma_data:      σ_d of the preconditioning / EDM weighting; None = estimated from the data
                     (:func:`estimate_sigma_data`).
    weighting:       "sigma2" | "likelihood" | "edm" (λ of :func:`dsm_loss`); None = "edm" for
                     "denoiser", else "sigma2".
    time_sampling:   "uniform" | "lognormal" | "importance"; None = "lognormal" for "denoiser" (EDM),
                     else "uniform".
    time_input:      what an un-preconditioned network sees: "t" | "sigma" | "log_sigma"; None = "t"
                     except for the EDM SDE (t ∈ [0.002, 80]): "log_sigma".
    network:         "auto" (UNet when ``image_shape`` is set, else MLP) | "mlp" | "unet".
    width, depth, n_features, fourier_scale: the :class:`ScoreMLP`.
    image_shape, channels, channel_mults, n_res: the :class:`~sampleflow.nn.UNet` (C, H, W).
    batch_size, iterations, time_budget, lr, lr_final, warmup, grad_clip, ema_decay, max_nonfinite,
    checkpoint_every, log_every: training (see :class:`~sampleflow.training.TrainConfig`); ``warmup``
                     iterations of linear lr warm-up (:func:`warmup_lr`).
    init_seed:       seed of the initial weights (own generator: the global RNG is never used).
    dtype:           "float32" | "float64".
    """

    sde: str = "vp"
    beta_min: float = 0.1
    beta_max: float = 20.0
    sigma_min: float | None = None
    sigma_max: float | None = None
    parametrisation: str = "eps"
    preconditioning: bool | None = None
    sigma_data: float | None = None
    weighting: str | None = None
    time_sampling: str | None = None
    time_input: str | None = None
    network: str = "auto"
    width: int = 128
    depth: int = 4
    n_features: int = 32
    fourier_scale: float = 16.0
    image_shape: tuple[int, int, int] | None = None
    channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    n_res: int = 1
    batch_size: int = 512
    iterations: int = 20_000
    time_budget: float | None = None
    lr: float = 2e-3
    lr_final: float | None = 1e-4
    warmup: int = 200
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    max_nonfinite: int = 50
    checkpoint_every: int | None = 1000
    log_every: int = 10
    init_seed: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"ScoreModelConfig.{name}={getattr(self, name)!r}: {why}")

        if self.sde not in _SDE_NAMES:
            bad("sde", f"must be one of {_SDE_NAMES}")
        if self.parametrisation not in PARAMETRISATIONS:
            bad("parametrisation", f"must be one of {PARAMETRISATIONS}")
        if self.preconditioning and self.parametrisation != "denoiser":
            bad("preconditioning", "EDM preconditioning requires parametrisation='denoiser'")
        if self.weighting is not None and self.weighting not in WEIGHTINGS:
            bad("weighting", f"must be None or one of {WEIGHTINGS}")
        if self.time_sampling is not None and self.time_sampling not in TIME_SAMPLINGS:
            bad("time_sampling", f"must be None or one of {TIME_SAMPLINGS}")
        if self.time_input is not None and self.time_input not in ("t", "sigma", "log_sigma"):
            bad("time_input", "must be None, 't', 'sigma' or 'log_sigma'")
        if self.network not in ("auto", "mlp", "unet"):
            bad("network", "must be 'auto', 'mlp' or 'unet'")
        if self.dtype not in _DTYPES:
            bad("dtype", f"must be one of {sorted(_DTYPES)}")
        for name in ("width", "depth", "n_features", "channels", "n_res", "batch_size", "iterations",
                     "log_every", "max_nonfinite"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, "must be a positive integer")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            bad("warmup", "must be a non-negative integer")
        if self.sigma_data is not None and not (self.sigma_data > 0 and math.isfinite(self.sigma_data)):
            bad("sigma_data", "must be a positive number or None (estimated from the data)")
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)
            if len(self.image_shape) != 3 or min(self.image_shape) < 1:
                bad("image_shape", "must be (C, H, W) with positive sizes, or None")
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        if self.network == "unet" and self.image_shape is None:
            bad("network", "'unet' needs image_shape=(C, H, W)")

    # ------------------------------------------------------------------ resolved choices
    @property
    def use_preconditioning(self) -> bool:
        return self.parametrisation == "denoiser" if self.preconditioning is None else bool(self.preconditioning)

    @property
    def resolved_weighting(self) -> str:
        return self.weighting or ("edm" if self.parametrisation == "denoiser" else "sigma2")

    @property
    def resolved_time_sampling(self) -> str:
        return self.time_sampling or ("lognormal" if self.parametrisation == "denoiser" else "uniform")

    @property
    def resolved_time_input(self) -> str:
        return self.time_input or ("log_sigma" if self.sde == "edm" else "t")

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def train_config(self) -> TrainConfig:
        return TrainConfig(iterations=self.iterations, time_budget=self.time_budget, lr=self.lr,
                           lr_final=self.lr_final, grad_clip=self.grad_clip, ema_decay=self.ema_decay,
                           ema_warmup=True, max_nonfinite=self.max_nonfinite,
                           checkpoint_every=self.checkpoint_every, log_every=self.log_every)

    def to_dict(self) -> dict:
        """Plain data (JSON / checkpoint friendly: tuples become lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ScoreModelConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown ScoreModelConfig field(s) {unknown}")
        d = dict(d)
        for k in ("image_shape", "channel_mults"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    @classmethod
    def preset(cls, name: str = "default", **overrides) -> "ScoreModelConfig":
        """The config of preset ``name`` (see :data:`SCORE_MODEL_PRESETS`) with ``overrides``."""
        if name not in SCORE_MODEL_PRESETS:
            raise ValueError(f"unknown preset {name!r}; known presets: {sorted(SCORE_MODEL_PRESETS)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"ScoreModelConfig has no field(s) {unknown}; its fields are {sorted(fields)}")
        return cls(**{**SCORE_MODEL_PRESETS[name], **overrides})


#: "default": the settings above (≈ 20k iterations); "cpu": 2-D toy data in ≈ 25 s on one CPU core (EDM
#: denoiser with preconditioning, log-normal times: on moons it reached SW₂ 0.067 to held-out data where the
#: ε-model with the same budget stayed at ≈ 0.11 with 9 % of its samples off the moons); "digits": the
#: 8×8 digits UNet (163k parameters) in ≈ 4–7 CPU minutes (1500 iterations at ≈ 0.15–0.27 s each).
SCORE_MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "cpu": {"parametrisation": "denoiser", "width": 128, "depth": 4, "batch_size": 512, "iterations": 2500,
            "lr": 3e-3, "lr_final": 3e-4, "warmup": 100, "ema_decay": 0.995, "checkpoint_every": 500},
    "digits": {"parametrisation": "denoiser", "image_shape": (1, 8, 8), "channels": 16, "channel_mults": (1, 2),
               "batch_size": 128, "iterations": 1500, "lr": 2e-3, "lr_final": 2e-4, "warmup": 100, "ema_decay": 0.998,
               "checkpoint_every": 500},
}


# ---------------------------------------------------------------------------------------------- building
def build_sde(config: ScoreModelConfig, data: Tensor | None = None) -> SDE:
    """The forward SDE of ``config``; VE's σ_max defaults to the largest pairwise distance of ``data``
    (Song & Ermon 2020, "Improved techniques for training score-based generative models", technique 1)."""
    c = config
    if c.sde in ("vp", "subvp"):
        return get_sde(c.sde, beta_min=c.beta_min, beta_max=c.beta_max)
    kw = {}
    if c.sigma_min is not None:
        kw["sigma_min"] = c.sigma_min
    if c.sigma_max is not None:
        kw["sigma_max"] = c.sigma_max
    elif c.sde == "ve":
        if data is None:
            raise ValueError("a VE SDE without sigma_max needs the data to choose it (ve_sigma_max)")
        kw["sigma_max"] = max(ve_sigma_max(data[:4096]), 1.0)
    return get_sde(c.sde, **kw)


def _check_data(data) -> Tensor:
    if not isinstance(data, Tensor):
        data = torch.as_tensor(data)
    if data.dim() != 2 or data.shape[0] < 2:
        raise ValueError(f"data must have shape (n, d) with n >= 2 (flatten images), got {tuple(data.shape)}")
    if not data.dtype.is_floating_point:
        data = data.to(torch.get_default_dtype())
    if not torch.isfinite(data).all():
        raise ValueError("data must be finite (found NaN or inf)")
    return data


def build_score_model(config: ScoreModelConfig, data: Tensor | None = None, *, dim: int | None = None,
                      sde: SDE | None = None) -> ScoreModel:
    """A fresh :class:`ScoreModel` for ``data`` (n, d): a :class:`ScoreMLP` for vector data, a
    :class:`~sampleflow.nn.UNet` for images (``config.image_shape``, flat d = C·H·W), with EDM
    preconditioning (Karras et al. 2022, Table 1) when ``config.use_preconditioning``, σ_data from
    ``config.sigma_data`` or estimated from ``data``. Initial weights from ``config.init_seed``.
    Without data give ``dim`` (and a ``sigma_data`` in the config when preconditioned)."""
    c = config
    if data is not None:
        data = _check_data(data)
        dim = data.shape[1]
    if dim is None:
        raise ValueError("build_score_model needs data or dim")
    network = c.network if c.network != "auto" else ("unet" if c.image_shape is not None else "mlp")
    if c.image_shape is not None and math.prod(c.image_shape) != dim:
        raise ValueError(f"image_shape {c.image_shape} has {math.prod(c.image_shape)} pixels but the data have "
                         f"{dim} features per sample")
    sde = build_sde(c, data) if sde is None else sde
    g = torch.Generator().manual_seed(int(c.init_seed))
    with torch.random.fork_rng(devices=[]):  # module initialisers draw from the global RNG: isolate them
        torch.manual_seed(int(c.init_seed))
        if network == "unet":
            net = UNet(c.image_shape, channels=c.channels, channel_mults=c.channel_mults, n_res=c.n_res)
        else:
            net = ScoreMLP(dim, width=c.width, depth=c.depth, n_features=c.n_features, scale=c.fourier_scale,
                           generator=g)
    pre = None
    if c.use_preconditioning:
        sd = c.sigma_data
        if sd is None:
            if data is None:
                raise ValueError("EDM preconditioning needs sigma_data in the config or the data to estimate it")
            sd = estimate_sigma_data(data)
        pre = EDMPreconditioning(sd)
    model = ScoreModel(net, sde, c.parametrisation, preconditioning=pre, time_input=c.resolved_time_input)
    return model.to(c.torch_dtype)


# ---------------------------------------------------------------------------------------------- training
def warmup_lr(base_lr: float, index: int, warmup: int) -> float:
    """Linear learning-rate warm-up (Goyal et al. 2017, "Accurate, large minibatch SGD", §2.2):
    lr_i = base_i · min(1, (i + 1)/warmup) for the 0-based iteration i; ``warmup = 0`` is off."""
    if warmup <= 0:
        return base_lr
    return base_lr * min(1.0, (index + 1) / warmup)


class _WarmupTrainer(Trainer):
    """The shared Trainer with a linear warm-up in front of its geometric decay."""

    def __init__(self, *args, warmup: int = 0, **kwargs):
        self.warmup = int(warmup)
        super().__init__(*args, **kwargs)

    def lr_at(self, index: int) -> float:
        return warmup_lr(lr_at(self.config, index), index, self.warmup)


@dataclass
class FitResult:
    """history: the loss curve; iterations: completed; seconds: training time (all sessions);
    stop_reason: "iterations" | "time_budget" | "callback"; sigma_data: σ_d used (or None)."""

    history: TrainHistory
    iterations: int
    seconds: float
    stop_reason: str | None
    sigma_data: float | None = None
    info: dict = field(default_factory=dict)


class ScoreModelTrainer:
    """Fits a :class:`ScoreModel` to data by denoising score matching on the shared Trainer.

    ``model``: from :func:`build_score_model` (or any ScoreModel whose ``net`` is an ``nn.Module``);
    ``data``: (n, d); ``config``: :class:`ScoreModelConfig`. After :meth:`fit`, the model holds the
    *trained* weights and :meth:`ema_weights` swaps in the EMA ones (``fit(..., use_ema=True)``, the
    default, leaves the EMA weights in the model at the end, ready for sampling and saving).
    """

    def __init__(self, model: ScoreModel, data, config: ScoreModelConfig | None = None):
        if not isinstance(model, ScoreModel):
            raise TypeError(f"model must be a ScoreModel, got {type(model).__name__}")
        if not isinstance(model.net, torch.nn.Module):
            raise TypeError("model.net must be a torch.nn.Module with parameters to train")
        self.model = model
        self.config = ScoreModelConfig() if config is None else config
        p = next(model.net.parameters())
        self.data = _check_data(data).to(dtype=p.dtype, device=p.device)
        self.trainer: _WarmupTrainer | None = None
        self.history: TrainHistory | None = None

    def _loss(self, generator: torch.Generator):
        c, data = self.config, self.data
        dev = data.device
        idx = torch.randint(0, data.shape[0], (c.batch_size,), generator=generator,
                            device=generator.device).to(dev)
        pre = self.model.preconditioning
        sd = pre.sigma_data if pre is not None else (c.sigma_data or None)
        loss = dsm_loss(self.model, data[idx], generator, weighting=c.resolved_weighting,
                        time_sampling=c.resolved_time_sampling, sigma_data=sd)
        return loss, {}

    def fit(self, generator: torch.Generator | int | None = None, *, iterations: int | None = None,
            time_budget: float | None = None, checkpoint: str | Path | None = None, resume: bool = False,
            progress: bool | None = None, callback=None, use_ema: bool = True) -> FitResult:
        """Train. ``generator`` (or a seed; default 0) draws minibatches, times and noise;
        ``iterations`` / ``time_budget`` override the config's budget; ``checkpoint``: file written every
        ``checkpoint_every`` iterations, at the end and on Ctrl-C; ``resume=True`` continues from it with
        the same random stream (same final weights as an uninterrupted run). ``use_ema``: leave the
        EMA weights in the model afterwards (when the config keeps an EMA)."""
        p = next(self.model.net.parameters())
        g = make_generator(0 if generator is None else generator, p.device)
        over = {k: v for k, v in {"iterations": iterations, "time_budget": time_budget,
                                  "progress": progress}.items() if v is not None}
        tc = dataclasses.replace(self.config.train_config(), **over)
        pre = self.model.preconditioning
        self.trainer = _WarmupTrainer(
            {"net": self.model.net}, tc, checkpoint_path=checkpoint, generator=g, warmup=self.config.warmup,
            extra_state=lambda: {"kind": "score_model", "config": self.config.to_dict(),
                                 "sigma_data": None if pre is None else pre.sigma_data,
                                 "data_shape": list(self.data.shape)},
            desc=f"score[{self.config.sde},{self.config.parametrisation}]")
        if resume:
            if checkpoint is None:
                raise ValueError("resume=True needs the checkpoint file to resume from")
            if not Path(checkpoint).is_file():
                raise FileNotFoundError(f"resume: no checkpoint at {checkpoint}")
        self.model.train()
        self.history = self.trainer.run(lambda i: self._loss(g), callback=callback, resume=resume)
        self.model.eval()
        if use_ema and self.trainer.ema is not None:
            self.trainer.ema.apply_to()
        return FitResult(self.history, self.trainer.iteration, self.trainer.elapsed, self.trainer.stop_reason,
                         None if pre is None else pre.sigma_data)

    def ema_weights(self):
        """Context manager: the model holds the EMA weights inside (no-op without EMA or before fit)."""
        if self.trainer is None:
            from contextlib import nullcontext
            return nullcontext(self.model)
        return self.trainer.ema_weights()


def fit_score_model(model: ScoreModel, data, config: ScoreModelConfig | None = None, *,
                    generator: torch.Generator | int | None = None, iterations: int | None = None,
                    time_budget: float | None = None, checkpoint: str | Path | None = None,
                    resume: bool = False, progress: bool | None = None, callback=None) -> FitResult:
    """Train ``model`` on ``data`` by denoising score matching (:class:`ScoreModelTrainer`); the model
    holds the EMA weights afterwards. Returns a :class:`FitResult` (history, iterations, seconds)."""
    return ScoreModelTrainer(model, data, config).fit(generator, iterations=iterations, time_budget=time_budget,
                                                       checkpoint=checkpoint, resume=resume, progress=progress,
                                                       callback=callback)


# ---------------------------------------------------------------------------------------------- save / load
def save_score_model(path: str | Path, model: ScoreModel, config: ScoreModelConfig, info: dict | None = None) -> Path:
    """Write the model's current weights (call after :func:`fit_score_model`: the EMA ones), its config,
    σ_data, the SDE's resolved parameters and ``info`` (plain data, e.g. the data set's name and range) to
    ``path`` atomically (``torch.load(weights_only=True)``-loadable), and the same config as
    ``<path>.json`` next to it for people."""
    from ..training.checkpoint import check_plain
    path = Path(path)
    info = dict(info or {})
    if info.get("dim") is None:
        info["dim"] = getattr(model.net, "dim", None)
    check_plain(info, "info")
    sde = model.sde
    sde_params = {k: float(getattr(sde, k)) for k in ("beta_min", "beta_max", "sigma_min", "sigma_max")
                  if hasattr(sde, k)}
    pre = model.preconditioning
    state = {"format": MODEL_FORMAT, "config": config.to_dict(), "state_dict": model.net.state_dict(),
             "sigma_data": None if pre is None else pre.sigma_data, "sde_params": sde_params, "info": info}
    meta = {k: v for k, v in state.items() if k != "state_dict"}
    atomic_write(path.with_suffix(".json"), lambda f: json.dump(meta, f, indent=2, sort_keys=True))
    return atomic_write(path, lambda f: torch.save(state, f), binary=True)


def load_score_model(path: str | Path, device=None) -> tuple[ScoreModel, ScoreModelConfig, dict]:
    """Inverse of :func:`save_score_model`: (model in eval mode, config, info)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved score model at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - one clear message for any unreadable file
        raise ValueError(f"{path} cannot be read as a saved score model: {e}") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a sampleflow score model (format {MODEL_FORMAT})")
    cfg_d = dict(state["config"])
    sp = state.get("sde_params", {})
    for k in ("sigma_min", "sigma_max"):  # the resolved values (VE's σ_max was chosen from the data)
        if k in sp:
            cfg_d[k] = sp[k]
    if state.get("sigma_data") is not None:
        cfg_d["sigma_data"] = state["sigma_data"]
    config = ScoreModelConfig.from_dict(cfg_d)
    sd = state["state_dict"]
    dim = state.get("info", {}).get("dim")
    if dim is None:
        dim = math.prod(config.image_shape) if config.image_shape is not None else None
    if dim is None:
        raise ValueError(f"{path}: the saved info has no 'dim'")
    model = build_score_model(config, dim=int(dim))
    model.net.load_state_dict(sd)
    if device is not None:
        model.to(device)
    model.eval()
    return model, config, dict(state.get("info", {}))
