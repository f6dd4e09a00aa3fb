"""Sweep launchers that survive their jobs.

Hydra's joblib launcher loses the whole sweep when one worker process dies (loky raises
TerminatedWorkerError for every job), and its submitit launcher stops collecting at the first job whose
`result()` raises (a cancelled, killed or timed-out SLURM job). These two run every job to its end:

- `ResilientLocalLauncher` (`hydra/launcher=local`): each job in its own forked process, `n_jobs` at a
  time (the parent has the imports already, so a job starts at once);
- `ResilientSlurmLauncher` (`hydra/launcher=slurm`): one SLURM array through submitit, every job's
  outcome collected on its own.

Both skip jobs whose directory holds a finished run (run.json), so re-running a sweep command with the
same `hydra.sweep.dir` runs only what is missing, and each unfinished job resumes from its checkpoint
(`resq.run`). A job whose process ends without a result (SIGKILL, a crash of the interpreter, scancel)
gets a line in `<sweep dir>/failures.jsonl` and its run.json marked failed (a job that raises records
itself, in `resq.run`). Failed jobs return nan, so the sweep completes and Hydra exits normally; the
end of the log lists them.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


class SweepJob(NamedTuple):
    num: int
    overrides: list[str]
    dir: Path


class JobDied(RuntimeError):
    """A job's process ended without returning (killed, crashed, cancelled)."""


class _Resilient:
    """The sweep logic both launchers share; subclasses say how to run jobs (`run_jobs`)."""

    config: DictConfig | None
    hydra_context: HydraContext | None
    task_function: TaskFunction | None

    def run_jobs(self, jobs: list[SweepJob]) -> Iterator[tuple[SweepJob, JobReturn | BaseException]]:
        raise NotImplementedError

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from resq.results import FAILURES, append_failure, mark_failed, read_run_record

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs = [SweepJob(initial_job_idx + i, list(o), self.job_dir(o, initial_job_idx + i))
                for i, o in enumerate(job_overrides)]
        returns: dict[int, JobReturn] = {}
        todo = []
        for job in jobs:
            record = read_run_record(job.dir) or {}
            if record.get("status") == "finished":
                returns[job.num] = self.job_return(job, (record.get("result") or {}).get("test/return_mean", math.nan))
            else:
                todo.append(job)
        log.info("%s: %d jobs, %d finished already (skipped), launching %d", sweep_dir, len(jobs),
                 len(jobs) - len(todo), len(todo))
        for job in todo:
            log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.overrides)))

        failed = []
        for job, outcome in self.run_jobs(todo):
            if isinstance(outcome, JobReturn) and outcome.status == JobStatus.COMPLETED:
                returns[job.num] = outcome
                if (read_run_record(job.dir) or {}).get("status") != "finished":  # resq.run recorded why
                    failed.append(job)
                continue
            error = outcome._return_value if isinstance(outcome, JobReturn) else outcome
            kind = "exception" if isinstance(outcome, JobReturn) else "died"
            append_failure(sweep_dir, job.num, job.dir, job.overrides, error, kind=kind)
            mark_failed(job.dir, error)
            log.error("job #%d failed: %s", job.num, error)
            returns[job.num] = self.job_return(job, math.nan)
            failed.append(job)
        if failed:
            log.warning("%d of %d jobs did not finish (#%s); why: %s. Re-run the same command with "
                        "hydra.sweep.dir=%s to run only those again.", len(failed), len(jobs),
                        ", #".join(str(j.num) for j in failed), sweep_dir / FAILURES, sweep_dir)
        return [returns[job.num] for job in jobs]

    def job_dir(self, overrides: Sequence[str], num: int) -> Path:
        """The job's output directory, computed as Hydra's `run_job` computes it."""
        assert self.config is not None and self.hydra_context is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.num = num
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{num}"
        saved = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(sweep_config)
        try:
            return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
        finally:
            if saved is not None:
                HydraConfig.instance().cfg = saved

    def job_return(self, job: SweepJob, value: Any) -> JobReturn:
        assert self.config is not None
        return JobReturn(overrides=job.overrides, working_dir=str(job.dir), task_name=self.config.hydra.job.name,
                         status=JobStatus.COMPLETED, _return_value=value)


