"""``policy``: a policy trained with ``recworld train`` serving as the recommender of a world run.

For each request it offers the policy the same observation the Gymnasium envs give (C
candidate items: search matches first for a query, then random unseen items), and shows the
slate the policy picks.  The candidate count and slate size come from the policy's
``policy.json``; the world's ``session.page_size`` must equal that slate size.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from recworld.simulator.gym.features import Featurizer, sample_candidates, slate_from_action
from recworld.simulator.protocols import Slate, SlateRequest

from .base import BaseRecommender, Params


class PolicyRecommender(BaseRecommender):
    name: ClassVar[str] = "policy"

    class Params(Params):
        path: str = Field(description="model.zip, policy.pt or their folder, written by `recworld train`")
        trust_pickle: bool = Field(False, description=(
            "load SB3's model.zip itself, unpickling its Python objects (they can run code): only for files you "
            "made yourself; by default the weights-only policy.pt beside it is loaded"))

    def __init__(self, params=None, *, rng=None, llm=None):
        super().__init__(params, rng=rng, llm=llm)
        p = Path(self.params.path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"recommender.path: policy {p} does not exist (train one with `recworld train`)")
        meta_path = (p if p.is_dir() else p.parent) / "policy.json"
        self.meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        env = self.meta.get("env", {})
        self.C = int(env.get("candidates", 20))
        self.S = int(env.get("slate_size", 5))
        self.H = int(env.get("history", 5))
        from recworld.simulator.gym.policies import load_policy

        self.model = load_policy(p, trust_pickle=self.params.trust_pickle)
        self.featurizer = None
        self.states = None

    def attach(self, world) -> None:
        """Called by the world builder: the policy observes users through their state."""
        self.featurizer = Featurizer(world.catalog, world.population, self.C, self.H)
        self.states = world.states

    def recommend(self, request: SlateRequest) -> Slate:
        if self.featurizer is None:
            raise RuntimeError("the policy recommender must be attached to a world (build_world does it)")
        if request.k != self.S:
            raise ValueError(f"the policy fills slates of {self.S} items but session.page_size is {request.k}; "
                             f"set session.page_size={self.S}")
        st = self.states[request.user]
        first = self.catalog.search(request.query) if request.query else None
        exclude = set(request.exclude.tolist()) | st.seen
        cand = sample_candidates(self.rng, len(self.catalog), exclude, self.C, first)
        action, _ = self.model.predict(self.featurizer.observe(st, cand), deterministic=True)
        return Slate(cand[slate_from_action(action, self.C)])     # random candidates: no propensities

    def rank_candidates(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        """The policy's slate of ``S`` items drawn from the given candidates, in slot order."""
        others = np.setdiff1d(np.arange(len(self.catalog)), candidates)
        return self.recommend(replace(request, k=self.S, page=0, query=None, exclude=others)).items

    def item_scores(self, request, candidates):  # not a scoring model: it picks whole slates
        raise NotImplementedError("the policy recommender picks whole slates; it has no per-item scores")
