"""Pictures of samples (matplotlib, Agg backend: never opens a window)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_write

__all__ = ["scatter_samples", "training_curves", "image_grid", "particle_trajectories", "step_diagnostics",
           "velocity_panels"]


def samples_picture(samples, target, path: str | Path, *, title: str = "", seed: int = 0,
                    n_reference: int = 2000) -> Path:
    """Scatter of ``samples`` (resampled by their importance weights, if they have any) over the target's
    reference points (:meth:`Target.reference_points`, seed ``seed + 12345``), in the target's box."""
    from ._rng import make_generator
    pts = samples.resample(generator=make_generator(seed)).x if samples.log_weights is not None else samples.x
    ref = target.reference_points(n_reference, make_generator(seed + 12345))
    return scatter_samples(pts, path, reference=ref, box=target.box, title=title)


def scatter_samples(x, path: str | Path, *, reference=None, box=None, title: str = "", max_points: int = 5000,
                    dims: tuple[int, int] = (0, 1)) -> Path:
    """Scatter of two coordinates of ``x`` (over ``reference`` in grey, if given); 1-D data as a histogram."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)[:max_points]
    ref = None if reference is None else np.asarray(
        reference.detach().cpu() if hasattr(reference, "detach") else reference)[:max_points]
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    if x.shape[1] == 1:
        bins = 80
        if ref is not None:
            ax.hist(ref[:, 0], bins=bins, density=True, color="0.75", label="reference")
        ax.hist(x[:, 0], bins=bins, density=True, histtype="step", color="C0", label="samples")
    else:
        i, j = dims
        if ref is not None:
            ax.scatter(ref[:, i], ref[:, j], s=2, c="0.7", alpha=0.5, label="reference", rasterized=True)
        ax.scatter(x[:, i], x[:, j], s=2, c="C0", alpha=0.6, label="samples", rasterized=True)
        ax.set_xlabel(f"x[{i}]")
        ax.set_ylabel(f"x[{j}]")
        _set_box(ax, box, i, j)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    return _save(fig, path)


def training_curves(history, path: str | Path, *, title: str = "", log_Z: float | None = None) -> Path:
    """Loss (left) and the running log Z estimates (right: importance-sampling ``logZ`` and ``elbo`` where
    recorded, with the true/reference ``log_Z`` as a dashed line) against the iteration."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    it = np.asarray(h["iteration"], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    loss = np.asarray(h["loss"], dtype=float)
    axes[0].plot(it, loss, color="C0")
    if np.all(loss[np.isfinite(loss)] > 0):
        axes[0].set_yscale("log")
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("loss")
    for key, color in (("logZ", "C1"), ("elbo", "C2")):
        if key in h:
            axes[1].plot(it, np.asarray(h[key], dtype=float), color=color, label=key)
    if log_Z is not None:
        axes[1].axhline(log_Z, color="k", ls="--", lw=1, label="log Z")
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("log Z estimate")
    if axes[1].lines:
        axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def particle_trajectories(trajectory, path: str | Path, *, box=None, reference=None, title: str = "",
                          n_paths: int = 100, dims: tuple[int, int] = (0, 1)) -> Path:
    """Paths of the first ``n_paths`` particles of a (T, n, d) trajectory (two coordinates; for 1-D data the
    coordinate against the step index), with the start (grey) and end (C0) points marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = np.asarray(trajectory.detach().cpu() if hasattr(trajectory, "detach") else trajectory)
    fig, ax = plt.subplots(figsize=(4.8, 4.5), dpi=110)
    paths = tr[:, :n_paths]
    if tr.shape[2] == 1:
        ax.plot(np.arange(tr.shape[0]), paths[:, :, 0], lw=0.6, alpha=0.7)
        ax.set_xlabel("saved step")
        ax.set_ylabel("x")
    else:
        i, j = dims
        if reference is not None:
            ref = np.asarray(reference.detach().cpu() if hasattr(reference, "detach") else reference)[:3000]
            ax.scatter(ref[:, i], ref[:, j], s=1, c="0.85", rasterized=True)
        ax.plot(paths[:, :, i], paths[:, :, j], lw=0.6, alpha=0.7)
        ax.scatter(paths[0, :, i], paths[0, :, j], s=6, c="0.4", label="start", zorder=3)
        ax.scatter(paths[-1, :, i], paths[-1, :, j], s=6, c="C0", label="end", zorder=3)
        ax.set_xlabel(f"x[{i}]")
        ax.set_ylabel(f"x[{j}]")
        _set_box(ax, box, i, j)
        ax.legend(loc="upper right", fontsize=7, markerscale=2)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def velocity_panels(frames: list[dict], path: str | Path, *, box, title: str = "") -> Path:
    """One panel per time of a 2-D transport: the velocity field as arrows on a grid over ``box`` and the
    particles at that time. Each frame is ``{"t": float, "grid": (G, 2), "velocity": (G, 2), "points": (m, 2)}``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frames), figsize=(3.3 * len(frames), 3.4), dpi=110, squeeze=False)
    for ax, fr in zip(axes[0], frames):
        g, v, p = (np.asarray(fr[k].detach().cpu() if hasattr(fr[k], "detach") else fr[k])
                   for k in ("grid", "velocity", "points"))
        ax.scatter(p[:, 0], p[:, 1], s=1, c="C0", alpha=0.4, rasterized=True)
        ax.quiver(g[:, 0], g[:, 1], v[:, 0], v[:, 1], color="0.25", width=0.004)
        _set_box(ax, box, 0, 1)
        ax.set_title(f"t = {fr['t']:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def step_diagnostics(columns: dict, path: str | Path, *, title: str = "") -> Path:
    """Each per-step diagnostic series (e.g. SBTM's relative Fisher information and score-matching loss)
    against ``columns["step"]``, one panel each, log scale where all values are positive."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in columns if k != "step"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), dpi=110, squeeze=False)
    step = np.asarray(columns["step"], dtype=float)
    for ax, name in zip(axes[0], names):
        v = np.asarray(columns[name], dtype=float)
        ax.plot(step, v, lw=1)
        if np.all(v[np.isfinite(v)] > 0):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(name)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def image_grid(x, path: str | Path, *, image_shape: tuple[int, int, int], value_range: tuple[float, float] | None = None,
               n_cols: int | None = None, title: str = "", labels=None) -> Path:
    """A grid of images from flat rows ``x`` (n, C·H·W) reshaped to ``image_shape`` (C, H, W): grey scale
    for C = 1, RGB for C = 3; pixel values clipped to ``value_range`` (default: the min and max of x);
    optional per-image ``labels`` (e.g. a classifier's predictions) as small captions."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)
    C, H, W = (int(s) for s in image_shape)
    if a.ndim != 2 or a.shape[1] != C * H * W:
        raise ValueError(f"x must have shape (n, {C * H * W}) for image_shape {tuple(image_shape)}, got {a.shape}")
    if C not in (1, 3):
        raise ValueError(f"image_grid draws 1- or 3-channel images, got C={C}")
    lo, hi = value_range if value_range is not None else (float(np.nanmin(a)), float(np.nanmax(a)))
    a = (np.clip(np.nan_to_num(a, nan=lo), lo, hi) - lo) / max(hi - lo, 1e-12)
    n = a.shape[0]
    n_cols = n_cols or int(np.ceil(np.sqrt(n)))
    n_rows = int(np.ceil(n / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(0.8 * n_cols, 0.8 * n_rows + (0.3 if title else 0)),
                             dpi=110, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = a[k].reshape(C, H, W)
        if C == 1:
            ax.imshow(img[0], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(img.transpose(1, 2, 0), interpolation="nearest")
        if labels is not None:
            ax.set_title(str(labels[k]), fontsize=6, pad=1)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)



def _set_box(ax, box, i: int, j: int) -> None:
    """Axis limits from a target's (low, high) box for the coordinates i, j (no-op for ``box=None``)."""
    if box is not None:
        lo, hi = (np.asarray(b) for b in box)
        ax.set_xlim(lo[i], hi[i])
        ax.set_ylim(lo[j], hi[j])


def _save(fig, path) -> Path:
    """Lay out, write atomically (the format from the suffix, PNG by default), close; return the path."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png"), binary=True)
    plt.close(fig)
    return path
