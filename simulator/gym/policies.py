"""Slate policies for the Gymnasium envs (stable-baselines3, the ``recworld[rl]`` extra).

``CandidateScorer`` is the policy network's feature extractor: one small MLP, shared by all
candidates, scores each candidate from its own features, the user's and the recent history,
so the policy treats candidates alike whatever their position (permutation-equivariant).
``load_policy`` reads a policy saved by ``recworld train``; the ``policy`` recommender serves
one in a world run.  Training lives in ``recworld.simulator.studies.rl``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

try:
    import torch
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("RL training needs the 'rl' extra: pip install 'recworld[rl]'") from e

from recworld.simulator.gym.slate_net import space_from_spec, space_spec  # noqa: E402,F401

ALGOS = ("ppo", "a2c")


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch threads (intra-op), then restore the previous setting.

    The policies here are tiny: their forward passes cost more in thread hand-offs than they
    gain from a second thread, most of all on a busy machine (a batch of 4 observations took
    104-187 ms with torch's default two threads on a shared 2-core machine, 6-7 ms with one).
    ``None`` leaves torch's setting alone."""
    if n is None:
        yield
        return
    if int(n) < 1:
        raise ValueError(f"torch threads must be at least 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
        """Greedy (``deterministic=True``) it shows the S best-scored candidates, best first, as
        the RLlib-trained ``ScorerPolicy`` does; SB3's own greedy action (each slot's argmax)
        would put the same candidate in every slot, since all slots share the scores, and the
        env's duplicate rule would fill the rest with the lowest-numbered candidates.
        Sampling (``deterministic=False``, as in training) is SB3's."""

        def _build(self, lr_schedule) -> None:
            super()._build(lr_schedule)
            n_slots = len(self.action_space.nvec)
            self.action_net = _SlotScores(n_slots, self.features_extractor.code)
            self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

        def _predict(self, observation, deterministic: bool = False):
            if not deterministic:
                return super()._predict(observation, deterministic)
            scores = self.get_distribution(observation).distribution[0].logits
            return torch.topk(scores, len(self.action_space.nvec), dim=-1).indices

    return SlatePolicy


def _algo(name: str):
    from stable_baselines3 import A2C, PPO

    if name not in ALGOS:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGOS)}")
    return {"ppo": PPO, "a2c": A2C}[name]


def policy_kwargs() -> dict:
    return {"features_extractor_class": CandidateScorer, "net_arch": {"pi": [], "vf": [64]}}


class PolicyLoadError(ValueError):
    """A saved policy that cannot be loaded safely (or at all)."""


WEIGHTS = "policy.pt"          # the policy network's weights (a plain tensor dict)
SPEC = "policy.json"           # what was trained, and the spaces to rebuild the network


def save_policy(model, folder: str | Path, meta: dict) -> None:
    """Save ``model``'s policy the safe way: ``policy.pt`` holds only tensors, ``policy.json``
    the algorithm, the env settings and the spaces.  (``model.zip``, SB3's own format, is
    saved beside it by the caller for SB3 users; loading it unpickles Python objects.)"""
    folder = Path(folder)
    torch.save(model.policy.state_dict(), folder / WEIGHTS)
    spec = dict(meta, weights=WEIGHTS, observation_space=space_spec(model.observation_space),
                action_nvec=[int(n) for n in model.action_space.nvec])
    (folder / SPEC).write_text(json.dumps(spec, indent=2))


class SafePolicy:
    """A slate policy rebuilt from ``policy.pt`` + ``policy.json``: ``predict`` as SB3's."""

    def __init__(self, policy, algo: str):
        self.policy, self.algo = policy, algo

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        return self.policy.predict(observation, state, episode_start, deterministic)


def load_policy(path: str | Path, trust_pickle: bool = False):
    """A policy saved by ``recworld train``.

    By default only ``policy.pt`` (tensors, read with ``torch.load(weights_only=True)``) and
    ``policy.json`` are read: no Python object from the file is unpickled, so a crafted file
    cannot run code.  ``trust_pickle=True`` loads SB3's ``model.zip`` instead (its pickled
    parts can run code: only for files you made yourself), returning the SB3 model.
    ``path`` is the ``model.zip`` or ``policy.pt`` file, or their folder.  A policy trained on
    RLlib (``"trainer": "rllib"`` in ``policy.json``) has no ``model.zip``: its ``policy.pt``
    loads into a :class:`~recworld.simulator.gym.slate_net.ScorerPolicy`."""
    p = Path(path).expanduser()
    folder = p if p.is_dir() else p.parent
    if not p.exists():
        raise FileNotFoundError(f"policy file {p} does not exist (train one with `recworld train`)")
    spec_path = folder / SPEC
    spec = json.loads(spec_path.read_text()) if spec_path.exists() else {}
    algo = spec.get("algo", "ppo")
    if spec.get("trainer") == "rllib":        # weights only, whatever trust_pickle says: nothing to unpickle
        return _load_scorer(folder, spec, algo)
    if trust_pickle:
        return _algo(algo).load(p if p.suffix == ".zip" else folder / "model.zip", device="cpu")
    weights = folder / spec.get("weights", WEIGHTS)
    if not weights.exists() or "observation_space" not in spec:
        raise PolicyLoadError(
            f"{folder} has no {WEIGHTS} with its {SPEC} (weights plus a JSON spec, written by `recworld train`). "
            "Loading SB3's model.zip unpickles Python objects, which can run code hidden in the file; set "
            "trust_pickle: true (recommender.trust_pickle) only for a file you made yourself, or retrain")
    from gymnasium import spaces

    obs_space = space_from_spec(spec["observation_space"])
    policy = slate_policy_class()(obs_space, spaces.MultiDiscrete(spec["action_nvec"]), lambda _: 0.0,
                                  **policy_kwargs())
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        policy.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - any unreadable or mismatched file
        raise PolicyLoadError(f"{weights} is not a policy this spec describes: {type(e).__name__}: {e}") from None
    policy.set_training_mode(False)
    return SafePolicy(policy, algo)


def _load_scorer(folder: Path, spec: dict, algo: str):
    from recworld.simulator.gym.slate_net import ScorerPolicy, build_from_spec

    weights = folder / spec.get("weights", WEIGHTS)
    if not weights.exists() or "observation_space" not in spec or "action_nvec" not in spec:
        raise PolicyLoadError(f"{folder}: {SPEC} names an RLlib-trained policy but {weights.name} or the spaces are "
                              "missing; retrain with `recworld train --engine rllib`")
    try:
        net = build_from_spec(spec)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - any unreadable or mismatched file
        raise PolicyLoadError(f"{weights} is not a policy this spec describes: {type(e).__name__}: {e}") from None
    return ScorerPolicy(net, algo)
