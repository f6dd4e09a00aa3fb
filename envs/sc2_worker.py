"""The worker process of `envs.SMACEnv`: one StarCraft II game answering requests over a pipe.

Kept apart from the adapter so that a worker imports numpy and its game only (not torch): with the
`spawn` start method each worker is a fresh interpreter, and eight workers holding torch would cost
gigabytes of memory for nothing.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
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
            except Exception:  # noqa: BLE001 - closing a broken game must not hide the first error
                pass
        conn.close()
