"""A LightningDataModule backed by rollouts instead of a data set.

It owns the vectorised environments, the episode buffer and the exploration schedule. Each training
"epoch" collects `test_interval` environment steps with the current policy (epsilon-greedy), inserting
every rollout into the buffer and yielding `updates_per_rollout` sampled batches after it; Lightning's
validation loop then runs `test_episodes` greedy episodes. So evaluation every N env steps is simply
Lightning's end-of-epoch validation, and `max_epochs = ceil(t_max / test_interval)`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from envs import BatchedEnv, EnvSpec
from resq.data.collector import EpisodeCollector, Policy
from resq.data.episodes import EpisodeBatch, EpisodeBuffer
from resq.data.exploration import LinearSchedule
from resq.data.rollout_worker import PendingBatch, RolloutWorker


class _Stream(IterableDataset):
    def __init__(self, batches: Callable[[], Iterator[EpisodeBatch]]) -> None:
        self._batches = batches

    def __iter__(self) -> Iterator[EpisodeBatch]:
        return self._batches()


class RolloutDataModule(pl.LightningDataModule):
    """Collects episodes with the policy it is bound to and serves sampled batches of them.

    Args:
        env: factory `env(n_envs=..., seed=...) -> BatchedEnv` (a Hydra `_partial_`).
        n_envs: environments stepped together per rollout.
        batch_size: episodes per sampled training batch.
        buffer_size: episodes kept in the replay buffer.
        updates_per_rollout: gradient steps after each rollout of `n_envs` episodes.
        t_max: total environment steps to train for.
        test_interval: environment steps per epoch (between evaluations).
        test_episodes: greedy episodes per evaluation.
        epsilon_start, epsilon_finish, epsilon_anneal_steps: the linear exploration schedule.
        seed: seeds the environments, exploration and sampling.
        checkpoint_buffer: keep the replay buffer in checkpoints (exact resume); off, a resumed run
            starts with an empty buffer.
        rollout_worker: run the training rollouts in a forked process while this one updates (the
            same numbers; faster wall clock on a free core; see resq/data/rollout_worker.py).
    """

    def __init__(
        self,
        env: Callable[..., BatchedEnv],
        n_envs: int = 1,
        batch_size: int = 32,
        buffer_size: int = 5000,
        updates_per_rollout: int = 1,
        t_max: int = 50_000,
        test_interval: int = 5_000,
        test_episodes: int = 32,
        epsilon_start: float = 1.0,
        epsilon_finish: float = 0.05,
        epsilon_anneal_steps: int = 100_000,
        seed: int = 0,
        checkpoint_buffer: bool = True,
        rollout_worker: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("n_envs", n_envs), ("batch_size", batch_size), ("t_max", t_max),
                            ("test_interval", test_interval), ("test_episodes", test_episodes)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if updates_per_rollout < 0:
            raise ValueError(f"updates_per_rollout must be >= 0, got {updates_per_rollout}")
        if batch_size > buffer_size:
            raise ValueError(f"batch_size ({batch_size}) cannot exceed buffer_size ({buffer_size})")
        self.env_factory = env
        self.n_envs = n_envs
        self.batch_size = batch_size
        self.buffer_size = buffer_size
        self.updates_per_rollout = updates_per_rollout
        self.t_max = t_max
        self.test_interval = test_interval
        self.test_episodes = test_episodes
        self.epsilon = LinearSchedule(epsilon_start, epsilon_finish, epsilon_anneal_steps)
        self.seed = seed
        self.checkpoint_buffer = checkpoint_buffer
        self.rollout_worker = rollout_worker
        self._worker: RolloutWorker | None = None
        self.generator = torch.Generator().manual_seed(seed)
        self.t_env = 0
        self.episodes = 0
        self._train_env: BatchedEnv | None = None
        self._test_env: BatchedEnv | None = None
        self._buffer: EpisodeBuffer | None = None
        self._policy: Policy | None = None

    # ---- environments ------------------------------------------------------------------------
    @property
    def train_env(self) -> BatchedEnv:
        if self._train_env is None:
            self._train_env = self.env_factory(n_envs=self.n_envs, seed=self.seed)
        return self._train_env

    @property
    def test_env(self) -> BatchedEnv:
        if self._test_env is None:
            self._test_env = self.env_factory(n_envs=min(self.n_envs, self.test_episodes), seed=self.seed + 10_007)
        return self._test_env

    @property
    def spec(self) -> EnvSpec:
        return self.train_env.spec

    @property
    def buffer(self) -> EpisodeBuffer:
        if self._buffer is None:
            self._buffer = EpisodeBuffer(self.spec, self.buffer_size)
        return self._buffer

    @property
    def worker_pids(self) -> list[int]:
        """Processes working for the training rollouts: the rollout worker (once started) and the training
        env's own workers (benchmarks add up their CPU time)."""
        pids = [self._worker.process.pid] if self._worker is not None else []
        return pids + list(getattr(self._train_env, "worker_pids", []))

    @property
    def max_epochs(self) -> int:
        return math.ceil(self.t_max / self.test_interval)

    def bind(self, policy: Policy) -> None:
        """Collect with `policy` (done automatically from the Trainer's LightningModule in `setup`)."""
        self._policy = policy

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.lightning_module is not None:
            self.bind(self.trainer.lightning_module)

    def teardown(self, stage: str) -> None:
        # Environments stay open between fit and validate; `close()` releases them.
        pass

    def close(self) -> None:
        self._close_worker()
        for env in (self._train_env, self._test_env):
            if env is not None:
                env.close()
        self._train_env = self._test_env = None

    # ---- streams -----------------------------------------------------------------------------
    def _require_policy(self) -> Policy:
        if self._policy is None:
            raise RuntimeError("RolloutDataModule has no policy: call bind(learner) or use it with a Trainer")
        return self._policy

    def training_batches(self) -> Iterator[EpisodeBatch | PendingBatch]:
        """One epoch: rollouts until the next multiple of `test_interval` env steps (or t_max). With
        `rollout_worker` the batches come as `PendingBatch`es, resolved by `on_before_batch_transfer`."""
        policy = self._require_policy()
        epoch_end = min(self.t_max, (self.t_env // self.test_interval + 1) * self.test_interval)
        if self.rollout_worker:
            yield from self._worker_batches(policy, epoch_end)
            return
        collector = EpisodeCollector(self.train_env, self.generator)
        while self.t_env < epoch_end:
            batches, _ = self.rollout(collector, policy)
            yield from batches

    def rollout(self, collector: EpisodeCollector, policy: Policy) -> tuple[list[EpisodeBatch], dict]:
        """One rollout of the training envs into the buffer, and the `updates_per_rollout` batches
        sampled after it (none while the buffer holds fewer than `batch_size` episodes)."""
        epsilon = self.epsilon(self.t_env)
        episodes = collector.collect(policy, epsilon)
        self.buffer.insert(episodes)
        self.t_env += episodes.n_steps
        self.episodes += episodes.batch_size
        info = {
            "t_env": float(self.t_env),
            "t_max": float(self.t_max),
            "episodes": float(self.episodes),
            "epsilon": epsilon,
            "return_mean": float(episodes.returns.mean()),
        }
        if not self.buffer.can_sample(self.batch_size):
            return [], info
        batches = []
        for _ in range(self.updates_per_rollout):
            batch = self.buffer.sample(self.batch_size, self.generator)
            batch.info = info
            batches.append(batch)
        return batches, info

    def _worker_batches(self, policy: Policy, epoch_end: int) -> Iterator[PendingBatch]:
        """The epoch's rollouts made by the worker process, each overlapping the update before it."""
        if self._worker is None:
            self._worker = RolloutWorker(self, policy)
        worker = self._worker
        try:
            worker.begin_epoch(self.generator.get_state())
            while self.t_env < epoch_end:
                samples = min(len(self.buffer) + self.n_envs, self.buffer_size) >= self.batch_size
                ticket = worker.request(policy)
                if not samples:  # buffer warm-up: no update to overlap with
                    if worker.wait(ticket)["steps"]:
                        raise RuntimeError("rollout worker: batches were sampled during the buffer warm-up")
                    continue
                yield from worker.batches(ticket)
                worker.wait(ticket)  # t_env after it, for the loop's test
            self.generator.set_state(worker.end_epoch())
        except GeneratorExit:  # Lightning stopped iterating: the worker stays (its rollout counts, as in process)
            raise
        except BaseException:
            self._close_worker()  # an error here or in the worker: no worker left behind
            raise

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        return batch.resolve() if isinstance(batch, PendingBatch) else batch

    def _close_worker(self) -> None:
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.close()

    def test_batches(self) -> Iterator[EpisodeBatch]:
        """`test_episodes` greedy episodes, in batches of the test env's size."""
        policy = self._require_policy()
        collector = EpisodeCollector(self.test_env, self.generator)
        remaining = self.test_episodes
        while remaining > 0:
            episodes = collector.collect(policy, epsilon=0.0, training=False)
            if episodes.batch_size > remaining:
                episodes = episodes.select(slice(0, remaining))
            remaining -= episodes.batch_size
            episodes.info = {"t_env": float(self.t_env)}
            yield episodes

    def train_dataloader(self) -> DataLoader:
        # The rollout needs the live policy: it must run in the main process (num_workers=0).
        return DataLoader(_Stream(self.training_batches), batch_size=None, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Stream(self.test_batches), batch_size=None, num_workers=0)

    # ---- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything the next epoch depends on, saved in Lightning checkpoints: t_env, episodes, the
        epsilon schedule, the sampling/exploration generator, the environments' generators and (unless
        `checkpoint_buffer` is off) the replay buffer. Environments are reset at every rollout, so their
        generators are all the state they carry between epochs."""
        if self._worker is not None:  # the worker steps the training envs and draws from the generator
            remote = self._worker.state()
            self.generator.set_state(remote["generator"])
            self.train_env.load_state_dict(remote["train_env"])
        state = {
            "t_env": self.t_env,
            "episodes": self.episodes,
            "epsilon": dataclasses.asdict(self.epsilon),
            "generator": self.generator.get_state(),
            "train_env": self.train_env.state_dict(),
            "test_env": self.test_env.state_dict(),
        }
        if self.checkpoint_buffer:
            state["buffer"] = self.buffer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self._close_worker()  # a new worker is forked from the restored state
        self.t_env, self.episodes = int(state["t_env"]), int(state["episodes"])
        if "epsilon" in state:
            self.epsilon = LinearSchedule(**state["epsilon"])
        self.generator.set_state(state["generator"])
        self.train_env.load_state_dict(state.get("train_env", {}))
        self.test_env.load_state_dict(state.get("test_env", {}))
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
