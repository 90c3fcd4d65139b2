"""Training score models on the shared Trainer (sampleflow.generative.train), the score-model target,
save/load and resume. Numbers measured on one CPU core are quoted in each docstring."""
import math

import pytest
import torch

import sampleflow as sf
from sampleflow.generative import (GaussianMixture, ScoreModel, ScoreModelConfig, ScoreModelTarget, VPSDE,
                                   build_score_model, fit_score_model, heun_edm, load_score_model, make_moons,
                                   rk45_ode, save_score_model)
from sampleflow.generative.train import SCORE_MODEL_PRESETS, ScoreModelTrainer, warmup_lr
from sampleflow.metrics import mmd, sliced_wasserstein

from .helpers import mixture

ITERS = 1500  # the "cpu" preset's model and batch, 1500 instead of 2500 iterations (≈ 15 s)


@pytest.fixture(scope="module")
def moons_run():
    g = torch.Generator().manual_seed(0)
    data, held = make_moons(10_000, generator=g), make_moons(2_000, generator=g)
    cfg = ScoreModelConfig.preset("cpu", iterations=ITERS)
    model = build_score_model(cfg, data)
    res = fit_score_model(model, data, cfg, generator=1, progress=False)
    return model, data, held, res


def test_moons_quality(moons_run):
    """cpu preset (EDM denoiser, VP SDE, width-128 MLP, batch 512), 1500 iterations on 10 000 moons points.
    Heun (18 steps, 35 NFE), 2000 samples vs 2000 held-out points: measured SW₂ 0.102 and MMD 0.059
    (held-out vs training data: SW₂ 0.023, MMD 0.028; N(0, I): SW₂ ≈ 0.56; the full 2500-iteration preset:
    SW₂ 0.043, see benchmarks/generative.py). Asserted SW₂ < 0.15, MMD < 0.09."""
    model, data, held, res = moons_run
    assert res.iterations == ITERS and res.stop_reason == "iterations"
    loss = res.history.loss
    assert loss[-1] < 0.9 * loss[0], (loss[0], loss[-1])  # EDM-weighted loss: measured 2.10 → 1.76
    x = heun_edm(model, model.sde, (2000, 2), generator=torch.Generator().manual_seed(3)).x
    sw, mm = sliced_wasserstein(x, held), mmd(x, held)
    print(f"moons: SW2 {sw:.4f}, MMD {mm:.4f}")
    assert sw < 0.15 and mm < 0.09, (sw, mm)


def test_heun_close_to_rk45(moons_run):
    """Heun at 18 steps = 35 NFE against adaptive RK45 (rtol = atol = 1e-5: measured 531 NFE) from the
    same prior draws, moons model above: measured SW₂ to held-out data 0.082 (Heun) vs 0.076 (RK45).
    Asserted: Heun's SW₂ ≤ 1.5 × RK45's, RK45 used > 5× the NFE, median pointwise distance < 0.1."""
    model, data, held, _ = moons_run
    xT = model.sde.prior_sample((2000, 2), torch.Generator().manual_seed(5))
    # Heun starts at σ̃(T)·ε; the prior sample is s(T)·σ̃(T)·ε for VP: pass the same ε to both
    h = heun_edm(model, model.sde, x_T=xT)
    r = rk45_ode(model, model.sde, x_T=xT)
    sw_h, sw_r = sliced_wasserstein(h.x, held), sliced_wasserstein(r.x, held)
    print(f"heun: {h.nfe} NFE SW2 {sw_h:.4f}; rk45: {r.nfe} NFE SW2 {sw_r:.4f}")
    assert h.nfe == 35 and r.nfe > 5 * h.nfe
    assert sw_h <= 1.5 * sw_r, (sw_h, sw_r)
    # and the two deterministic solutions of the same ODE from the same start are close pointwise
    assert float((h.x - r.x).norm(dim=-1).median()) < 0.1


def test_gmm_quality():
    """2-D three-component mixture of tests/generative/helpers.py (spread ±3, unequal weights), 4000
    training points, the cpu preset with uniform times and Fourier scale 2 for 1000 iterations: Heun samples
    (35 NFE) vs 2000 fresh mixture draws — measured SW₂ 0.121, MMD 0.037, mode weights (0.31, 0.47, 0.22)
    (exact vs exact draws: SW₂ 0.04;
    the same budget with log-normal times: SW₂ 0.18–0.33, with ε-prediction: 0.15–0.18). Asserted SW₂ < 0.25,
    MMD < 0.08, and the mode weights within 0.06 of (0.3, 0.5, 0.2)."""
    mix = mixture()
    g = torch.Generator().manual_seed(0)
    data, held = mix.sample(4000, g), mix.sample(2000, g)
    cfg = ScoreModelConfig.preset("cpu", iterations=1000, time_sampling="uniform", fourier_scale=2.0)
    model = build_score_model(cfg, data)
    fit_score_model(model, data, cfg, generator=2, progress=False)
    x = heun_edm(model, model.sde, (2000, 2), generator=torch.Generator().manual_seed(4)).x
    sw, mm = sliced_wasserstein(x, held), mmd(x, held)
    k = torch.cdist(x.double(), mix.means).argmin(1)  # nearest-mean mode assignment
    w = torch.bincount(k, minlength=3).double() / x.shape[0]
    print(f"gmm: SW2 {sw:.4f}, MMD {mm:.4f}, weights {w.tolist()}")
    assert sw < 0.25 and mm < 0.08, (sw, mm)
    assert torch.allclose(w, torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64), atol=0.06), w


