"""The launchers' configs, registered as `hydra/launcher` options resq_local and resq_slurm (the presets
conf/hydra/launcher/local.yaml and slurm.yaml build on them)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf


@dataclass
class ResilientLocalConf:
    _target_: str = "hydra_plugins.resq_launcher.launcher.ResilientLocalLauncher"
    # jobs run at the same time, each in its own process
    n_jobs: int = 2
    # seconds between checks of running jobs
    poll_s: float = 0.2


@dataclass
class ResilientSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.resq_launcher.launcher.ResilientSlurmLauncher"
    # seconds between checks of submitted jobs (submitit asks SLURM at most about once a minute)
    poll_s: float = 2.0


ConfigStore.instance().store(group="hydra/launcher", name="resq_local", node=ResilientLocalConf, provider="resq")
ConfigStore.instance().store(group="hydra/launcher", name="resq_slurm", node=ResilientSlurmConf, provider="resq")
