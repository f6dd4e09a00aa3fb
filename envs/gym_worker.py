"""The worker process of `envs.GymMultiAgentEnv(workers=W)`: a share of the copies, stepped in parallel.

The parent keeps the copies' arrays (`envs.gym_copies.Layout`: actions, obs, state, reward, done flags)
in shared memory; each worker runs a `GymCopies` over its contiguous rows of them. A step is: the parent
writes every copy's actions, sends each worker one byte, each worker steps its copies and writes their
rows, answers one byte, and the parent reads the arrays once every worker has answered. Nothing but
those bytes goes through the connection, so the cost of a step in a worker is the env's own plus one
round trip.

A worker is a fresh interpreter, `python -m envs.gym_worker CONN_FD MEMORY_FD`, for the reasons
`envs.sc2_worker` gives (multiprocessing's spawn re-imports the parent's main module: torch, Lightning
and Hydra for `python -m resq.run`; fork copies a multithreaded parent). It imports numpy, gymnasium
and the env's own module, never torch (`envs/__init__.py` is lazy). It exits when told to, when the
parent's end of the connection closes (the parent exited, crashed or was killed: the kernel closes it),
or after reporting an error.

Protocol: the parent sends one pickled `WorkerConfig`; the worker answers b"k" once its envs are built.
Then each request is one byte, b"r" (reset), b"s" (step) or b"c" (close), answered b"k", or b"e"
followed by the error and its traceback (after which the worker exits).
"""

from __future__ import annotations

import mmap
import os
import socket
import subprocess
import sys
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from envs.gym_copies import GymCopies, Layout, import_env_module, make_env


@dataclass(frozen=True)
class WorkerConfig:
    """A worker's copies: the env (key, constructor kwargs), the global index of its first copy, the
    copies' seeds (seed + b), and the layout of the shared arrays."""

    key: str
    kwargs: dict[str, Any]
    first: int
    seeds: tuple[int, ...]
    layout: Layout


def serve(conn: Connection, memory_fd: int) -> None:
    """A worker's life: build its copies over the shared arrays, then answer one-byte requests."""
    copies = None
    try:
        config: WorkerConfig = conn.recv()
        shared = mmap.mmap(memory_fd, config.layout.nbytes)
        os.close(memory_fd)  # the mapping keeps the memory
        env_id = import_env_module(config.key)
        envs = [make_env(env_id, dict(config.kwargs)) for _ in config.seeds]
        copies = GymCopies(envs, list(config.seeds), config.layout, config.layout.arrays(shared), config.first)
        conn.send_bytes(b"k")
        while True:
            request = conn.recv_bytes()
            if request == b"s":
                copies.step()
            elif request == b"r":
                copies.reset()
            elif request == b"c":
                break
            else:
                raise ValueError(f"unknown request {request!r}")
            conn.send_bytes(b"k")
    except (EOFError, KeyboardInterrupt, ConnectionResetError, BrokenPipeError):
        pass  # the parent went away (or is going)
    except Exception as error:  # noqa: BLE001 - handed to the parent, which raises it with context
        try:
            conn.send_bytes(b"e" + f"{type(error).__name__}: {error}\n{traceback.format_exc()}".encode())
        except OSError:
            pass
    finally:
        if copies is not None:
            try:
                copies.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken env must not hide the first error
                pass
        conn.close()


def start_worker(memory_fd: int) -> tuple[Connection, subprocess.Popen]:
    """Start one worker process that maps `memory_fd`; returns the parent's end of its connection and the
    process (send it a `WorkerConfig` next)."""
    parent, child = socket.socketpair()
    # The worker sees the parent's import path, so an env module the parent can import, the worker can too.
    paths = [p or os.getcwd() for p in sys.path]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    try:
        process = subprocess.Popen([sys.executable, "-m", "envs.gym_worker", str(child.fileno()), str(memory_fd)],
                                   pass_fds=[child.fileno(), memory_fd], stdin=subprocess.DEVNULL, env=environment)
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    return Connection(parent.detach()), process


def main(argv: list[str]) -> None:
    serve(Connection(int(argv[0])), int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
