"""The worker process of `envs.SMACEnv`: one StarCraft II game answering requests over a socket.

A worker is a fresh interpreter running `python -m envs.sc2_worker FD`, not a multiprocessing child:
multiprocessing's spawn and forkserver re-import the parent's main module in every child (for
`python -m resq.run` that is torch, Lightning and Hydra: seconds and ~300 MB per game), and fork copies
a multithreaded parent. This module imports numpy and the game's factory only (`envs/__init__.py` is
lazy, so not torch).

Protocol: the parent sends (factory, kwargs) once, then ("info" | "reset" | "step" | "close", data)
requests; each is answered ("ok", payload) or ("error", traceback text).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np


def starcraft2_env(**kwargs: Any):
    """The real `smac.env.StarCraft2Env` (imported in the worker process that runs it)."""
    from smac.env import StarCraft2Env

    return StarCraft2Env(**kwargs)


def _observe(env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs = np.asarray(env.get_obs(), dtype=np.float32)  # (N, O)
    state = np.asarray(env.get_state(), dtype=np.float32)  # (S,)
    avail = np.asarray(env.get_avail_actions()).astype(bool)  # (N, A)
    return obs, state, avail


def work(conn, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """One worker: build the env, then answer ("info" | "reset" | "step" | "close", data) requests."""
    env = None
    try:
        env = factory(**kwargs)
        while True:
            command, data = conn.recv()
            if command == "info":
                conn.send(("ok", dict(env.get_env_info())))
            elif command == "reset":
                env.reset()
                conn.send(("ok", _observe(env)))
            elif command == "step":
                reward, terminated, info = env.step(data)
                conn.send(("ok", (float(reward), bool(terminated), dict(info or {}), *_observe(env))))
            elif command == "close":
                break
            else:
                raise ValueError(f"unknown worker command {command!r}")
    except (EOFError, KeyboardInterrupt):
        pass  # the parent went away
    except Exception as error:  # noqa: BLE001 - handed to the parent, which raises it with context
        try:
            conn.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
        except (BrokenPipeError, EOFError, OSError):
            pass
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken game must not hide the first error
                pass
        conn.close()


def start_worker(factory: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[Connection, subprocess.Popen]:
    """Start one worker process for `factory(**kwargs)`; returns the parent's end of its connection."""
    parent, child = socket.socketpair()
    # The worker sees the parent's import path, so a factory the parent can import, the worker can too.
    paths = [p or os.getcwd() for p in sys.path]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    process = subprocess.Popen([sys.executable, "-m", "envs.sc2_worker", str(child.fileno())],
                               pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, env=environment)
    child.close()
    conn = Connection(parent.detach())
    try:
        conn.send((factory, kwargs))
    except Exception as error:
        process.kill()
        process.wait()
        conn.close()
        raise ValueError(f"the SMAC factory {factory!r} cannot be sent to a worker process ({error}): give a "
                         f"module-level class or function, or a functools.partial of one") from error
    return conn, process


def main(argv: list[str]) -> None:
    conn = Connection(int(argv[0]))
    try:
        factory, kwargs = conn.recv()  # unpickling imports the factory's module
    except Exception as error:  # noqa: BLE001 - the parent raises it with context
        conn.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))
        conn.close()
        return
    work(conn, factory, kwargs)


if __name__ == "__main__":
    main(sys.argv[1:])
