"""Mixers (main, residual and central functions). One file per mixer; contracts in `base` (expected
values, (*, N) -> (*, 1)) and `distributional` (quantiles, (*, N, K) -> (*, K))."""

from resq.nn.mixers.base import Mixer
from resq.nn.mixers.datten import DAttenMixer
from resq.nn.mixers.ddn import DDNMixer
from resq.nn.mixers.distributional import DistributionalMixer
from resq.nn.mixers.dmix import DMixMixer
from resq.nn.mixers.feedforward import FeedForwardMixer
from resq.nn.mixers.per_quantile import PerQuantileMixer
from resq.nn.mixers.qatten import QattenMixer
from resq.nn.mixers.qmix import QMixer
from resq.nn.mixers.qplex import QplexMixer
from resq.nn.mixers.quantile_mlp import QuantileMLPMixer
from resq.nn.mixers.vdn import VDNMixer

__all__ = [
    "DAttenMixer",
    "DDNMixer",
    "DMixMixer",
    "DistributionalMixer",
    "FeedForwardMixer",
    "Mixer",
    "PerQuantileMixer",
    "QMixer",
    "QattenMixer",
    "QplexMixer",
    "QuantileMLPMixer",
    "VDNMixer",
]
