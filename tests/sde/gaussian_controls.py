"""Closed-form optimal controls of the diffusion paths for a diagonal Gaussian target N(m, diag(s)),
used as test oracles (the optimally controlled model chain matches the target chain, so log w is
constant up to discretisation error)."""
from __future__ import annotations

import math

import torch

import sampleflow as sf
from sampleflow.sde import CMCDPath, DDSPath, PISPath, VPPath


class FunctionControl(torch.nn.Module):
    """A control given by a closure ``fn(x, t_float)``."""
    needs_target_score = False

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, t, score=None, prior_score=None):
        if torch.is_tensor(t) and t.numel() > 1:  # a stack of steps: x (K, B, d), t (K, 1)
            return torch.stack([self.fn(xk, float(tk)) for xk, tk in zip(x, t.reshape(-1))])
        return self.fn(x, float(t))


def diagonal_gaussian(m, s):
    m = torch.as_tensor(m, dtype=torch.float64)
    s = torch.as_tensor(s, dtype=torch.float64)

    def log_prob(x):
        return -0.5 * (((x - m) ** 2) / s).sum(-1) - 0.5 * torch.log(2 * math.pi * s).sum()
    return sf.Target.from_log_prob(log_prob, dim=m.numel(), name="diag_gauss"), m, s


def optimal_control(path, m, s):
    """u*(x, t) for ``path`` and the target N(m, diag(s)) (continuous-time optimum)."""
    T = path.T
    if isinstance(path, PISPath):
        sig2 = path.sigma ** 2

        def fn(x, t):  # forward drift f* = A_t^{-1}[(S/T² − σ²/T) x + σ² m / T], u = f*/σ
            A = (t / T ** 2) * s + sig2 * (T - t) / T
            return ((s / T ** 2 - sig2 / T) * x + sig2 * m / T) / A / path.sigma
        return FunctionControl(fn)
    if isinstance(path, VPPath):
        def fn(x, t):  # score of the noised target: N(a m, a² S + 1 − a²)
            a = math.exp(path.log_signal(t))
            var = a * a * s + 1 - a * a
            return -(x - a * m) / var
        return FunctionControl(fn)
    if isinstance(path, DDSPath):
        sig2 = path.prior_scale ** 2
        # signal kept from the target (index K) down to index k: prod_{j >= k} sqrt(1 - alpha_j)
        keep = torch.sqrt(1 - path.alphas).flip(0).cumprod(0).flip(0).tolist() + [1.0]

        def fn(x, t):
            k = int(round(t / T * path.n_steps))
            a = keep[k]
            var = a * a * s + (1 - a * a) * sig2
            return -(x - a * m) / var + x / sig2
        return FunctionControl(fn)
    if isinstance(path, CMCDPath):
        p0 = 1.0 / path.prior_scale ** 2

        def fn(x, t):  # (h/δ)·v_t with v_t the linear velocity of the annealed Gaussian path
            beta = t / T
            P = (1 - beta) * p0 + beta / s
            dP = (1 / s - p0) / T
            mu = beta * (m / s) / P
            dmu = (m / s) / T / P - beta * (m / s) * dP / P ** 2
            v = dmu - 0.5 * (dP / P) * (x - mu)
            return (T / path.n_steps) / float(path.step) * v
        return FunctionControl(fn)
    raise TypeError(type(path).__name__)
