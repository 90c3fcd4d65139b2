"""The 1-D Gaussian transport shared by the PINN tests: π̃(x) = e^C N(x; M, S²) (so log Z = C), p₀ = N(0, 1),
and the closed form of the geometric path between them."""
import math

import torch

import sampleflow as sf

M, S, C = 1.5, 0.6, 1.3


def gaussian_target():
    def log_prob(x):
        return C - 0.5 * ((x[..., 0] - M) / S) ** 2 - math.log(S) - 0.5 * math.log(2 * math.pi)

    def score(x):
        return -(x - M) / S ** 2
    return sf.Target.from_log_prob(log_prob, dim=1, score=score, log_Z=C, box=((-4.0,), (4.0,)))


def geometric(t):
    """The geometric path N(0, 1)^(1−t) (e^C N(M, S²))^t = Z_t N(μ_t, 1/λ_t): λ = (1 − t) + t/S², μ = tM/(S²λ),
    with λ' and μ'; log Z_t by completing the square (the −½log2π terms cancel against √(2π/λ)).
    Returns (μ, μ', λ, λ', log Z_t)."""
    lam = (1 - t) + t / S ** 2
    dlam = -1 + 1 / S ** 2
    mu = t * M / (S ** 2 * lam)
    dmu = M / (S ** 2 * lam ** 2)
    log_z = t * (C - M ** 2 / (2 * S ** 2) - math.log(S)) + 0.5 * torch.log(1 / lam) + (t * M / S ** 2) ** 2 / (2 * lam)
    return mu, dmu, lam, dlam, log_z


def ode_velocity(x, t):
    """The transport of the geometric path: u = μ' + (s'/s)(x − μ), s'/s = −λ'/(2λ)."""
    t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[:-1])
    mu, dmu, lam, dlam, _ = geometric(t)
    return (dmu - dlam / (2 * lam) * (x[..., 0] - mu))[..., None]


def log_z_rate(t):
    """∂_t log Z_t by autograd through the closed form."""
    tt = t.detach().requires_grad_(True)
    (d,) = torch.autograd.grad(geometric(tt)[4].sum(), tt)
    return d


def adam_fitted_pinn():
    """The PINN after 300 Adam steps on this path (float64, a small net): the start of the fine-tuning tests."""
    from sampleflow.samplers.pinn import PINN, PINNConfig
    cfg = PINNConfig(iterations=300, batch_size=256, width=32, depth=3, prior_std=1.0, dtype="float64",
                     lr=3e-3, lr_final=3e-4)
    return PINN(gaussian_target(), cfg).fit(generator=0, progress=False)


def held_out_residual(sampler, n: int) -> float:
    """Mean squared residual at n fixed collocation points (seed 99), not those of any training batch."""
    t, x = sampler.collocation(n, torch.Generator().manual_seed(99))
    r = sampler.residual(t, x).detach()
    return float((r * r).mean())
