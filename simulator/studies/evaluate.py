"""Offline evaluation: leave-last-out on a MovieLens-format folder.

Each user's last interaction (by timestamp) is held out; every recommender is fitted on the
rest and asked for its top-k for each user, excluding what that user already consumed.
Reported: NDCG@k, Recall@k (the held-out item is in the top-k) and catalog coverage (share of
items appearing in any top-k list).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

NOT_OFFLINE = {"policy"}          # needs a trained model and a world to observe


def leave_last_out(interactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): test holds each user's last interaction, for users with at least two."""
    df = interactions.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    n = df.groupby("user_id")["item"].transform("size")
    last = df.groupby("user_id").cumcount(ascending=False) == 0
    test = df[last & (n >= 2)]
    train = df.drop(test.index)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def evaluate_offline(path=None, recommenders=None, k: int = 10, max_users: int | None = None, seed: int = 0,
                     progress: bool = False, llm_users: int = 20, llm: dict | None = None,
                     params: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per recommender.  Recommenders that need an LLM are scored on a random sample
    of ``llm_users`` of the test users (``llm`` = a scenario ``llm`` section as a dict; default:
    the embedded model); ``params`` gives a recommender's parameters by name."""
    from recworld.simulator import registry
    from recworld.simulator.data.sources import bundled_movielens_path, load_movielens

    ml = load_movielens(path or bundled_movielens_path())
    catalog = ml.catalog
    train, test = leave_last_out(ml.ratings)
    if max_users is not None and max_users < len(test):
        test = test.sample(max_users, random_state=seed).sort_values("user_id").reset_index(drop=True)
    names = list(recommenders) if recommenders else [n for n in registry.available("recommenders") if n not in NOT_OFFLINE]
    seen = {int(u): g.to_numpy(np.int64) for u, g in train.groupby("user_id")["item"]}
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    rows = []
    service = None
    try:
        for name in names:
            cls = registry.load("recommenders", name)
            kw, users_df = {}, test
            if cls.needs_llm:
                if service is None:
                    from recworld.simulator.llm.service import service_from_scenario
                    from recworld.simulator.scenario import LLMSection

                    service = service_from_scenario(LLMSection.model_validate(llm or {}))
                kw["llm"] = service
                if llm_users < len(test):
                    users_df = test.sample(llm_users, random_state=seed).sort_values("user_id").reset_index(drop=True)
            rows.append(_score(name, cls((params or {}).get(name), rng=np.random.default_rng(seed), **kw), train,
                               catalog, users_df, seen, k, discount, progress))
    finally:
        if service is not None:
            service.close()
    return pd.DataFrame(rows).sort_values(f"ndcg@{k}", ascending=False).reset_index(drop=True)


def _score(name, rec, train, catalog, test, seen, k, discount, progress) -> dict:
    from recworld.simulator.protocols import SlateRequest
    from recworld.simulator.output.progress import progress_bar

    t0 = time.perf_counter()
    rec.fit(train, catalog)
    t1 = time.perf_counter()
    ndcg, hits, shown = [], [], set()
    users = zip(test["user_id"].to_numpy(np.int64), test["item"].to_numpy(np.int64))
    for j, (uid, held) in enumerate(progress_bar(list(users), desc=name, enabled=progress, leave=False)):
        req = SlateRequest(user=j, k=k, exclude=seen.get(int(uid), np.empty(0, np.int64)), user_id=int(uid))
        top = np.asarray(rec.recommend(req).items)
        shown.update(top.tolist())
        at = np.flatnonzero(top == held)
        hits.append(len(at) > 0)
        ndcg.append(discount[at[0]] if len(at) else 0.0)
    return {"recommender": name, f"ndcg@{k}": float(np.mean(ndcg)), f"recall@{k}": float(np.mean(hits)),
            "coverage": len(shown) / len(catalog), "users": len(test),
            "fit_s": round(t1 - t0, 3), "eval_s": round(time.perf_counter() - t1, 3)}


def write_results(table: pd.DataFrame, out: str | Path, meta: dict, overwrite: bool = False) -> Path:
    """``offline_eval.{csv,json,md}`` in a new output folder ``out`` (see ``prepare_out``)."""
    from recworld.simulator.output.folders import prepare_out

    out = prepare_out(out, overwrite, "evaluate")
    table.to_csv(out / "offline_eval.csv", index=False)
    (out / "offline_eval.json").write_text(json.dumps({**meta, "results": table.to_dict(orient="records")}, indent=2))
    (out / "offline_eval.md").write_text(markdown_table(table))
    return out


def markdown_table(table: pd.DataFrame) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"