class ResilientLocalLauncher(_Resilient, Launcher):
    """Runs each job in a forked process, `n_jobs` at a time; a process that dies fails only its job."""

    def __init__(self, n_jobs: int = 2, poll_s: float = 0.2) -> None:
        if n_jobs < 1:
            raise ValueError(f"hydra.launcher.n_jobs must be >= 1, got {n_jobs}")
        self.n_jobs, self.poll_s = int(n_jobs), float(poll_s)
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def run_jobs(self, jobs: list[SweepJob]) -> Iterator[tuple[SweepJob, JobReturn | BaseException]]:
        context = multiprocessing.get_context("fork")
        pending = list(jobs)
        running: dict[int, tuple[SweepJob, Any, Any]] = {}  # job num -> (job, process, receiving end)
        received: dict[int, JobReturn] = {}
        while pending or running:
            while pending and len(running) < self.n_jobs:
                job = pending.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=self._child, args=(job, send), name=f"job-{job.num}", daemon=False)
                process.start()
                send.close()
                running[job.num] = (job, process, receive)
            waitables = {process.sentinel: num for num, (_, process, _) in running.items()}
            waitables.update({receive: num for num, (_, _, receive) in running.items() if not receive.closed})
            for ready in multiprocessing.connection.wait(list(waitables), timeout=self.poll_s):
                num = waitables[ready]
                if num not in running:
                    continue
                job, process, receive = running[num]
                self._receive(num, receive, received)
                if ready is process.sentinel:
                    process.join()
                    del running[num]
                    outcome = received.pop(num, None)
                    if outcome is None:
                        outcome = JobDied(f"the job's process ended without a result ({exit_reason(process.exitcode)})")
                    yield job, outcome

    @staticmethod
    def _receive(num: int, receive, received: dict[int, JobReturn]) -> None:
        if receive.closed or not receive.poll():
            return
        try:
            received[num] = receive.recv()
        except (EOFError, OSError):
            pass
        receive.close()

    def _child(self, job: SweepJob, send) -> None:
        """In the forked process: run the job as Hydra's own launchers do, send back its JobReturn."""
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, job.overrides)
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{job.num}"
            sweep_config.hydra.job.num = job.num
        HydraConfig.instance().set_config(sweep_config)
        ret = run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        try:
            send.send(ret)
        except Exception as error:  # noqa: BLE001 - an unpicklable return value or exception: send its text
            send.send(JobReturn(overrides=ret.overrides, working_dir=ret.working_dir, task_name=ret.task_name,
                                status=JobStatus.FAILED, _return_value=RuntimeError(f"{ret._return_value!r} ({error})")))
        send.close()


def exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class ResilientSlurmLauncher(_Resilient, BaseSubmititLauncher):
    """Submits the sweep as one SLURM array (submitit; the job itself is submitit's `__call__`) and
    collects each job's outcome on its own."""

    _EXECUTOR = "slurm"

    def run_jobs(self, jobs: list[SweepJob]) -> Iterator[tuple[SweepJob, JobReturn | BaseException]]:
        import submitit

        if not jobs:
            return
        params = dict(self.params)
        poll_s = float(params.pop("poll_s", 2.0))
        executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"),
                                         slurm_max_num_timeout=params.pop("max_num_timeout", 0))
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
        state = Singleton.get_state()
        submitted = executor.map_array(
            self, [job.overrides for job in jobs], ["hydra.sweep.dir"] * len(jobs), [job.num for job in jobs],
            [f"job_id_for_{job.num}" for job in jobs], [state] * len(jobs),
        )
        for job, slurm_job in zip(jobs, submitted):
            log.info("\t#%d : SLURM job %s", job.num, slurm_job.job_id)
        waiting = list(zip(jobs, submitted))
        while waiting:
            still = []
            for job, slurm_job in waiting:
                if not slurm_job.done():
                    still.append((job, slurm_job))
                    continue
                try:
                    outcome: JobReturn | BaseException = slurm_job.result()
                except Exception as error:  # noqa: BLE001 - cancelled, killed, timed out, node failure: any
                    outcome = JobDied(f"SLURM job {slurm_job.job_id} ended {slurm_job.state} without a result: "
                                      f"{type(error).__name__}: {str(error)[:800]}")
                yield job, outcome
            waiting = still
            if waiting:
                time.sleep(poll_s)
