"""Run folders for score-based generative models: the layer under ``sampleflow generate train|sample``.

    train_run("moons", "runs/m", preset="cpu", seed=0)       # trains; writes the folder below
    sample_run("runs/m", sampler="heun", steps=18, n=10000)   # samples; writes samples + metrics + picture

A run folder holds ``run.json`` (data, seed, preset, overrides), ``heldout.npy`` (held-out data the
metrics compare with), ``checkpoint.pt`` (trainer state, resumable), ``model.pt`` / ``model.json``
(EMA weights + config), ``history.csv`` and ``training.png``; sampling adds ``samples.npz``,
``metrics.json`` and ``samples.png`` (a scatter for vectors, an image grid for images). All files are
written atomically.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io import atomic_write, write_json
from .datasets import TOY_DATASETS, GaussianMixture, load_data, load_digits, toy_dataset
from .samplers import SAMPLERS
from .train import (ScoreModelConfig, build_score_model, fit_score_model, load_score_model, save_score_model)

__all__ = ["BUILTIN_DATA", "DataBundle", "resolve_data", "resolve_sampler", "train_run", "sample_run",
           "generate_samples", "sample_metrics", "SAMPLER_ALIASES"]

BUILTIN_DATA = ("moons", "circles", "swiss_roll", "gmm", "digits")

#: short names accepted besides the keys of :data:`.samplers.SAMPLERS`
SAMPLER_ALIASES = {"em": "euler_maruyama", "rd": "reverse_diffusion", "ancestral": "reverse_diffusion",
                   "predictor_corrector": "pc", "pf_euler": "ode_euler", "euler": "ode_euler",
                   "heun_edm": "heun", "edm": "heun", "rk45_ode": "rk45"}


@dataclass
class DataBundle:
    """train (n, d) and heldout (m, d) float32 tensors; name; image_shape (C, H, W) or None; data_range
    (lo, hi) to clip generated images to, or None."""

    train: Tensor
    heldout: Tensor
    name: str
    image_shape: tuple | None = None
    data_range: tuple | None = None

    def info(self) -> dict:
        return {"data": self.name, "dim": int(self.train.shape[1]), "n_train": int(self.train.shape[0]),
                "n_heldout": int(self.heldout.shape[0]),
                "image_shape": None if self.image_shape is None else list(self.image_shape),
                "data_range": None if self.data_range is None else list(self.data_range)}


def builtin_gmm() -> GaussianMixture:
    """The built-in ``gmm`` data: 9 equal-weight isotropic components (variance 0.05) on a 3×3 grid of
    spacing 2 (the 9-mode grid of the sampling benchmarks, narrowed)."""
    return GaussianMixture.grid(3, spacing=2.0, var=0.05)


def resolve_data(spec: str, *, n: int | None = None, n_heldout: int | None = None, seed: int = 0,
                 key: str | None = None) -> DataBundle:
    """Training and held-out data from a built-in name (``moons``, ``circles``, ``swiss_roll``, ``gmm``:
    n = 10 000 training and 2 000 held-out points drawn with ``seed``; ``digits``: sklearn's 1797 8×8
    digits in [−1, 1], a seeded 80/20 split) or a ``.npy`` / ``.npz`` / ``.csv`` file (rows = samples,
    a seeded split with 20 % (at most 2 000) held out)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"--data must be a built-in name {BUILTIN_DATA} or a .npy/.npz/.csv file, got {spec!r}")
    g = torch.Generator().manual_seed(int(seed))
    if spec in TOY_DATASETS or spec == "gmm":
        n = 10_000 if n is None else int(n)
        m = 2_000 if n_heldout is None else int(n_heldout)
        if n < 2 or m < 2:
            raise ValueError(f"need at least 2 training and 2 held-out points, got n={n}, n_heldout={m}")
        if spec == "gmm":
            mix = builtin_gmm()
            return DataBundle(mix.sample(n, g), mix.sample(m, g), spec)
        return DataBundle(toy_dataset(spec, n, g), toy_dataset(spec, m, g), spec)
    if spec == "digits":
        x = load_digits()
        return _split(x, spec, g, image_shape=(1, 8, 8), data_range=(-1.0, 1.0), n=n, n_heldout=n_heldout)
    p = Path(spec)
    if p.suffix.lower() not in (".npy", ".npz", ".csv"):
        raise ValueError(f"unknown data {spec!r}: use a built-in name {list(BUILTIN_DATA)} or a .npy/.npz/.csv file")
    x = load_data(p, key=key)
    x = x.reshape(x.shape[0], -1)
    if x.shape[0] < 10:
        raise ValueError(f"data file {p} holds {x.shape[0]} samples; need at least 10 (training + held-out)")
    return _split(x, p.name, g, n=n, n_heldout=n_heldout)


