"""A small convolutional U-Net for score models of images (8×8 digits, 28×28 images).

The architecture of DDPM (Ho, Jain & Abbeel, NeurIPS 2020) and of the score SDE models (Song et al., ICLR
2021), scaled down: residual blocks (GroupNorm → SiLU → 3×3 conv, twice) conditioned on the time through a
learned shift per channel, one down-sampling (stride-2 conv) per resolution level, skip connections
concatenated on the way up, no attention (at 8×8 and 28×28 the convolutions already see most of the image).
The output convolution and each block's last convolution start at zero, so a fresh network outputs 0 and
each block starts as the identity.

Like every network in :mod:`sampleflow.nn`, :class:`UNet` maps flat points ``x`` of shape ``(..., d)`` with
``d = C·H·W`` and a time ``t`` (see :func:`~sampleflow.nn.time.broadcast_time`) to ``(..., d)``: it is a
drop-in replacement for :class:`~sampleflow.nn.mlp.TimeMLP` wherever data are images.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .time import SinusoidalTimeEmbedding, broadcast_time

__all__ = ["UNet"]


def _groups(channels: int, max_groups: int = 8) -> int:
    """The largest group count <= max_groups that divides ``channels``."""
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


class _ResBlock(nn.Module):
    """h = conv(SiLU(GN(conv(SiLU(GN(x))) + shift(emb)))) + skip(x); the last conv starts at zero."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.shift = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x))) + self.shift(emb)[..., None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class UNet(nn.Module):
    """Score / noise / denoiser network for images of shape ``image_shape = (C, H, W)``, on flat inputs.

    channels: width of the first level; channel_mults: width multiplier per resolution level (one
    down-sampling between consecutive levels; (1, 2) for 8×8, (1, 2, 2) for 28×28); n_res: residual blocks per
    level; the time goes through geometric sin/cos features (0.1 … 1000 rad per unit, as DDPM's positional
    encoding of 1000·t) and a two-layer MLP of width 4·channels.
    """

    def __init__(self, image_shape: tuple[int, int, int], channels: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2), n_res: int = 1, dropout: float = 0.0,
                 n_frequencies: int = 32):
        super().__init__()
        if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape!r}")
        if channels < 1 or not channel_mults or any(m < 1 for m in channel_mults) or n_res < 1:
            raise ValueError("channels, every channel_mults entry and n_res must be >= 1, got "
                             f"channels={channels}, channel_mults={channel_mults}, n_res={n_res}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.dim = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        c_img, emb_dim = self.image_shape[0], 4 * channels
        self.time = nn.Sequential(
            SinusoidalTimeEmbedding(n_frequencies, max_frequency=1000.0, min_frequency=0.1, spacing="geometric",
                                    learn_phase=False),
            nn.Linear(2 * n_frequencies, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(c_img, channels, 3, padding=1)
        widths = [channels * m for m in channel_mults]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, c = [channels], channels
        for level, w in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(n_res):
                blocks.append(_ResBlock(c, w, emb_dim, dropout))
                c = w
                skips.append(c)
            self.down.append(blocks)
            last = level == len(widths) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))
            if not last:
                skips.append(c)
        self.mid = nn.ModuleList([_ResBlock(c, c, emb_dim, dropout), _ResBlock(c, c, emb_dim, dropout)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for _ in range(n_res + 1):
                blocks.append(_ResBlock(c + skips.pop(), w, emb_dim, dropout))
                c = w
            self.up.append(blocks)
            self.upsample.append(nn.Conv2d(c, c, 3, padding=1) if level > 0 else nn.Identity())
        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.out = nn.Conv2d(c, c_img, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"x has last dimension {x.shape[-1]}; this UNet expects C·H·W = {self.dim} "
                             f"(image_shape {self.image_shape})")
        lead = x.shape[:-1]
        t = broadcast_time(t, x).expand(lead).reshape(-1)
        h = x.reshape(-1, *self.image_shape)
        emb = self.time(t)
        h = self.inp(h)
        hs = [h]
        for blocks, down in zip(self.down, self.downsample):
            for block in blocks:
                h = block(h, emb)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for blocks, up in zip(self.up, self.upsample):
            for block in blocks:
                h = block(torch.cat([h, hs.pop()], 1), emb)
            if not isinstance(up, nn.Identity):
                size = hs[-1].shape[-2:]
                h = up(F.interpolate(h, size=size, mode="nearest"))
        return self.out(F.silu(self.out_norm(h))).reshape(*lead, self.dim)
