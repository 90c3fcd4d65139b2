"""Reference log Z for targets without a closed form: adaptive tempered SMC, cross-checked by
importance sampling with a full-covariance multivariate Student-t proposal.

    OMP_NUM_THREADS=1 SAMPLEFLOW_DATA=../shared/data python benchmarks/reference_log_z.py \
        --targets german_credit_normal10_prior,ionosphere --seeds 4 --particles 2048 --out ref.json

Per target:

1. pilot: HMC chains (``--pilot-chains``, diagonal mass adapted in warm-up, started from the target's box)
   pooled over the kept part of their trajectories → mean μ, covariance Σ (no Laplace / mode fit);
2. SMC: ``sampleflow.sample(t, "smc", ...)`` with HMC moves and the Gaussian reference p₀ = N(μ, diag(1.5·σ)²)
   from the pilot, for ``--seeds`` seeds; the estimate is the mean of the seeds' log Ẑ and its standard error
   the std across seeds / √seeds;
3. IS: M = ``--is-draws`` draws from the multivariate t (df ``--df``, location μ, scale matrix Σ), computed
   here with a Cholesky factor (the ``importance`` sampler has only diagonal scales):
   log w = log π̃ − log t, log Ẑ = log mean w, delta-method se = sd(w) / (√M · mean w);
4. a table (|Δ| / √(se_SMC² + se_IS²)) and, with ``--out``, a JSON file.

Everything runs in float64 on the CPU.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

import sampleflow as sf

LOGISTIC = ["german_credit_normal10_prior", "german_credit_flat_prior", "breast_cancer_normal10_prior",
            "ionosphere", "sonar"]


def pilot_moments(target, *, chains: int, warmup: int, steps: int, seed: int, n_leapfrog: int = 10):
    """Mean and full covariance of pooled HMC draws (thinned trajectories of all chains)."""
    s = sf.sample(target, "hmc", n=chains, seed=seed, n_warmup=warmup, n_steps=steps, n_leapfrog=n_leapfrog,
                  adapt_mass=True, keep_trajectory=True, thin=max(1, steps // 50), dtype="float64")
    x = s.trajectory.reshape(-1, target.dim).to(torch.float64)
    x = x[torch.isfinite(target.log_prob(x))]
    mu = x.mean(0)
    cov = torch.cov(x.T).reshape(target.dim, target.dim)
    return mu, cov, x.shape[0], s.info


def mvt_log_prob(x, mu, L, df):
    """log density of the multivariate t with location mu, scale matrix L Lᵀ, df degrees of freedom."""
    d = mu.numel()
    z = torch.linalg.solve_triangular(L, (x - mu).T, upper=False).T
    m = (z * z).sum(-1)
    const = (math.lgamma((df + d) / 2) - math.lgamma(df / 2) - 0.5 * d * math.log(df * math.pi)
             - torch.log(torch.diagonal(L)).sum())
    return const - 0.5 * (df + d) * torch.log1p(m / df)


def student_t_is(target, mu, cov, *, draws: int, df: float = 5.0, seed: int = 0, batch: int = 20000):
    """IS estimate of log Z with a full-covariance multivariate t proposal; returns (log Z, se, ess/M)."""
    d = target.dim
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    L = torch.linalg.cholesky(cov + 1e-10 * torch.eye(d, dtype=torch.float64) * cov.diagonal().mean())
    lws = []
    done = 0
    while done < draws:
        b = min(batch, draws - done)
        z = torch.randn(b, d, generator=g, dtype=torch.float64)
        u = torch.as_tensor(rng.chisquare(df, size=b), dtype=torch.float64)
        x = mu + (z @ L.T) / torch.sqrt(u / df)[:, None]
        lws.append(target.log_prob(x) - mvt_log_prob(x, mu, L, df))
        done += b
    lw = torch.cat(lws)
    lw = torch.where(torch.isnan(lw), torch.full_like(lw, -math.inf), lw)
    M = lw.numel()
    a = lw.max()
    w = torch.exp(lw - a)
    mean_w = w.mean()
    log_Z = float(a + torch.log(mean_w))
    se = float(w.std() / (math.sqrt(M) * mean_w))
    ess = float(w.sum() ** 2 / (w * w).sum() / M)
    return log_Z, se, ess


def smc_runs(target, mu, sd, *, seeds: int, particles: int, inflate: float, n_mcmc_steps: int,
             n_leapfrog: int, cess_target: float, seed0: int = 1000):
    vals, temps = [], []
    for k in range(seeds):
        s = sf.sample(target, "smc", n=particles, seed=seed0 + k, kernel="hmc", n_mcmc_steps=n_mcmc_steps,
                      n_leapfrog=n_leapfrog, cess_target=cess_target, ref_loc=mu.tolist(),
                      ref_scale=(inflate * sd).tolist(), dtype="float64")
        vals.append(float(s.info["log_Z"]))
        temps.append(int(s.info["n_temperatures"]))
    v = torch.tensor(vals, dtype=torch.float64)
    se = float(v.std() / math.sqrt(len(vals))) if len(vals) > 1 else math.nan
    return float(v.mean()), se, vals, temps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default=",".join(LOGISTIC), help="comma-separated target names")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--seed0", type=int, default=1000, help="SMC seeds are seed0, seed0+1, ...")
    p.add_argument("--particles", type=int, default=2048)
    p.add_argument("--n-mcmc-steps", type=int, default=5)
    p.add_argument("--n-leapfrog", type=int, default=5)
    p.add_argument("--cess-target", type=float, default=0.95)
    p.add_argument("--inflate", type=float, default=1.5, help="reference scale = inflate × pilot std")
    p.add_argument("--pilot-chains", type=int, default=64)
    p.add_argument("--pilot-warmup", type=int, default=1000)
    p.add_argument("--pilot-steps", type=int, default=1000)
    p.add_argument("--is-draws", type=int, default=200_000)
    p.add_argument("--df", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.set_default_dtype(torch.float64)

    rows, results = [], {}
    for name in [n.strip() for n in a.targets.split(",") if n.strip()]:
        t = sf.targets.get(name)
        t0 = time.perf_counter()
        mu, cov, n_pilot, pinfo = pilot_moments(t, chains=a.pilot_chains, warmup=a.pilot_warmup,
                                                steps=a.pilot_steps, seed=0)
        t1 = time.perf_counter()
        is_z, is_se, is_ess = student_t_is(t, mu, cov, draws=a.is_draws, df=a.df, seed=1)
        t2 = time.perf_counter()
        smc_z, smc_se, vals, temps = smc_runs(t, mu, cov.diagonal().sqrt(), seeds=a.seeds, particles=a.particles,
                                              inflate=a.inflate, n_mcmc_steps=a.n_mcmc_steps,
                                              n_leapfrog=a.n_leapfrog, cess_target=a.cess_target,
                                              seed0=a.seed0)
        t3 = time.perf_counter()
        z = abs(smc_z - is_z) / math.sqrt(smc_se ** 2 + is_se ** 2)
        results[name] = {"dim": t.dim, "smc_log_Z": smc_z, "smc_se": smc_se, "smc_runs": vals,
                         "smc_n_temperatures": temps, "is_log_Z": is_z, "is_se": is_se, "is_ess_fraction": is_ess,
                         "abs_diff": abs(smc_z - is_z), "z": z, "pilot_draws": n_pilot,
                         "pilot_acceptance": pinfo.get("acceptance_rate"),
                         "wall_s": {"pilot": t1 - t0, "is": t2 - t1, "smc": t3 - t2}, "config": vars(a)}
        row = (f"{name:30s} {t.dim:4d}  {smc_z:12.4f} ± {smc_se:.4f}  {is_z:12.4f} ± {is_se:.4f}  "
               f"{z:6.2f}  {is_ess:6.3f}  {t1 - t0:6.1f} {t2 - t1:6.1f} {t3 - t2:7.1f}")
        rows.append(row)
        print(row, flush=True)
        if a.out:
            with open(a.out, "w") as f:
                json.dump(results, f, indent=1)
    print()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); SMC: {a.seeds} seeds × {a.particles} "
          f"particles, HMC ({a.n_mcmc_steps} moves × {a.n_leapfrog} leapfrog), cess {a.cess_target}, "
          f"ref = pilot mean, {a.inflate}× pilot std; IS: {a.is_draws} full-cov t(df={a.df}) draws")
    print(f"{'target':30s} {'d':>4s}  {'SMC log Z ± se':>21s}  {'IS log Z ± se':>21s}  {'|Δ|/se':>6s}  "
          f"{'IS ESS':>6s}  {'pilot':>6s} {'IS s':>6s} {'SMC s':>7s}")
    for r in rows:
        print(r)
    return results


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1:])
