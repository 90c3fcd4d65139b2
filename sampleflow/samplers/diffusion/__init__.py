"""Learned diffusion samplers (Richter & Berner 2024): PIS, DIS, DDS, the general bridge and CMCD,
trained with reverse KL, log-variance (per batch or per start point) or trajectory balance."""
from .base import DIFFUSION_PRESETS, DiffusionConfig, DiffusionSampler
from .bridge import Bridge, BridgeConfig
from .cmcd import CMCD, CMCDConfig
from .dds import DDS, DDSConfig
from .dis import DIS, DISConfig
from .losses import (LOSSES, kl_loss, log_variance_loss, log_variance_per_start_loss,
                     trajectory_balance_loss)
from .pis import PIS, PISConfig

__all__ = ["DiffusionConfig", "DiffusionSampler", "DIFFUSION_PRESETS", "PIS", "PISConfig", "DIS", "DISConfig",
           "DDS", "DDSConfig", "Bridge", "BridgeConfig", "CMCD", "CMCDConfig", "LOSSES", "kl_loss",
           "log_variance_loss", "log_variance_per_start_loss", "trajectory_balance_loss"]
