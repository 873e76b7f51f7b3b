"""A slate policy network in plain PyTorch, and the policy it serves once trained.

``SlateScorerNet`` is the network that ``recworld train --engine rllib`` trains (inside an
RLlib ``RLModule``, see ``recworld.simulator.gym.rllib``): one small MLP, shared by all
candidates, scores each candidate from its own features, the user's and the mean of the
recent history (the same permutation-equivariant design as the stable-baselines3 policy's
``CandidateScorer``).  Every slot of the ``MultiDiscrete([C] * S)`` action draws from the
same softmax over the scores; acting greedily, the policy shows the ``S`` best-scored
candidates (distinct, best first).  A value head reads all candidates' codes.

``ScorerPolicy`` rebuilds the network from ``policy.pt`` (plain tensors) and ``policy.json``
and acts like a stable-baselines3 model (``predict``), so the ``policy`` recommender and the
evaluation loop serve it without Ray, RLlib or stable-baselines3.  Only torch is needed.
"""

from __future__ import annotations

import numpy as np
import torch

KEYS = ("candidates", "user", "history")


class SlateScorerNet(torch.nn.Module):
    """(B, C, F) candidates + (B, U) user + (B, H, G) history -> (B, C) scores and (B,) values."""

    def __init__(self, n_candidates: int, n_features: int, n_user: int, n_history_features: int,
                 slate_size: int, hidden: int = 64, code: int = 4):
        super().__init__()
        self.C, self.S, self.code = int(n_candidates), int(slate_size), int(code)
        self.scorer = torch.nn.Sequential(
            torch.nn.Linear(n_features + n_user + n_history_features, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, code),
        )
        self.temperature = torch.nn.Parameter(torch.ones(1))
        self.value_head = torch.nn.Sequential(torch.nn.Linear(self.C * code, hidden), torch.nn.Tanh(),
                                              torch.nn.Linear(hidden, 1))

    @classmethod
    def for_spaces(cls, observation_space, slate_size: int, hidden: int = 64, code: int = 4) -> SlateScorerNet:
        """The network for an env's Dict observation space (``candidates``, ``user``, ``history``)."""
        missing = [k for k in KEYS if k not in getattr(observation_space, "spaces", {})]
        if missing:
            raise ValueError(f"the slate policy needs the Dict observation of recworld's envs (keys {KEYS}); "
                             f"this space lacks {missing} (was the env made with flatten=True? leave it False)")
        C, F = observation_space["candidates"].shape
        return cls(C, F, observation_space["user"].shape[0], observation_space["history"].shape[1], slate_size,
                   hidden, code)

    def codes(self, obs) -> torch.Tensor:
        cand, user, hist = obs["candidates"].float(), obs["user"].float(), obs["history"].float().mean(dim=1)
        ctx = torch.cat([user, hist], dim=-1).unsqueeze(1).expand(-1, cand.shape[1], -1)
        return self.scorer(torch.cat([cand, ctx], dim=-1))                  # (B, C, code)

    def scores(self, obs, codes: torch.Tensor | None = None) -> torch.Tensor:
        codes = self.codes(obs) if codes is None else codes
        return codes[..., 0] * self.temperature                              # (B, C)

    def logits(self, scores: torch.Tensor) -> torch.Tensor:
        """Every slot's logits: the candidates' scores, repeated over the S slots -> (B, S * C)."""
        return scores.repeat(1, self.S)

    def value(self, obs, codes: torch.Tensor | None = None) -> torch.Tensor:
        codes = self.codes(obs) if codes is None else codes
        return self.value_head(codes.flatten(1)).squeeze(-1)                 # (B,)

    def greedy(self, scores: torch.Tensor) -> torch.Tensor:
        """The S best-scored candidates, best first -> (B, S) positions."""
        return torch.topk(scores, self.S, dim=-1).indices


class ScorerPolicy:
    """A trained ``SlateScorerNet`` acting in an env or a world: ``predict`` as SB3's models.

    Greedy (``deterministic=True``): the S best-scored candidates.  Otherwise each slot is
    drawn from the softmax over the scores (with the env's duplicate rule applied later)."""

    def __init__(self, net: SlateScorerNet, algo: str = "ppo", seed: int = 0):
        self.net, self.algo = net.eval(), algo
        self._gen = torch.Generator().manual_seed(int(seed))

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        single = np.asarray(observation["candidates"]).ndim == 2
        obs = {k: torch.as_tensor(np.asarray(observation[k], dtype=np.float32)) for k in KEYS}
        if single:
            obs = {k: v.unsqueeze(0) for k, v in obs.items()}
        with torch.no_grad():
            scores = self.net.scores(obs)
            if deterministic:
                action = self.net.greedy(scores)
            else:
                probs = torch.softmax(scores, dim=-1)
                action = torch.multinomial(probs, self.net.S, replacement=True, generator=self._gen)
        action = action.numpy().astype(np.int64)
        return (action[0] if single else action), state


def space_spec(space) -> dict:
    """A JSON description of the env's Dict-of-Box observation space (enough to rebuild it)."""
    out = {}
    for key, box in space.spaces.items():
        low, high = np.asarray(box.low), np.asarray(box.high)
        out[key] = {"shape": list(box.shape), "dtype": str(box.dtype), "low": float(low.min()),
                    "high": float(high.max())}
    return out


def space_from_spec(spec: dict):
    from gymnasium import spaces

    return spaces.Dict({k: spaces.Box(low=v["low"], high=v["high"], shape=tuple(v["shape"]), dtype=np.dtype(v["dtype"]))
                        for k, v in spec.items()})


def net_spec(net: SlateScorerNet) -> dict:
    """What ``policy.json`` records to rebuild ``net`` (besides the spaces)."""
    return {"class": "SlateScorerNet", "hidden": int(net.scorer[0].out_features), "code": net.code}


def build_from_spec(spec: dict) -> SlateScorerNet:
    """The (untrained) network a ``policy.json`` describes."""
    obs_space = space_from_spec(spec["observation_space"])
    nvec = spec["action_nvec"]
    net = spec.get("net", {})
    return SlateScorerNet.for_spaces(obs_space, len(nvec), int(net.get("hidden", 64)), int(net.get("code", 4)))
