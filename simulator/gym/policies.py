"""Slate policies for the Gymnasium envs (stable-baselines3, the ``recworld[rl]`` extra).

``CandidateScorer`` is the policy network's feature extractor: one small MLP, shared by all
candidates, scores each candidate from its own features, the user's and the recent history,
so the policy treats candidates alike whatever their position (permutation-equivariant).
``load_policy`` reads a policy saved by ``recworld train``; the ``policy`` recommender serves
one in a world run.  Training lives in ``recworld.simulator.studies.rl``.
"""

from __future__ import annotations

import json
from pathlib import Path

try:
    import torch
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("RL training needs the 'rl' extra: pip install 'recworld[rl]'") from e

ALGOS = ("ppo", "a2c")


class CandidateScorer(BaseFeaturesExtractor):
    """(B, C, F) candidates + (B, U) user + (B, H, G) history -> (B, C * d) per-candidate codes."""

    def __init__(self, observation_space, hidden: int = 64, code: int = 4):
        C, F = observation_space["candidates"].shape
        U = observation_space["user"].shape[0]
        G = observation_space["history"].shape[1]
        super().__init__(observation_space, features_dim=C * code)
        self.code = code
        self.net = torch.nn.Sequential(
            torch.nn.Linear(F + U + G, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, code),
        )

    def forward(self, obs):
        cand, user, hist = obs["candidates"], obs["user"], obs["history"].mean(dim=1)
        C = cand.shape[1]
        ctx = torch.cat([user, hist], dim=-1).unsqueeze(1).expand(-1, C, -1)
        return self.net(torch.cat([cand, ctx], dim=-1)).flatten(1)


class _SlotScores(torch.nn.Module):
    """Every slot's logits are the candidates' scores (channel 0 of each candidate's code)."""

    def __init__(self, n_slots: int, code: int):
        super().__init__()
        self.n_slots, self.code = n_slots, code
        self.temperature = torch.nn.Parameter(torch.ones(1))

    def forward(self, latent):
        scores = latent[:, 0:: self.code] * self.temperature
        return scores.repeat(1, self.n_slots)


def slate_policy_class():
    """A MultiInputActorCriticPolicy whose action head shares one candidate scorer across slots."""
    from stable_baselines3.common.policies import MultiInputActorCriticPolicy

    class SlatePolicy(MultiInputActorCriticPolicy):
        def _build(self, lr_schedule) -> None:
            super()._build(lr_schedule)
            n_slots = len(self.action_space.nvec)
            self.action_net = _SlotScores(n_slots, self.features_extractor.code)
            self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    return SlatePolicy


def _algo(name: str):
    from stable_baselines3 import A2C, PPO

    if name not in ALGOS:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGOS)}")
    return {"ppo": PPO, "a2c": A2C}[name]


def policy_kwargs() -> dict:
    return {"features_extractor_class": CandidateScorer, "net_arch": {"pi": [], "vf": [64]}}


def load_policy(path: str | Path):
    """A saved model (``model.zip`` from ``recworld train``)."""
    p = Path(path)
    meta_path = p.parent / "policy.json"           # written beside model.zip by train_and_evaluate
    algo = json.loads(meta_path.read_text())["algo"] if meta_path.exists() else "ppo"
    if not p.exists():
        raise FileNotFoundError(f"policy file {p} does not exist (train one with `recworld train`)")
    return _algo(algo).load(p, device="cpu")
