"""SBTM on images: π = p_σ̃, the marginal of a score model trained on sklearn's 8×8 digits at a small noise
level σ̃, known only through the model's score (``ScoreModelTarget``).

Compared, all from the same start x₀ ~ N(init_mean, init_std²) in 64-d (except the reference):

* ``sbtm_anneal``  SBTM, forward Euler, temperature γ_k linear from 1 to 0 (score_weight=1, score_weight_final=0);
* ``sbtm_const``   SBTM with γ ≡ 1 (the plain deterministic Langevin/Fokker–Planck flow);
* ``ula``          unadjusted Langevin x ← x + h∇log π + √(2h) ξ, same steps and step size;
* ``grad_ascent``  x ← x + h∇log π (γ ≡ 0: no spread term, no noise), same steps and step size (control);
* ``heun_edm``     the score model's own sampler (EDM Heun, 18 steps, 35 NFE) as the reference quality;
* ``data``         the 360 held-out real digits (reference row for the classifier statistics);
* ``start``        the start x₀ itself (what the classifier makes of pure noise: logistic regression is
                   over-confident off the data, so read confidence together with the NN distance).

Quality judge: multinomial logistic regression (sklearn, C=1) on the 64 pixels of the training digits (the
recipe of tests/generative/test_digits.py). Per method: mean max-probability of the classifier on the
generated digits (clamped to [−1, 1]), the class histogram (min/max share), pixel diversity (mean over the
64 pixels of the std across samples), the mean distance of a sample to its nearest training digit, and a
10×10 image grid with the classifier's labels.

    cd /work/main && OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/sbtm/images.py            # full
    cd /work/main && OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/sbtm/images.py --quick    # smoke (< 2 min)
    ... images.py --explore   # also the σ̃ × step-size sweep (results/images_explore.csv)

The score model is trained once (digits preset, 1500 iterations, ~8 CPU minutes) and saved under runs/; later
runs load it (``--model PATH``; retrained there if missing).
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sampleflow.generative import (ScoreModelConfig, ScoreModelTarget, build_score_model,  # noqa: E402
                                   fit_score_model, heun_edm, load_score_model, save_score_model)
from sampleflow.plots import image_grid  # noqa: E402
from sampleflow.samplers.sbtm.config import SBTMConfig  # noqa: E402
from sampleflow.samplers.sbtm.flow import sbtm_flow  # noqa: E402
from sampleflow.samplers.sbtm.score import ScoreTrainer, build_score_network  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIELDS = ["method", "sigma_tilde", "step_size", "steps", "nfe", "confidence", "hist_min", "hist_max",
          "n_classes", "pixel_diversity", "nn_dist", "frac_outside", "spread_ratio", "seconds", "hist"]


# ------------------------------------------------------------------------------------------------ data, judge
def digits_split():
    from sklearn.datasets import load_digits
    d = load_digits()
    x_all = torch.as_tensor(d.data, dtype=torch.float64) / 8.0 - 1.0
    y_all = np.asarray(d.target)
    perm = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(0)).numpy()
    held, train = perm[:360], perm[360:]
    return x_all[train].float(), y_all[train], x_all[held].float(), y_all[held]


def fit_classifier(x_train, y_train):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(max_iter=3000, C=1.0).fit(x_train.double().numpy(), y_train)


def get_model(path: Path, x_train, iterations: int, quick: bool):
    if path.is_file():
        model, cfg, info = load_score_model(path)
        print(f"loaded score model {path} ({info.get('iterations')} iterations)", flush=True)
        return model
    over = {"iterations": iterations}
    if quick:
        over.update(channels=8, channel_mults=(1,), checkpoint_every=10**6)
    cfg = ScoreModelConfig.preset("digits", **over)
    model = build_score_model(cfg, x_train)
    print(f"training the score model ({iterations} iterations) -> {path}", flush=True)
    res = fit_score_model(model, x_train, cfg, generator=0, progress=False)
    print(f"  trained in {res.seconds:.0f} s, final loss {res.history.last()['loss']:.4f}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_score_model(path, model, cfg, info={"data": "sklearn digits/8-1, perm seed 0, train=perm[360:]",
                                             "iterations": iterations, "train_seconds": float(res.seconds)})
    return model


def judge(name, x, clf, x_train):
    x = x.detach().float()
    finite = torch.isfinite(x).all(1)
    frac_out = float(((x < -1.05) | (x > 1.05)).float().mean()) if bool(finite.all()) else float("nan")
    xc = torch.nan_to_num(x, nan=-1.0).clamp(-1, 1)
    proba = clf.predict_proba(xc.double().numpy())
    pred = proba.argmax(1)
    hist = np.bincount(pred, minlength=10) / len(pred)
    nn = torch.cdist(xc, x_train.float()).min(1).values.mean().item()
    return {"confidence": float(proba.max(1).mean()), "hist_min": float(hist.min()), "hist_max": float(hist.max()),
            "n_classes": int((hist > 0).sum()), "pixel_diversity": float(xc.std(0).mean()),
            "nn_dist": nn, "frac_outside": frac_out, "hist": " ".join(f"{h:.3f}" for h in hist)}, pred, xc


# ------------------------------------------------------------------------------------------------ samplers
def run_sbtm(x0, score, init_mean, init_std, h, steps, gamma0, gamma1, seed, quick):
    cfg = SBTMConfig(n_steps=steps, step_size=h, init_mean=init_mean, init_std=init_std,
                     width=64 if quick else 128, depth=2, activation="softsign", loss="ism",
                     divergence="hutchinson", probes=2, train_steps=5 if quick else 20, batch_size=500,
                     lr=1e-3, init_tol=1e-2, init_max_steps=200 if quick else 1000,
                     score_weight=gamma0, score_weight_final=gamma1)
    g = torch.Generator().manual_seed(seed)
    net = build_score_network(x0.shape[1], cfg, seed)
    trainer = ScoreTrainer(net, cfg, x0.shape[1], g)
    fit = trainer.fit_initial(x0, -(x0 - init_mean) / init_std ** 2)
    ratio_start = float(trainer.score(x0).norm(dim=1).mean() / score(x0).norm(dim=1).mean())
    res = sbtm_flow(x0, score, trainer, cfg, progress_desc=None)
    # size of the interaction ("spread") term relative to the target drift at the final particles:
    # mean |s(x)| / mean |∇log π(x)| (multiply by γ_last for the actual term; diagnostic only, not counted in the NFE)
    g_last = gamma0 if gamma1 is None else gamma1
    ratio_end = float(trainer.score(res.x).norm(dim=1).mean() / score(res.x).norm(dim=1).mean())
    return res.x, {"init": fit, "fisher": res.history["fisher"].tolist(), "loss": res.history["loss"].tolist(),
                   "ratio_start": ratio_start, "ratio_end": ratio_end, "gamma_last": g_last}


def run_ula(x0, score, h, steps, seed, noise=True):
    g = torch.Generator().manual_seed(seed)
    x = x0.clone()
    for _ in range(steps):
        x = x + h * score(x)
        if noise:
            x = x + math.sqrt(2 * h) * torch.randn(x.shape, generator=g)
    return x


# ------------------------------------------------------------------------------------------------ main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny score model, 100 particles, 5 steps")
    p.add_argument("--model", type=Path, default=None, help="saved score model (trained there if missing)")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--sigma-tilde", type=float, default=0.1, help="noise level of the target p_σ̃")
    p.add_argument("--h-factor", type=float, default=1.0, help="step size h = factor · σ̃²")
    p.add_argument("--init-mean", type=float, default=0.0)
    p.add_argument("--init-std", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--explore", action="store_true", help="also sweep σ̃ × step size (results/images_explore.csv)")
    p.add_argument("--tag", default="", help="suffix of the output names")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.quick:
        a.n, a.steps, a.iterations = min(a.n, 100), min(a.steps, 5), min(a.iterations, 60)
    tag = ("quick" if a.quick else "") + a.tag
    pre = f"images{'_' + tag if tag else ''}"
    model_path = a.model or ROOT / "runs" / "sbtm_images" / (
        "digits_score_quick.pt" if a.quick else f"digits_score_{a.iterations}.pt")
    RESULTS.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    x_train, y_train, x_held, y_held = digits_split()
    clf = fit_classifier(x_train, y_train)
    acc = clf.score(x_held.double().numpy(), y_held)
    model = get_model(model_path, x_train, a.iterations, a.quick)
    print(f"classifier: held-out accuracy {acc:.3f}", flush=True)

    csv_path = RESULTS / f"{pre}.csv"
    rows = []
    f = csv_path.open("w", newline="")
    w = csv.DictWriter(f, fieldnames=FIELDS)
    w.writeheader()

    def emit(row, path=None, writer=None, fh=None):
        (writer or w).writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()})
        (fh or f).flush()
        print("  " + "  ".join(f"{k}={row[k]:.4g}" if isinstance(row[k], float) else f"{k}={row[k]}"
                               for k in FIELDS if k != "hist"), "| hist", row["hist"], flush=True)

    def evaluate(method, x, seconds, nfe, st, h, steps, grid=True, writer=None, fh=None, sink=None, diag=None):
        stats, pred, xc = judge(method, x, clf, x_train)
        row = {"method": method, "sigma_tilde": st, "step_size": h, "steps": steps, "nfe": nfe, **stats,
               "spread_ratio": diag["ratio_end"] if diag else float("nan"), "seconds": seconds}
        if diag:
            print(f"  [{method}] init fit {diag['init']}, |s|/|grad log pi| start {diag['ratio_start']:.3f} "
                  f"end {diag['ratio_end']:.3f} (gamma_last {diag['gamma_last']}), fisher "
                  + " ".join(f"{v:.3g}" for v in diag["fisher"]), flush=True)
        (sink if sink is not None else rows).append(row)
        emit(row, writer=writer, fh=fh)
        if grid:
            image_grid(xc[:100], RESULTS / f"{pre}_{method}.png", image_shape=(1, 8, 8), value_range=(-1, 1),
                       labels=pred[:100].tolist(),
                       title=f"{method}: conf {stats['confidence']:.2f}, div {stats['pixel_diversity']:.2f}")
        return row

    # reference rows: real held-out digits, the model's own sampler
    evaluate("data", x_held, 0.0, 0, float("nan"), float("nan"), 0)
    t0 = time.perf_counter()
    xh = heun_edm(model, model.sde, (a.n, 64), steps=18, generator=torch.Generator().manual_seed(a.seed + 1)).x
    evaluate("heun_edm", xh, time.perf_counter() - t0, 35, float("nan"), float("nan"), 18)

    def experiment(st, hf, grid, writer=None, fh=None, sink=None, methods=("sbtm_anneal", "sbtm_const", "ula",
                                                                         "grad_ascent")):
        target = ScoreModelTarget(model, sigma_tilde=st, joint_log_prob="zero")

        def score(x):
            return target.score(x)

        h = hf * st * st
        x0 = a.init_mean + a.init_std * torch.randn(a.n, 64, generator=torch.Generator().manual_seed(a.seed))
        out = {}
        for m in methods:
            t0 = time.perf_counter()
            diag = None
            if m == "sbtm_anneal":
                x, diag = run_sbtm(x0, score, a.init_mean, a.init_std, h, a.steps, 1.0, 0.0, a.seed, a.quick)
            elif m == "sbtm_const":
                x, diag = run_sbtm(x0, score, a.init_mean, a.init_std, h, a.steps, 1.0, None, a.seed, a.quick)
            elif m == "ula":
                x = run_ula(x0, score, h, a.steps, a.seed + 2)
            else:
                x = run_ula(x0, score, h, a.steps, a.seed + 2, noise=False)
            out[m] = evaluate(m, x, time.perf_counter() - t0, a.steps, st, h, a.steps, grid=grid, writer=writer,
                              fh=fh, sink=sink, diag=diag)
        return out

    print(f"main setting: sigma_tilde={a.sigma_tilde}, h={a.h_factor}*sigma^2={a.h_factor * a.sigma_tilde ** 2:.4g}, "
          f"{a.steps} steps, n={a.n}, start N({a.init_mean}, {a.init_std}^2)", flush=True)
    x0 = a.init_mean + a.init_std * torch.randn(a.n, 64, generator=torch.Generator().manual_seed(a.seed))
    evaluate("start", x0, 0.0, 0, float("nan"), float("nan"), 0)     # the classifier's view of pure noise
    experiment(a.sigma_tilde, a.h_factor, grid=True)
    f.close()

    if a.explore:
        sweep = [(0.05, 1.0), (0.1, 1.9), (0.2, 0.5), (0.3, 1.0)]
        if a.quick:
            sweep = sweep[:2]
        ex_path = RESULTS / f"{pre}_explore.csv"
        with ex_path.open("w", newline="") as fe:
            we = csv.DictWriter(fe, fieldnames=FIELDS)
            we.writeheader()
            ex_rows = []
            for st, hf in sweep:
                print(f"explore: sigma_tilde={st}, h={hf}*sigma^2", flush=True)
                experiment(st, hf, grid=False, writer=we, fh=fe, sink=ex_rows, methods=("sbtm_anneal", "ula"))
        print(f"wrote {ex_path}")

    print()
    print(table(rows, acc))
    (RESULTS / f"{pre}.md").write_text(table(rows, acc) + "\n")
    print(f"\nwrote {csv_path}, {RESULTS / (pre + '.md')}, grids {RESULTS}/{pre}_<method>.png; "
          f"total {time.perf_counter() - t_start:.0f} s")


def table(rows, acc):
    lines = [f"classifier held-out accuracy {acc:.3f}", "",
             "| method | σ̃ | h | steps | NFE | confidence | class share min/max | classes | pixel diversity "
             "| NN dist | s/∇logπ norm ratio (end) | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        st = "" if not r["sigma_tilde"] == r["sigma_tilde"] else f"{r['sigma_tilde']:g}"
        h = "" if not r["step_size"] == r["step_size"] else f"{r['step_size']:.3g}"
        lines.append(f"| {r['method']} | {st} | {h} | {r['steps']} | {r['nfe']} | {r['confidence']:.3f} | "
                     f"{r['hist_min']:.3f}/{r['hist_max']:.3f} | {r['n_classes']} | {r['pixel_diversity']:.3f} | "
                     f"{r['nn_dist']:.2f} | {'' if r['spread_ratio'] != r['spread_ratio'] else format(r['spread_ratio'], '.3f')} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
