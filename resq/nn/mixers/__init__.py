"""Mixers (main, residual and central functions). One file per mixer; contract in `base`."""

from resq.nn.mixers.base import Mixer
from resq.nn.mixers.feedforward import FeedForwardMixer
from resq.nn.mixers.qatten import QattenMixer
from resq.nn.mixers.qmix import QMixer
from resq.nn.mixers.qplex import QplexMixer
from resq.nn.mixers.vdn import VDNMixer

__all__ = ["FeedForwardMixer", "Mixer", "QMixer", "QattenMixer", "QplexMixer", "VDNMixer"]
