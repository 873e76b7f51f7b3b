"""stable-baselines3 on a gymnasium ``VectorEnv`` (the ``recworld[rl]`` extra).

SB3 2.x takes its own ``VecEnv`` API, not gymnasium's: ``reset()`` returns observations
only, ``step`` returns ``dones`` and a list of info dicts, and an ended sub-env is reset in
the same step with its last observation in ``info["terminal_observation"]``.
:class:`SB3VectorEnv` is that API over a gymnasium vector env built with
``autoreset_mode=SAME_STEP`` (such as the natively vectorised Session env), and adds what
SB3's ``Monitor`` would (``info["episode"]`` with return, length and time), so logging and
callbacks see the same as with ``make_vec_env``.  Seeds given with ``seed(s)`` reach the
sub-envs as ``s, s+1, ...`` at the next reset, as in ``DummyVecEnv``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

try:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("RL training needs the 'rl' extra: pip install 'recworld[rl]'") from e

STEP_KEYS = ("user_id", "clicks", "watch_minutes")     # per-env info copied into SB3's info dicts


class SB3VectorEnv(VecEnv):
    """SB3's ``VecEnv`` over a gymnasium ``VectorEnv`` with same-step autoreset."""

    def __init__(self, venv):
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"SB3 needs a vector env with autoreset_mode=SAME_STEP, this one has {mode}")
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._t0 = time.time()
        self._actions = None

    def reset(self):
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options[0] if self._options and self._options[0] else None
        obs, info = self.venv.reset(seed=seeds, options=options)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{k: info[k][i] for k in STEP_KEYS if k in info} for i in range(self.num_envs)]
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        self._returns += rewards
        self._lengths += 1
        ended = info.get("final_info", {})
        now = time.time()
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            src = ended if dones[i] else info
            d: dict[str, Any] = {k: src[k][i] for k in STEP_KEYS if k in src and src[f"_{k}"][i]}
            d["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if dones[i]:
                d["terminal_observation"] = info["final_obs"][i]
                d["episode"] = {"r": round(float(self._returns[i]), 6), "l": int(self._lengths[i]),
                                "t": round(now - self._t0, 6)}
                self._returns[i] = 0.0
                self._lengths[i] = 0
            infos.append(d)
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.venv, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        raise NotImplementedError(f"{type(self).__name__} runs its sub-envs as one vector env: no per-env "
                                  f"{method_name}()")

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
