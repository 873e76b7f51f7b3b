"""``recency``: the newest items first."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from recworld.recommenders.base import BaseRecommender, Params
from recworld.simulator.protocols import Slate, SlateRequest


class RecencyRecommender(BaseRecommender):
    """Newest items first (by release year); within a year, the more popular first.

    ``BaseRecommender`` does the rest from ``item_scores``: it drops excluded items, puts
    search matches first, and pages the ranking without repeats.
    """

    name: ClassVar[str] = "recency"

    class Params(Params):          # unknown keys stay errors: the base Params forbids them
        popularity_weight: float = Field(0.5, ge=0, lt=1, description=(
            "weight of the item's popularity (0..1) within a release year; below 1 so it never "
            "outranks a newer year"))

    def fit(self, interactions, catalog) -> None:
        super().fit(interactions, catalog)
        self.score = catalog.year + self.params.popularity_weight * catalog.popularity
        self.slates = 0

    def item_scores(self, request: SlateRequest, candidates: np.ndarray) -> np.ndarray:
        return self.score[candidates]

    def recommend(self, request: SlateRequest) -> Slate:
        self.slates += 1
        return super().recommend(request)

    def stats(self) -> dict:
        return {"slates": self.slates}
