"""Training rollouts in a forked process, overlapping the learner's updates (`data.rollout_worker=true`).

Lightning fetches one batch ahead: the rollout behind batch k+1 runs (with the weights left by update
k-1) before update k. The two do not depend on each other, so a second process can run the rollout
while this one updates, and every number stays what the in-process loop computes:

- the worker is forked from this process at the first training epoch and lives until the data module
  closes; it owns the training envs and steps them, inserts into the replay buffer (whose storage is
  shared memory, so checkpoints and this process see every episode), and samples the batches, drawing
  from the data module's generator in the same order as the in-process loop;
- at each rollout request this process copies the policy's current state_dict into shared tensors that
  the worker loads before it acts: the rollout acts with exactly the weights the in-process loop would;
- sampled batches come back through two shared slots (rollout k writes slot k % 2) and are copied out
  when Lightning hands the batch to the learner (`RolloutDataModule.on_before_batch_transfer`);
- the generator's state travels with the epoch (sent at its start, returned at its end), so evaluation
  in this process draws what it would have drawn; `state_dict()` asks the worker for its state.

A failure in the worker is raised here with its traceback; the worker ends when the data module
closes, when this process exits (daemon) and when its pipe closes. Needs the "fork" start method
(Linux; macOS works but is not tested here), and is refused in a process that has imported JAX (the
SMAX envs), whose threads do not survive a fork.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import torch

from resq.data.collector import EpisodeCollector, Policy
from resq.data.episodes import EpisodeBatch

if TYPE_CHECKING:
    from resq.data.datamodule import RolloutDataModule


class RolloutWorkerError(RuntimeError):
    """The rollout worker process failed or died; the message holds its traceback or exit code."""


def _policy_tensors(policy: Policy) -> list[torch.Tensor]:
    """Everything the policy's state_dict holds (parameters and buffers, the target networks included)."""
    return [t.detach() for t in policy.state_dict().values()] if hasattr(policy, "state_dict") else []


@dataclass
class PendingBatch:
    """Batch `index` of the rollout with `ticket`, still being made by the worker; `resolve()` waits for it."""

    worker: RolloutWorker
    ticket: int
    index: int
    _batch: EpisodeBatch | None = None

    def resolve(self) -> EpisodeBatch:
        if self._batch is None:
            self._batch = self.worker.take(self.ticket, self.index)
        return self._batch