def _split(x: Tensor, name: str, g, *, image_shape=None, data_range=None, n=None, n_heldout=None) -> DataBundle:
    perm = torch.randperm(x.shape[0], generator=g)
    m = min(2000, max(2, x.shape[0] // 5)) if n_heldout is None else int(n_heldout)
    if not 2 <= m <= x.shape[0] - 2:
        raise ValueError(f"n_heldout={m} leaves too few training points (data has {x.shape[0]})")
    held, train = x[perm[:m]], x[perm[m:]]
    if n is not None:
        train = train[:int(n)]
    return DataBundle(train.float(), held.float(), name, image_shape, data_range)


def resolve_sampler(name: str) -> str:
    """A key of :data:`.samplers.SAMPLERS` from a name or alias (clear error otherwise)."""
    key = SAMPLER_ALIASES.get(name, name)
    if key not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)} "
                         f"(aliases: {', '.join(sorted(SAMPLER_ALIASES))})")
    return key


# ---------------------------------------------------------------------------------------------- train
def train_run(data: str, out: str | Path, *, preset: str = "cpu", seed: int = 0, resume: bool = False,
              iterations: int | None = None, time_budget: float | None = None, progress: bool | None = None,
              n: int | None = None, **overrides) -> dict:
    """Train a score model on ``data`` (see :func:`resolve_data`) into the run folder ``out``;
    ``overrides`` set :class:`ScoreModelConfig` fields. Returns a summary dict (also in ``run.json``)."""
    out = Path(out)
    ckpt = out / "checkpoint.pt"
    if resume and not ckpt.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt} (run without --resume first)")
    bundle = resolve_data(data, seed=seed, n=n)
    if bundle.image_shape is not None:
        overrides.setdefault("image_shape", bundle.image_shape)
        if preset == "cpu":
            preset = "digits"  # the vector "cpu" preset has no UNet settings
    cfg = ScoreModelConfig.preset(preset, **overrides)
    model = build_score_model(cfg, bundle.train)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "heldout.npy", lambda f: np.save(f, bundle.heldout.numpy()), binary=True)
    t0 = time.perf_counter()
    res = fit_score_model(model, bundle.train, cfg, generator=seed, iterations=iterations,
                          time_budget=time_budget, checkpoint=ckpt, resume=resume, progress=progress)
    info = {**bundle.info(), "seed": seed, "preset": preset, "iterations": res.iterations,
            "train_seconds": res.seconds, "stop_reason": res.stop_reason}
    save_score_model(out / "model.pt", model, cfg, info)
    res.history.to_csv(out / "history.csv")
    from ..plots import training_curves
    training_curves(res.history, out / "training.png",
                    title=f"score model ({cfg.sde}, {cfg.parametrisation}) on {bundle.name}")
    summary = {**info, "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
               "final_loss": res.history.last().get("loss"), "session_seconds": time.perf_counter() - t0}
    write_json(out / "run.json", summary)
    return summary


