"""Network parts: plain nn.Modules and functions that know neither Lightning nor Hydra."""

from resq.nn.agents import RNNAgent
from resq.nn.iqn import IQNAgent
from resq.nn.joint import JointValue, all_joint_actions, gather_actions
from resq.nn.mixers import (
    DAttenMixer,
    DDNMixer,
    DistributionalMixer,
    DMixMixer,
    FeedForwardMixer,
    Mixer,
    PerQuantileMixer,
    QattenMixer,
    QMixer,
    QplexMixer,
    QuantileMLPMixer,
    VDNMixer,
)
from resq.nn.mlp_agent import MLPAgent
from resq.nn.quantile_joint import QuantileJointValue, gather_action_quantiles
from resq.nn.quantiles import midpoint_taus, quantile_huber_loss, sample_taus
from resq.nn.returns import td_lambda_returns

__all__ = [
    "DAttenMixer",
    "DDNMixer",
    "DMixMixer",
    "DistributionalMixer",
    "FeedForwardMixer",
    "IQNAgent",
    "JointValue",
    "MLPAgent",
    "Mixer",
    "PerQuantileMixer",
    "QMixer",
    "QattenMixer",
    "QplexMixer",
    "QuantileJointValue",
    "QuantileMLPMixer",
    "RNNAgent",
    "VDNMixer",
    "all_joint_actions",
    "gather_action_quantiles",
    "gather_actions",
    "midpoint_taus",
    "quantile_huber_loss",
    "sample_taus",
    "td_lambda_returns",
]