def _small_cfg(**kw):
    base = dict(width=32, depth=3, batch_size=64, iterations=40, checkpoint_every=10, warmup=5)
    return ScoreModelConfig.preset("cpu", **{**base, **kw})


def test_resume_gives_same_weights(tmp_path):
    """Interrupted at iteration 23 (Ctrl-C), resumed from the checkpoint: the same final weights, EMA,
    iteration count and history length as one uninterrupted 40-iteration run (the random stream is
    checkpointed and rewound to the start of the lost iteration)."""
    data = make_moons(500, generator=torch.Generator().manual_seed(0))
    cfg = _small_cfg()
    ref = build_score_model(cfg, data)
    r_ref = fit_score_model(ref, data, cfg, generator=7, progress=False)

    ck = tmp_path / "ck.pt"
    m1 = build_score_model(cfg, data)

    def stop(trainer, stats):
        if stats["iteration"] == 23:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_score_model(m1, data, cfg, generator=7, checkpoint=ck, progress=False, callback=stop)
    m2 = build_score_model(cfg, data)  # a fresh process would rebuild the model like this
    r2 = fit_score_model(m2, data, cfg, generator=7, checkpoint=ck, resume=True, progress=False)
    assert r2.iterations == r_ref.iterations == 40
    assert len(r2.history) == len(r_ref.history)
    for (k, a), b in zip(ref.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert all(torch.isfinite(p).all() for p in m2.parameters())


def test_warmup_schedule():
    """Linear warm-up (Goyal et al. 2017) times the Trainer's geometric decay."""
    assert warmup_lr(1.0, 0, 4) == 0.25 and warmup_lr(1.0, 3, 4) == 1.0 and warmup_lr(1.0, 0, 0) == 1.0
    data = make_moons(200, generator=torch.Generator().manual_seed(0))
    cfg = _small_cfg(lr=1e-3, lr_final=1e-3, checkpoint_every=None)
    t = ScoreModelTrainer(build_score_model(cfg, data), data, cfg)
    res = t.fit(0, progress=False)
    lr = res.history.lr  # rows every 10 iterations: iteration 10 is past the 5-iteration warm-up
    assert lr[0] == pytest.approx(1e-3)
    assert t.trainer.lr_at(0) == pytest.approx(1e-3 / 5) and t.trainer.lr_at(2) == pytest.approx(3e-3 / 5)


def test_build_models_and_config_errors():
    data = make_moons(100, generator=torch.Generator().manual_seed(0))
    m = build_score_model(ScoreModelConfig(), data)
    assert m.preconditioning is None and m.parametrisation == "eps"
    m = build_score_model(ScoreModelConfig(parametrisation="denoiser"), data)
    assert m.preconditioning is not None
    assert m.preconditioning.sigma_data == pytest.approx(float((data - data.mean(0)).pow(2).mean().sqrt()), rel=1e-5)
    img = torch.rand(10, 64) * 2 - 1
    u = build_score_model(ScoreModelConfig.preset("digits"), img)
    assert type(u.net).__name__ == "UNet" and u.score(img, 0.5).shape == (10, 64)
    ve = build_score_model(ScoreModelConfig(sde="ve"), data)
    assert ve.sde.sigma_max == pytest.approx(float(torch.cdist(data, data).max()), rel=1e-5)
    edm = build_score_model(ScoreModelConfig(sde="edm"), data)
    assert edm.time_input == "log_sigma"
    with pytest.raises(ValueError, match="sde"):
        ScoreModelConfig(sde="foo")
    with pytest.raises(ValueError, match="preconditioning"):
        ScoreModelConfig(preconditioning=True, parametrisation="eps")
    with pytest.raises(ValueError, match="unknown preset"):
        ScoreModelConfig.preset("gpu")
    with pytest.raises(ValueError, match="image_shape"):
        build_score_model(ScoreModelConfig(image_shape=(1, 8, 8)), data)
    with pytest.raises(ValueError, match="data must have shape"):
        fit_score_model(m, torch.zeros(5), ScoreModelConfig())
    assert set(SCORE_MODEL_PRESETS) >= {"default", "cpu"}


def test_save_load_roundtrip(tmp_path):
    data = make_moons(300, generator=torch.Generator().manual_seed(0))
    cfg = _small_cfg(iterations=15, sde="ve")
    m = build_score_model(cfg, data)
    fit_score_model(m, data, cfg, generator=0, progress=False)
    save_score_model(tmp_path / "model.pt", m, cfg, {"data": "moons"})
    assert (tmp_path / "model.json").is_file()
    m2, cfg2, info = load_score_model(tmp_path / "model.pt")
    assert info["data"] == "moons" and info["dim"] == 2 and cfg2.sde == "ve"
    assert m2.sde.sigma_max == pytest.approx(m.sde.sigma_max)
    x = torch.randn(7, 2)
    assert torch.allclose(m.denoise(x, 0.3), m2.denoise(x, 0.3))
    with pytest.raises(FileNotFoundError):
        load_score_model(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot be read"):
        load_score_model(tmp_path / "bad.pt")


# ---------------------------------------------------------------------------------------------- target
def _gaussian_model():
    mean = torch.tensor([1.0, -0.5], dtype=torch.float64)
    cov = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)
    mix = GaussianMixture([1.0], mean[None], cov[None])
    sde = VPSDE()
    return ScoreModel(mix.score_fn(sde), sde, "score"), mix, mean, cov


def _target(model, **kw):
    return ScoreModelTarget(model, dim=2, **kw)  # an analytic score function has no .dim: give it


def test_score_model_target_ula_moments():
    """The analytic score of N(m, S) (m = (1, −0.5), S = [[0.5, 0.2], [0.2, 0.3]]) at t₀ = 1e-3 (VP: the
    marginal is N(s m, s² S + σ² I), within 1e-3 of N(m, S)) as a Target; sf.sample(t, "ula") with step
    0.01, 2000 chains, 300 burn-in + 300 steps. ULA's O(h) bias on the variance is ≈ h/(2λ_min) ≈ 3 %.
    Measured max |mean error| 0.011, max |covariance error| 0.010; asserted < 0.05 and < 0.06."""
    model, mix, mean, cov = _gaussian_model()
    t = _target(model, joint_log_prob="zero")
    assert t.dim == 2 and t.t_min == model.sde.t_min
    s = sf.sample(t, "ula", n=2000, seed=0, preset="cpu", step_size=0.01, init="prior")
    x = s.x.double()
    err_m = float((x.mean(0) - mean).abs().max())
    err_c = float((torch.cov(x.T) - cov).abs().max())
    print(f"ULA on ScoreModelTarget: mean err {err_m:.4f}, cov err {err_c:.4f}, nfe {s.nfe}")
    assert err_m < 0.05 and err_c < 0.06, (err_m, err_c)


def test_score_model_target_log_prob_is_the_ode_likelihood():
    """log_prob goes through the probability-flow ODE (exact divergence): for the analytic Gaussian model
    it equals the exact log N(x; s m, s² S + σ² I) at t₀ to < 0.02 nats; score equals the model's score."""
    model, mix, mean, cov = _gaussian_model()
    t = _target(model, likelihood={"rtol": 1e-5, "atol": 1e-5})
    x = mix.sample(6, torch.Generator().manual_seed(0))
    exact = mix.log_prob(x.double(), model.sde, t.t_min)
    lp = t.log_prob(x).double()
    assert torch.allclose(lp, exact, atol=2e-2), (lp, exact)
    lp2, sc = t.log_prob_and_score(x)
    assert torch.allclose(lp2.double(), lp, atol=1e-6)
    assert torch.allclose(sc.double(), mix.score(x.double(), model.sde, t.t_min), atol=1e-4)
    assert t.log_Z.value == 0.0
    with pytest.raises(ValueError, match="t_min"):
        _target(model, t_min=5.0)
    with pytest.raises(ValueError, match="joint_log_prob"):
        _target(model, joint_log_prob="maybe")
    t2 = _target(model, sigma_tilde=0.1)
    assert float(model.sde.sigma_tilde(torch.tensor(t2.t_min))) == pytest.approx(0.1, rel=1e-4)
    assert t.sample(5, torch.Generator().manual_seed(0)).shape == (5, 2)
    assert math.isfinite(float(t.score(torch.zeros(3, 2)).sum()))


def test_score_model_target_samples_are_the_noised_marginal():
    """ScoreModelTarget.sample draws π = p_{t₀} itself: model samples pushed through the forward transition,
    so at σ̃ = 0.5 the covariance is s²(S + σ̃² I), not the clean S (sampled from the model's ODE, which
    with the exact Gaussian score is exact up to the Heun error)."""
    model, mix, mean, cov = _gaussian_model()
    t = _target(model, sigma_tilde=0.5)
    x = t.sample(20_000, torch.Generator().manual_seed(1)).double()
    tt = torch.tensor(t.t_min, dtype=torch.float64)
    s = float(model.sde.mean_scale(tt))
    want = s * s * (cov + 0.25 * torch.eye(2, dtype=torch.float64))
    assert torch.allclose(torch.cov(x.T), want, atol=0.03), (torch.cov(x.T), want)
    assert torch.allclose(x.mean(0), s * mean, atol=0.03)