# ---------------------------------------------------------------------------------------------- sample
def generate_samples(model, n: int, sampler: str = "heun", steps: int = 18, *, seed: int = 0,
                     batch: int = 10_000, **kwargs):
    """``n`` samples from ``model`` with ``sampler`` (name or alias) at ``steps`` steps (ignored by RK45),
    in batches; returns (x (n, d), nfe per sample, seconds)."""
    key = resolve_sampler(sampler)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {steps!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"-n must be a positive integer, got {n!r}")
    fn = SAMPLERS[key]
    dim = getattr(model.net, "dim")
    p = next(model.parameters())
    g = torch.Generator(device=p.device).manual_seed(int(seed))
    xs, nfe = [], 0
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        b = min(batch, n - start)
        kw = dict(kwargs)
        if key != "rk45":
            kw["steps"] = steps
        r = fn(model, model.sde, (b, dim), generator=g, dtype=p.dtype, device=p.device, **kw)
        xs.append(r.x.detach())
        nfe = max(nfe, r.nfe)
    return torch.cat(xs), nfe, time.perf_counter() - t0


def sample_metrics(x: Tensor, heldout: Tensor, *, max_points: int = 5000, seed: int = 0) -> dict:
    """Sliced 2-Wasserstein (500 projections, Rabin et al. 2011) and MMD (Gaussian kernel, median heuristic,
    Beyond-ELBOs protocol) between the first ``max_points`` samples and the held-out data; non-finite
    samples are counted and dropped."""
    from ..metrics import mmd, sliced_wasserstein
    x = x.double()
    finite = torch.isfinite(x).all(-1)
    xf = x[finite][:max_points]
    out = {"n_nonfinite": int((~finite).sum()), "metric_points": int(xf.shape[0]),
           "heldout_points": int(heldout.shape[0])}
    if xf.shape[0] < 2:
        return {**out, "sliced_wasserstein": math.nan, "mmd": math.nan}
    out["sliced_wasserstein"] = sliced_wasserstein(xf, heldout.double(), seed=seed)
    out["mmd"] = mmd(xf, heldout.double())
    return out


def sample_run(run: str | Path, *, sampler: str = "heun", steps: int = 18, n: int = 10_000, seed: int = 0,
               out: str | Path | None = None, metrics: bool = True) -> dict:
    """Sample the model of run folder ``run``; write ``samples.npz``, ``metrics.json`` and a picture into
    ``out`` (default: the run folder). Returns the metrics dict."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder not found: {run}")
    if not (run / "model.pt").is_file():
        raise FileNotFoundError(f"no trained model in {run} (expected {run / 'model.pt'}; "
                                "train first with `sampleflow generate train`)")
    key = resolve_sampler(sampler)
    model, cfg, info = load_score_model(run / "model.pt")
    x, nfe, seconds = generate_samples(model, n, key, steps, seed=seed)
    out = run if out is None else Path(out)
    image_shape = info.get("image_shape")
    rng = info.get("data_range")
    res = {"sampler": key, "steps": None if key == "rk45" else steps, "nfe": nfe, "n": n, "seed": seed,
           "wall_time": seconds, "data": info.get("data"), "sde": cfg.sde, "parametrisation": cfg.parametrisation,
           "run": str(run)}
    held_path = run / "heldout.npy"
    if metrics and held_path.is_file():
        held = torch.as_tensor(np.load(held_path, allow_pickle=False))
        xm = x.clamp(*rng) if rng else x
        res.update(sample_metrics(xm, held, seed=seed))
    from ..samples import Samples
    Samples(x=x.float().cpu(), nfe=nfe * n, wall_time=seconds, sampler=key, target=str(info.get("data")),
            info={"steps": res["steps"], "nfe_per_sample": nfe}).to_npz(out / "samples.npz")
    write_json(out / "metrics.json", res)
    from ..plots import image_grid, scatter_samples
    title = f"{key} ({nfe} NFE) on {info.get('data')}"
    if image_shape is not None:
        image_grid(x[:100], out / "samples.png", image_shape=tuple(image_shape),
                   value_range=tuple(rng) if rng else None, title=title)
    else:
        ref = None
        if held_path.is_file():
            ref = np.load(held_path, allow_pickle=False)
        scatter_samples(x, out / "samples.png", reference=ref, title=title)
    return res


def read_run(run: str | Path) -> dict:
    """The ``run.json`` summary of a run folder."""
    return json.loads((Path(run) / "run.json").read_text())
