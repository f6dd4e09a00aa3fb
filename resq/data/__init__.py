"""Rollouts, the episode buffer and the DataModule that ties them to Lightning."""

from resq.data.collector import EpisodeCollector, Policy
from resq.data.datamodule import RolloutDataModule
from resq.data.episodes import EpisodeBatch, EpisodeBuffer
from resq.data.exploration import LinearSchedule, epsilon_greedy, masked_argmax

__all__ = [
    "EpisodeBatch",
    "EpisodeBuffer",
    "EpisodeCollector",
    "LinearSchedule",
    "Policy",
    "RolloutDataModule",
    "epsilon_greedy",
    "masked_argmax",
]
