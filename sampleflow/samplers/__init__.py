"""Samplers, one module per method family, looked up by name: ``sampleflow.samplers.get("smc")``."""
from .base import CountingTarget, Sampler
from .registry import UnknownSamplerError, get, names, register
from .exact import Exact, ExactConfig
from .importance import Importance, ImportanceConfig
from .mcmc import HMC, MALA, ULA, HMCConfig, MALAConfig, ULAConfig
from .pt import PT, PTConfig
from .svgd import SVGD, SVGDConfig
from .sbtm import SBTM, SBTMConfig
from .pinn import PINN, PINNConfig
from .smc import AIS, SMC, AISConfig, SMCConfig
from .diffusion import CMCD, DDS, DIS, PIS, Bridge, BridgeConfig, CMCDConfig, DDSConfig, DISConfig, PISConfig

__all__ = ["Sampler", "CountingTarget", "get", "names", "register", "UnknownSamplerError",
           "Exact", "ExactConfig", "Importance", "ImportanceConfig",
           "ULA", "ULAConfig", "MALA", "MALAConfig", "HMC", "HMCConfig", "PT", "PTConfig", "SVGD", "SVGDConfig", "SBTM", "SBTMConfig", "PINN", "PINNConfig", "AIS", "AISConfig", "SMC", "SMCConfig",
           "PIS", "PISConfig", "DIS", "DISConfig", "DDS", "DDSConfig", "Bridge", "BridgeConfig", "CMCD", "CMCDConfig"]
