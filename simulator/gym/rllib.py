"""RecWorld's envs and slate policy on RLlib's new API stack (the ``recworld[rllib]`` extra).

RLlib has no default encoder for a ``Dict`` observation of matrices (its PPO fails on
``recworld/Session-v0`` with "No default encoder config for obs space=Dict(...)").
:class:`SlateRLModule` is an RLlib ``RLModule`` that reads the Dict observation itself: it
wraps :class:`~recworld.simulator.gym.slate_net.SlateScorerNet` (one scorer shared by all
candidates) and gives RLlib the ``S * C`` logits of a ``MultiDiscrete([C] * S)`` action
(``TorchMultiCategorical``) and the value estimates PPO needs (``ValueFunctionAPI``).
Greedy inference shows the ``S`` best-scored candidates.

:func:`make_env` is the env creator RLlib's env runners call: with ``num_envs`` in the
context (``gym_env_vectorize_mode="VECTOR_ENTRY_POINT"``) it returns the natively vectorised
Session env (one random stream per sub-env, ``NEXT_STEP`` autoreset, the mode RLlib's
runners expect); otherwise a single env (``World-v0``, or any brain without the batch path,
through RLlib's own ``SYNC`` vectorisation).
"""

from __future__ import annotations

from typing import Any

try:
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.distribution.torch.torch_distribution import TorchMultiCategorical
    from ray.rllib.core.rl_module.apis import ValueFunctionAPI
    from ray.rllib.core.rl_module.torch import TorchRLModule
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"RL training on RLlib needs the 'rllib' extra: pip install 'recworld[rllib]' ({e})") from e

from recworld.simulator.gym.slate_net import SlateScorerNet

SESSION = "recworld/Session-v0"


def make_env(config: dict):
    """RLlib's env creator: ``config`` holds ``env_id``, ``scenario`` (a dict), ``overrides``
    and, from a ``VECTOR_ENTRY_POINT`` runner, ``num_envs``."""
    import gymnasium as gym

    import recworld  # noqa: F401  (registers the environments in this worker)

    env_id = config.get("env_id", SESSION)
    kw = {"scenario": config["scenario"], "overrides": list(config.get("overrides") or [])}
    if "num_envs" in config:
        if env_id != SESSION:
            raise ValueError(f"only {SESSION} is natively vectorised; {env_id} runs with gym_env_vectorize_mode='sync'")
        return gym.make_vec(env_id, num_envs=int(config["num_envs"]), vectorization_mode="vector_entry_point",
                            rng="per_env", **kw)
    return gym.make(env_id, **kw)


class SlateRLModule(TorchRLModule, ValueFunctionAPI):
    """The slate policy as an RLlib RLModule (``model_config``: ``hidden``, ``code``)."""

    def setup(self):
        cfg = self.model_config or {}
        nvec = [int(n) for n in self.action_space.nvec]
        if len(set(nvec)) != 1:
            raise ValueError(f"the slate policy needs MultiDiscrete([C] * S) actions, got nvec {nvec}")
        self.net = SlateScorerNet.for_spaces(self.observation_space, len(nvec), int(cfg.get("hidden", 64)),
                                             int(cfg.get("code", 4)))
        self.action_dist_cls = TorchMultiCategorical.get_partial_dist_cls(input_lens=nvec)

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        scores = self.net.scores(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: self.net.logits(scores)}

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        with torch.no_grad():
            scores = self.net.scores(batch[Columns.OBS])
            return {Columns.ACTION_DIST_INPUTS: self.net.logits(scores), Columns.ACTIONS: self.net.greedy(scores)}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        codes = self.net.codes(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: self.net.logits(self.net.scores(None, codes)), Columns.EMBEDDINGS: codes}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None):
        return self.net.value(batch[Columns.OBS], embeddings)