class RolloutWorker:
    """This process's end of the worker: rollout requests, results, state and shutdown."""

    def __init__(self, datamodule: RolloutDataModule, policy: Policy) -> None:
        if "fork" not in mp.get_all_start_methods():
            raise RolloutWorkerError("data.rollout_worker=true needs the 'fork' start method, which this platform "
                                     "lacks; set data.rollout_worker=false")
        if "jax" in sys.modules:  # SMAX: a forked copy of JAX's threads deadlocks (JAX warns so itself)
            raise RolloutWorkerError("data.rollout_worker=true cannot fork this process: it runs JAX (the SMAX envs), "
                                     "whose threads do not survive a fork; set data.rollout_worker=false")
        dm = datamodule
        self.batch_size, self.n_batches = dm.batch_size, max(dm.updates_per_rollout, 1)
        dm.buffer._storage.share_memory_()  # in place: the worker's inserts land in this process's buffer
        self.slots = [EpisodeBatch.empty(dm.spec, self.batch_size * self.n_batches).share_memory_() for _ in range(2)]
        self.shared = [t.clone().share_memory_() for t in _policy_tensors(policy)]
        self.requested = self.received = 0  # rollout tickets sent, and results received
        self.results: dict[int, dict] = {}  # received, not yet taken by every batch
        self.pending: dict[int, list[PendingBatch]] = {}
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(dm, policy, child, self.shared, self.slots), daemon=True,
                                   name="resq-rollout-worker")
        self.process.start()
        child.close()
        self.datamodule = dm

    # ---- messages ----------------------------------------------------------------------------
    def _recv(self) -> tuple[str, Any]:
        try:
            kind, payload = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            raise RolloutWorkerError(
                f"the rollout worker process died (exit code {self.process.exitcode}); run with "
                f"data.rollout_worker=false to see the error in this process") from None
        if kind == "error":
            raise RolloutWorkerError(f"the rollout worker failed:\n{payload}")
        return kind, payload

    def _call(self, message: tuple) -> Any:
        """Send a request that is answered at once (the worker must be idle: no rollout outstanding)."""
        self.wait(self.requested)
        self.conn.send(message)
        return self._recv()[1]

    # ---- rollouts ----------------------------------------------------------------------------
    def begin_epoch(self, generator_state: torch.Tensor) -> None:
        self._call(("generator", generator_state))

    def end_epoch(self) -> torch.Tensor:
        """The generator's state after the epoch's rollouts and samples."""
        return self._call(("state", None))["generator"]

    def request(self, policy: Policy) -> int:
        """Start the next rollout with the policy's current weights; returns its ticket."""
        ticket = self.requested + 1
        for stale in self.pending.pop(ticket - 2, []):  # the slot it writes held rollout ticket - 2
            stale.resolve()
        self.wait(self.requested)  # the worker is idle (the previous rollout is back)
        live = _policy_tensors(policy)
        if len(live) != len(self.shared) or any(a.shape != b.shape for a, b in zip(live, self.shared)):
            raise RolloutWorkerError("the policy's state_dict changed shape during training; the rollout worker "
                                     "cannot follow it (set data.rollout_worker=false)")
        if live:
            torch._foreach_copy_(self.shared, live)
        self.conn.send(("rollout", ticket % 2))
        self.requested = ticket
        return ticket

    def batches(self, ticket: int) -> list[PendingBatch]:
        pending = [PendingBatch(self, ticket, u) for u in range(self.datamodule.updates_per_rollout)]
        self.pending[ticket] = pending
        return pending

    def wait(self, ticket: int) -> dict | None:
        """The result of rollout `ticket` (waiting for it), after copying its counters into the data module.
        Results are kept until their batches are taken (only rollouts with batches are kept)."""
        result = self.results.get(ticket)
        while self.received < ticket:
            kind, result = self._recv()
            assert kind == "rollout", kind
            self.received += 1
            dm = self.datamodule
            dm.t_env, dm.episodes = result["t_env"], result["episodes"]
            dm.buffer._next, dm.buffer._size = result["next"], result["size"]
            if result["steps"] and self.received in self.pending:
                self.results[self.received] = result
        return result

    def take(self, ticket: int, index: int) -> EpisodeBatch:
        """Copy batch `index` of rollout `ticket` out of its slot."""
        result = self.wait(ticket)
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        batch = self.slots[ticket % 2].select(rows).truncate(result["steps"][index]).clone()
        batch.info = dict(result["info"])
        result["taken"] = result.get("taken", 0) + 1
        if result["taken"] == len(result["steps"]):
            del self.results[ticket]
        return batch

    def state(self) -> dict:
        """The worker's generator and training-env state (for checkpoints), waiting for its rollout."""
        return self._call(("state", None))

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(("close", None))
            except (OSError, BrokenPipeError):
                pass
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self.conn.close()


def _serve(dm: RolloutDataModule, policy: Policy, conn: Connection, shared: list[torch.Tensor],
           slots: list[EpisodeBatch]) -> None:
    """The worker's loop: rollouts with the shared weights, inserts, samples into a slot."""
    # The handlers inherited from the run (Lightning's, submitit's requeue on SIGUSR2, Ctrl-C) are the run's
    # business: the run closes this worker; a SIGTERM to the process group simply ends it.
    for name in ("SIGINT", "SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        live = _policy_tensors(policy)
        collector = EpisodeCollector(dm.train_env, dm.generator)
        while True:
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):  # the training process is gone
                return
            if kind == "close":
                return
            if kind == "generator":
                dm.generator.set_state(payload)
                conn.send(("ok", None))
            elif kind == "state":
                conn.send(("state", {"generator": dm.generator.get_state(), "train_env": dm.train_env.state_dict()}))
            elif kind == "rollout":
                if live:
                    torch._foreach_copy_(live, shared)
                batches, info = dm.rollout(collector, policy)
                for u, batch in enumerate(batches):
                    batch.write_into(slots[payload], slice(u * batch.batch_size, (u + 1) * batch.batch_size))
                steps = [batch.max_steps for batch in batches]
                conn.send(("rollout", {"t_env": dm.t_env, "episodes": dm.episodes, "next": dm.buffer._next,
                                       "size": len(dm.buffer), "info": info, "steps": steps}))
    except Exception:  # noqa: BLE001 - handed to the run, which raises it with this traceback
        try:
            conn.send(("error", traceback.format_exc()))
        except (OSError, BrokenPipeError):
            pass
