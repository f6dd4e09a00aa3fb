"""Network parts: plain nn.Modules and functions that know neither Lightning nor Hydra."""

from resq.nn.agents import RNNAgent
from resq.nn.joint import JointValue, all_joint_actions, gather_actions
from resq.nn.mixers import FeedForwardMixer, Mixer, QattenMixer, QMixer, QplexMixer, VDNMixer
from resq.nn.returns import td_lambda_returns

__all__ = [
    "FeedForwardMixer",
    "JointValue",
    "Mixer",
    "QMixer",
    "QattenMixer",
    "QplexMixer",
    "RNNAgent",
    "VDNMixer",
    "all_joint_actions",
    "gather_actions",
    "td_lambda_returns",
]
