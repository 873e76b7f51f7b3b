"""What an attack does inside the world: how far the word spreads, and an A/B over seeds.

``spread(run_folder, target_name)`` reads one run folder and says how far word of the
target went among ordinary users (everyone but the attackers, the users of a ``shill``
group; ``attackers=`` overrides who they are):

- **heard of, by hop**: users who heard of the target (``heard`` events, from a chat or a
  post), grouped by their distance in the social graph from the nearest attacker (1 = a
  friend of an attacker), beside how many users each hop has;
- **the chain of hearing**: each ``heard`` event names who told the user (``other_id``); a
  user told by an attacker is at chain hop 1, one told by a user at chain hop k is at k + 1,
  and one told by a user who found the target on their own starts no chain (``independent``);
- **what ordinary users said**: chats they started and posts they wrote or re-posted that
  name the target;
- **what they did**: the target's impressions, share of impressions and mean slot; watches
  (purchases in a shop) and those that followed hearing of it; ratings given after purchase,
  the target's mean against the other items' (does the promoted item disappoint?);
- **leaving**: browsing that ended because the user chose to leave (``leave`` events with
  reason ``done``) and users who were active in the run's first half but not in its second
  (the world never retires a user, so this is quiet, not gone).

``world_ab(scenario, arms, seeds, out)`` runs every arm (``--set``-style overrides of the
scenario) with the same seeds, measures each run with ``spread`` on the same users (when an
arm has attackers, their seats are left out of every arm's measurement at that seed, so the
arms compare the same people) and returns per arm and per paired difference against the
first arm the mean and 95% t interval over seeds.  A run that fails is recorded and the
others go on.  ``world_ab_report`` and ``world_ab_plots`` write the table and the figures;
``attackers_override`` makes the override that adds a shill group to a scenario.
"""

from __future__ import annotations

import json
import logging
import math
import re
import traceback
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("recworld.sts")

#: graph hops reported one by one; farther ones are pooled
MAX_HOP = 3
#: the per-run figures world_ab summarises, with what each means
METRICS = {
    "target_impressions": "slots where ordinary users were shown the target",
    "target_impression_share": "the target's share of all impressions to ordinary users",
    "target_mean_slot": "mean slot (1 = first) of the target when shown",
    "target_watches": "purchases (watches) of the target by ordinary users",
    "target_watch_share": "the target's share of ordinary users' watches",
    "target_mean_rating": "mean rating ordinary users gave the target after purchase",
    "others_mean_rating": "mean rating of every other item",
    "target_rating_gap": "target's mean rating minus the other items'",
    "target_heard_of": "ordinary users who heard of the target",
    "heard_then_watched": "ordinary users who heard of the target and then bought it",
    "heard_from_attackers": "ordinary users told by an attacker (chain hop 1)",
    "heard_chain_2plus": "ordinary users told by someone who had been told (chain hop 2 and more)",
    "chats_naming_target": "chats ordinary users started that name the target",
    "posts_about_target": "posts and re-posts by ordinary users about the target",
    "attacker_chats": "chats attackers started that name the target",
    "attacker_posts": "posts and re-posts by attackers about the target",
    "leave_by_choice_share": "share of browsing that ended because the user chose to leave",
    "quiet_late_share": "share of ordinary users active in the first half but not the second",
    **{f"heard_hop{h}": f"ordinary users at graph distance {h} from an attacker who heard of the target"
       for h in range(1, MAX_HOP + 1)},
    f"heard_hop{MAX_HOP + 1}plus": f"the same at distance {MAX_HOP + 1} or more (or unreachable)",
}
#: the columns of the report's main table
TABLE = ["target_impression_share", "target_mean_slot", "target_watches", "target_mean_rating", "target_rating_gap",
         "target_heard_of", "heard_then_watched", "heard_from_attackers", "chats_naming_target",
         "posts_about_target", "leave_by_choice_share", "quiet_late_share"]
HOPS = [f"heard_hop{h}" for h in range(1, MAX_HOP + 1)] + [f"heard_hop{MAX_HOP + 1}plus"]


# ----------------------------------------------------------------------------- who the attackers are


def _is_shill(brain_name: str) -> bool:
    from recworld.agents.shill import ShillBrain
    from recworld.simulator import registry

    try:
        cls = registry.load("brains", brain_name)
    except Exception:  # noqa: BLE001 - an unknown brain is not an attacker
        return False
    return isinstance(cls, type) and issubclass(cls, ShillBrain)


def group_members(scenario, n_users: int) -> list[list[int]]:
    """Per ``population.groups`` entry, the user indices it takes (as the world builder
    assigns them: one seeded permutation, each group the next ``round(share * n)`` users)."""
    from recworld.simulator.build import seed_streams
    from recworld.simulator.scenario import load_scenario

    scn = load_scenario(scenario)
    if not scn.population.groups:
        return []
    order = np.random.default_rng(seed_streams(scn)["groups"]).permutation(n_users)
    out, start = [], 0
    for g in scn.population.groups:
        size = round(g.share * n_users)
        out.append(sorted(order[start:start + size].tolist()))
        start += size
    return out


def attacker_indices(scenario, n_users: int) -> list[int]:
    """User indices of every shill group of the scenario."""
    from recworld.simulator.scenario import load_scenario

    scn = load_scenario(scenario)
    members = group_members(scn, n_users)
    return sorted(u for g, m in zip(scn.population.groups, members) if _is_shill(g.brain.name) for u in m)


def attackers_override(scenario, share: float = 0.1, target: str | None = None, **params) -> str:
    """The ``population.groups=...`` override that adds a shill group (``share`` of the users,
    promoting ``target``, default the scenario's ``sts.target``) after the scenario's own
    groups, which keep their users."""
    from recworld.simulator.scenario import load_scenario

    scn = load_scenario(scenario)
    target = target or (scn.sts.target if scn.sts is not None else None)
    if not target:
        raise ValueError("attackers_override: give target= (the scenario has no sts.target)")
    groups = [g.model_dump(mode="json") for g in scn.population.groups]
    groups.append({"share": share, "brain": {"name": "shill", "target": target, **params}})
    return "population.groups=" + json.dumps(groups, ensure_ascii=False)


def _social_graph(scn, user_ids: np.ndarray):
    """The run's social graph, rebuilt from its scenario as the world builder built it."""
    from recworld.simulator.build import seed_streams
    from recworld.simulator.data.social import SocialGraph

    sc = scn.social
    if sc.graph == "edgelist":
        return SocialGraph.from_edgelist(sc.path, user_ids, directed=sc.directed)
    return SocialGraph.generate(sc.graph, len(user_ids), np.random.default_rng(seed_streams(scn)["graph"]),
                                degree=sc.degree, rewire=sc.rewire)


def graph_hops(friends: list, sources: Iterable[int]) -> np.ndarray:
    """Breadth-first distance of every user index from the nearest source (-1: unreachable)."""
    dist = np.full(len(friends), -1, dtype=np.int64)
    queue = deque()
    for s in sources:
        dist[s] = 0
        queue.append(s)
    while queue:
        u = queue.popleft()
        for v in np.asarray(friends[u]).tolist():
            if dist[v] < 0:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


# ----------------------------------------------------------------------------- spread


def _target_id(items: pd.DataFrame, name: str) -> int:
    want = name.strip().lower()
    titles = items["title"].astype(str).str.strip().str.lower()
    hit = (titles == want) | (titles.str.replace(r"\s*\(\d{4}\)$", "", regex=True) == want)
    if not hit.any():
        raise ValueError(f"target {name!r} is not an item of the run (it has {len(items)} items, e.g. "
                         f"{items['title'].iloc[0]!r})")
    return int(items.loc[hit, "item_id"].iloc[0])


def _names(texts: pd.Series, name: str) -> pd.Series:
    low = re.sub(r"\s*\(\d{4}\)$", "", name.strip()).lower()
    return texts.map(lambda t: isinstance(t, str) and low in t.lower()).astype(bool)


def _mean(x: pd.Series) -> float | None:
    return float(x.mean()) if len(x) else None


def spread(run_folder, target_name: str, attackers: Iterable[int] | None = None,
           exclude: Iterable[int] | None = None) -> dict:
    """How far word of ``target_name`` spread in one run (see the module's docstring).

    ``attackers``: user ids to treat as attackers, the sources hops and chains start from
    (default: the run's shill groups, rebuilt from its ``scenario.yaml``); ``exclude``: more
    user ids to leave out of the measurement besides them (``world_ab`` leaves out the same
    users in every arm).  Every figure counts the remaining, ordinary users only.  Returns the
    flat figures of ``METRICS`` plus ``by_hop`` (per graph hop: users, heard, share),
    ``chain`` (heard-of by chain hop and channel) and ``attackers``/``ordinary_users``.
    """
    from recworld.simulator.output.metrics import impressions
    from recworld.simulator.run import load_run
    from recworld.simulator.scenario import load_scenario

    run = load_run(run_folder)
    if run.users is None or run.items is None:
        raise FileNotFoundError(f"{run_folder} has no users.parquet / items.parquet: not a finished run folder")
    ev, users, items = run.events, run.users, run.items
    scn = load_scenario(run.scenario)
    user_ids = users["user_id"].to_numpy(dtype=np.int64)
    index = {int(u): k for k, u in enumerate(user_ids.tolist())}
    att = None if attackers is None else [int(a) for a in attackers]
    extra = [int(u) for u in (exclude or [])]
    unknown = [a for a in (att or []) + extra if a not in index]
    if unknown:
        raise ValueError(f"attackers or excluded users {unknown[:5]} are not users of the run")
    att_idx = attacker_indices(scn, len(user_ids)) if att is None else sorted(index[a] for a in att)
    att_ids = set(user_ids[att_idx].tolist())
    left_out = att_ids | set(extra)
    tid = _target_id(items, target_name)
    title = str(items.loc[items["item_id"] == tid, "title"].iloc[0])
    ordinary = ~ev["user_id"].isin(left_out)
    kind = ev["kind"]
    n_ord = len(user_ids) - len(left_out & set(index))

    # exposure
    imp = impressions(ev[ordinary & (kind == "slate")])
    shown = imp[imp["item_id"] == tid]
    out: dict = {"target": title, "target_id": tid, "users": len(user_ids), "ordinary_users": int(n_ord),
                 "attackers": sorted(att_ids)}
    out["target_impressions"] = len(shown)
    out["target_impression_share"] = len(shown) / len(imp) if len(imp) else None
    out["target_mean_slot"] = float(shown["position"].mean() + 1) if len(shown) else None

    # purchases and ratings
    watches = ev[ordinary & (kind == "watch")]
    rates = ev[ordinary & (kind == "rate")]
    tw = watches[watches["item_id"] == tid]
    out["target_watches"] = len(tw)
    out["target_watch_share"] = len(tw) / len(watches) if len(watches) else None
    t_r, o_r = rates.loc[rates["item_id"] == tid, "value"], rates.loc[rates["item_id"] != tid, "value"]
    out["target_mean_rating"], out["others_mean_rating"] = _mean(t_r), _mean(o_r)
    out["target_rating_gap"] = (out["target_mean_rating"] - out["others_mean_rating"]
                                if len(t_r) and len(o_r) else None)
    out["target_ratings"] = {str(int(k)): int(v) for k, v in t_r.round().value_counts().sort_index().items()}

    # hearing of it: who, from whom, how far
    heard = ev[ordinary & (kind == "heard") & (ev["item_id"] == tid)].sort_values("time", kind="stable")
    heard = heard.drop_duplicates("user_id")
    out["target_heard_of"] = len(heard)
    first_watch = tw.groupby("user_id")["time"].min()
    after = heard["user_id"].map(first_watch)
    out["heard_then_watched"] = int((after.notna() & (after >= heard["time"])).sum())
    out["heard_watch_rate"] = out["heard_then_watched"] / len(heard) if len(heard) else None
    # rating of buyers who had heard of it first vs the other buyers
    heard_time = heard.set_index("user_id")["time"]
    t_rates = rates[rates["item_id"] == tid]
    was_told = t_rates["user_id"].map(heard_time).le(t_rates["time"]).fillna(False).astype(bool)
    out["rating_told_buyers"] = _mean(t_rates.loc[was_told, "value"])
    out["rating_other_buyers"] = _mean(t_rates.loc[~was_told, "value"])

    chain = _chain(heard, att_ids)
    hops = pd.Series([chain[u] for u in heard["user_id"].tolist()], dtype="float64")
    out["heard_from_attackers"] = int((hops == 1).sum())
    out["heard_chain_2plus"] = int((hops >= 2).sum())
    out["chain"] = {"by_hop": {str(int(h)): int(c) for h, c in hops.dropna().value_counts().sort_index().items()},
                    "independent": int(hops.isna().sum()),
                    "via": {str(k): int(v) for k, v in heard["text"].value_counts().items()},
                    "longest": int(hops.max()) if hops.notna().any() else 0}

    if att_idx:
        graph = _social_graph(scn, user_ids)
        dist = graph_hops(graph.friends, att_idx)
        heard_idx = {index[int(u)] for u in heard["user_id"].tolist()}
        gone = {index[u] for u in left_out if u in index}
        by_hop = {}
        for h in range(1, MAX_HOP + 2):
            at = (dist == h) if h <= MAX_HOP else ((dist > MAX_HOP) | (dist < 0))
            members = [m for m in np.flatnonzero(at).tolist() if m not in gone]
            k = sum(1 for m in members if m in heard_idx)
            key = str(h) if h <= MAX_HOP else f"{MAX_HOP + 1}+"
            by_hop[key] = {"users": len(members), "heard": k, "share": k / len(members) if members else None}
            out[HOPS[h - 1]] = k
        out["by_hop"] = by_hop
    else:
        out["by_hop"] = {}
        for h in HOPS:
            out[h] = None

    # what was said
    chats = ev[kind == "chat"]
    names_target = _names(chats["text"], title) | chats["items"].map(
        lambda xs: xs is not None and tid in list(xs))
    out["chats_naming_target"] = int((names_target & ~chats["user_id"].isin(left_out)).sum())
    out["attacker_chats"] = int((names_target & chats["user_id"].isin(att_ids)).sum())
    posts = ev[(kind == "post") & (ev["item_id"] == tid)]
    by_att, mine = posts["user_id"].isin(att_ids), ~posts["user_id"].isin(left_out)
    out["posts_about_target"] = int(mine.sum())
    out["reposts_about_target"] = int((mine & (posts["value"] > 0)).sum())
    out["attacker_posts"] = int(by_att.sum())
    reads = ev[ordinary & (kind == "read_post") & (ev["item_id"] == tid)]
    out["target_post_reads"] = len(reads)

    # leaving
    leaves = ev[ordinary & (kind == "leave")]
    out["leave_by_choice_share"] = float((leaves["text"] == "done").mean()) if len(leaves) else None
    out["leave_reasons"] = {str(k): int(v) for k, v in leaves["text"].value_counts().items()}
    starts = ev[ordinary & (kind == "session_start")]
    end = float(run.metrics.get("simulated_days") or 0) * 1440.0 or (float(ev["time"].max()) if len(ev) else 0.0)
    early = set(starts.loc[starts["time"] < end / 2, "user_id"].tolist())
    late = set(starts.loc[starts["time"] >= end / 2, "user_id"].tolist())
    out["quiet_late_share"] = len(early - late) / len(early) if early else None
    out["sessions_per_user"] = len(starts) / n_ord if n_ord else None
    return out


def _chain(heard: pd.DataFrame, att_ids: set) -> dict[int, int | None]:
    """Per user who heard (``heard`` events of one item, in time order, one per user): the
    chain hop (1 = told by an attacker, k + 1 = told by a user at chain hop k), None when the
    teller found the item on their own."""
    chain: dict[int, int | None] = {}
    for u, src in zip(heard["user_id"].tolist(), heard["other_id"].tolist()):
        src = None if pd.isna(src) else int(src)
        if src in att_ids:
            chain[int(u)] = 1
        elif src is not None and chain.get(src) is not None:
            chain[int(u)] = chain[src] + 1
        else:
            chain[int(u)] = None
    return chain


def item_path(run_folder, target_name: str, attackers: Iterable[int] | None = None,
              shown: bool = False) -> pd.DataFrame:
    """The target's path through the users of one run, one row per event about it, in time
    order: chats naming it, posts and re-posts about it, reads of those posts, ``heard``
    (with the chain hop), searches naming it, watches and ratings; ``shown``: also every page
    that showed it (``slate``, with its slot).  Columns: ``time``, ``user_id``, ``attacker``,
    ``graph_hop`` (the user's distance from the nearest attacker; missing without attackers
    or when unreachable), ``event``, ``other_id`` (chat partner, post author or who told),
    ``chain_hop``, ``value`` (rating, post hop, slot), ``text``.  ``attackers`` as in ``spread``."""
    from recworld.simulator.run import load_run
    from recworld.simulator.scenario import load_scenario

    run = load_run(run_folder)
    ev, users, items = run.events, run.users, run.items
    scn = load_scenario(run.scenario)
    user_ids = users["user_id"].to_numpy(dtype=np.int64)
    index = {int(u): k for k, u in enumerate(user_ids.tolist())}
    att_idx = attacker_indices(scn, len(user_ids)) if attackers is None else sorted(index[int(a)] for a in attackers)
    att_ids = set(user_ids[att_idx].tolist())
    tid = _target_id(items, target_name)
    title = str(items.loc[items["item_id"] == tid, "title"].iloc[0])
    kind = ev["kind"]
    about = (ev["item_id"] == tid) & kind.isin(["heard", "watch", "rate", "post", "read_post"])
    chats = (kind == "chat") & (_names(ev["text"], title) | ev["items"].map(
        lambda xs: xs is not None and tid in list(xs)))
    searches = (kind == "search") & _names(ev["text"], title)
    slates = (kind == "slate") & ev["items"].map(lambda xs: xs is not None and tid in list(xs)) if shown \
        else pd.Series(False, index=ev.index)
    rows = ev[about | chats | searches | slates].sort_values("time", kind="stable")
    heard = ev[(kind == "heard") & (ev["item_id"] == tid)].sort_values("time", kind="stable").drop_duplicates("user_id")
    chain = _chain(heard, att_ids)
    dist = graph_hops(_social_graph(scn, user_ids).friends, att_idx) if att_idx else None
    out = pd.DataFrame({"time": rows["time"].to_numpy(), "user_id": rows["user_id"].to_numpy(dtype=np.int64)})
    out["attacker"] = out["user_id"].isin(att_ids)
    out["graph_hop"] = pd.array([None if dist is None or dist[index[u]] < 0 else int(dist[index[u]])
                                 for u in out["user_id"].tolist()], dtype="Int64")
    out["event"] = rows["kind"].replace({"slate": "shown"}).to_numpy()
    out["other_id"] = rows["other_id"].astype("Int64").to_numpy()
    out["chain_hop"] = pd.array([chain.get(u) if k == "heard" else None
                                 for u, k in zip(out["user_id"].tolist(), out["event"])], dtype="Int64")
    pos = rows["items"].map(lambda xs: list(xs).index(tid) + 1 if xs is not None and tid in list(xs) else None)
    out["value"] = np.where(rows["kind"].to_numpy() == "slate", pos.to_numpy(dtype=object), rows["value"].to_numpy())
    out["text"] = rows["text"].map(lambda t: t[:200] if isinstance(t, str) else None).to_numpy()
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- the A/B over seeds


def _folder_name(arm: str, seed: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", arm).strip("._") or "arm"
    return f"{stem}-seed{seed}"


def _reusable(folder: Path, resolved_yaml: str) -> bool:
    """A finished run of exactly this scenario is already in ``folder``."""
    try:
        m = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        same = (folder / "scenario.yaml").read_text(encoding="utf-8") == resolved_yaml
    except (OSError, ValueError):
        return False
    return same and m.get("status") in ("completed", "degraded") and (folder / "users.parquet").exists()


def world_ab(scenario_dict, arms: dict[str, list[str]], seeds: int | list[int], out: Path, progress: bool = True,
             target: str | None = None) -> dict:
    """Run every arm over the same seeds and compare them, paired by seed, with the first arm.

    ``scenario_dict``: a scenario (dict, path or ``Scenario``); ``arms``: ``{label: [--set
    overrides]}`` (the first arm is the baseline; e.g. ``{"without": ["sts.inject=false"],
    "sts": ["sts.inject=true"], "attackers": ["sts.inject=false", attackers_override(scn)]}``);
    ``seeds``: a count (the scenario's seed and the next ones) or a list; ``out``: the folder
    that gets one run folder per arm and seed (``ARM-seedN``) and ``world_ab.json``;
    ``target``: the promoted item's title (default ``sts.target``).  A finished run of the same
    resolved scenario already in its folder is reused.  Returns ``{"status", "target",
    "arms", "baseline", "seeds", "runs", "summary", "differences", "by_hop", "metrics"}``; a
    failed run is kept in ``runs`` with its error and left out of the intervals, and
    ``status`` says how many failed.
    """
    from recworld.simulator.output.progress import progress_bar
    from recworld.simulator.run import run_scenario
    from recworld.simulator.scenario import load_scenario

    if not arms:
        raise ValueError("world_ab needs at least one arm ({label: [overrides]})")
    base = load_scenario(scenario_dict)
    target = target or (base.sts.target if base.sts is not None else None)
    if not target:
        raise ValueError("world_ab: give target= (the scenario has no sts.target)")
    seed_list = list(range(base.seed, base.seed + int(seeds))) if isinstance(seeds, (int, np.integer)) \
        else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("world_ab needs at least one seed")
    labels = list(arms)
    # every arm's scenario is checked before anything runs: a typo fails in a second, not after an hour
    resolved = {(a, s): load_scenario(base.model_dump(mode="json"), list(arms[a]) + [f"seed={s}"])
                for a in labels for s in seed_list}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"status": "running", "target": target, "arms": {a: list(arms[a]) for a in labels},
              "baseline": labels[0], "seeds": seed_list, "runs": [], "metrics": dict(METRICS)}
    rows: list[dict] = []
    bar = progress_bar(total=len(resolved), desc="world A/B", unit="run", enabled=progress, dynamic_ncols=True)
    try:
        for s in seed_list:
            n_users = None
            own: dict[str, list[int]] = {}
            for a in labels:                    # the attackers' seats of this seed, over every arm
                scn = resolved[(a, s)]
                if any(_is_shill(g.brain.name) for g in scn.population.groups):
                    n_users = n_users or _population_size(scn)
                    own[a] = attacker_indices(scn, n_users)
            seats = sorted(set().union(*own.values())) if own else []
            for a in labels:
                scn = resolved[(a, s)]
                folder = out / _folder_name(a, s)
                row = {"arm": a, "seed": s, "folder": str(folder)}
                bar.set_description(f"world A/B {a} seed {s}")
                try:
                    if not _reusable(folder, scn.to_yaml()):
                        try:
                            run_scenario(scn, folder, progress=False, overwrite=True)
                        except Exception:
                            if not (folder / "users.parquet").exists():
                                raise
                    m = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
                    row["status"] = m.get("status", "unknown")
                    if row["status"] not in ("completed", "degraded"):
                        row["error"] = m.get("error") or _error_line(folder)
                    else:
                        ids = pd.read_parquet(folder / "users.parquet", columns=["user_id"])["user_id"].to_numpy()
                        # hops and chains start from the arm's own attackers (an arm without any: from
                        # the seats, as a placebo); every arm leaves all seats out of its figures
                        sp = spread(folder, target, attackers=ids[own.get(a, seats)].tolist(),
                                    exclude=ids[seats].tolist())
                        row.update({k: sp.get(k) for k in METRICS})
                        row["by_hop"] = sp["by_hop"]
                        row["chain"] = sp["chain"]
                except Exception as e:  # noqa: BLE001 - recorded; the other runs go on
                    row["status"] = "failed"
                    row["error"] = f"{type(e).__name__}: {e}"[:1000]
                    log.warning("world A/B: arm %s seed %d failed: %s", a, s, row["error"])
                    log.debug("%s", traceback.format_exc())
                rows.append(row)
                result["runs"] = rows
                bar.update()
        _summarize(result, rows, labels)
        failed = [r for r in rows if r["status"] not in ("completed", "degraded")]
        result["status"] = ("completed" if not failed else "failed" if len(failed) == len(rows)
                            else f"partial: {len(failed)} of {len(rows)} runs failed")
    except BaseException as e:
        result["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else f"failed: {e!r}"[:500]
        _summarize(result, rows, labels)
        raise
    finally:
        bar.close()
        (out / "world_ab.json").write_text(json.dumps(result, indent=2, default=_jsonable), encoding="utf-8")
    return result


def _population_size(scn) -> int:
    from recworld.simulator.build import build_parts

    if scn.data.source != "movielens":
        return int(scn.population.size)
    return len(build_parts(scn, progress=False, fit_users=False).population)   # a sample may be smaller


def _error_line(folder: Path) -> str | None:
    try:
        lines = (folder / "error.txt").read_text(encoding="utf-8").strip().splitlines()
    except OSError:
        return None
    return lines[-1][:1000] if lines else None


def _summarize(result: dict, rows: list[dict], labels: list[str]) -> None:
    from recworld.simulator.studies import aggregate

    if not rows:
        result.update(summary={}, differences={}, by_hop={})
        return
    runs = pd.DataFrame([{k: v for k, v in r.items() if k not in ("by_hop", "chain")} for r in rows])
    metrics = [m for m in METRICS if m in runs.columns]
    for m in metrics:
        runs[m] = pd.to_numeric(runs[m], errors="coerce")
    summ = aggregate.summarize(runs, metrics, order=labels)
    diffs = aggregate.paired_differences(runs, labels[0], metrics, order=labels)
    result["summary"] = {a: {r.metric: _iv(r.n, r.mean, r.ci_low, r.ci_high) for r in part.itertuples()}
                         for a, part in summ.groupby("arm", sort=False)}
    result["differences"] = {a: {r.metric: _iv(r.n, r.mean_difference, r.ci_low, r.ci_high) for r in part.itertuples()}
                             for a, part in diffs.groupby("arm", sort=False)}
    # heard-of share per graph hop, mean over seeds per arm
    by_hop: dict = {}
    for a in labels:
        per = [r["by_hop"] for r in rows if r["arm"] == a and r.get("by_hop")]
        if not per:
            continue
        by_hop[a] = {}
        for h in per[0]:
            shares = [p[h]["share"] for p in per if h in p and p[h]["share"] is not None]
            users = [p[h]["users"] for p in per if h in p]
            by_hop[a][h] = {"users": float(np.mean(users)) if users else None,
                            "share": _iv(*_t(shares)) if shares else None}
    result["by_hop"] = by_hop


def _t(values) -> tuple:
    from recworld.simulator.output.intervals import interval

    iv = interval(values)
    return iv["n"], iv["mean"], iv["low"], iv["high"]


def _iv(n, mean, low, high) -> dict:
    def f(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    return {"n": int(n), "mean": f(mean), "low": f(low), "high": f(high)}


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return None if math.isnan(x) else float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)


# ----------------------------------------------------------------------------- report and plots


def _cell(iv: dict | None, signed: bool = False) -> str:
    from recworld.simulator.studies.aggregate import with_interval

    if not iv or iv.get("mean") is None:
        return "n/a"
    low = math.nan if iv.get("low") is None else iv["low"]
    high = math.nan if iv.get("high") is None else iv["high"]
    text = with_interval(iv["mean"], low, high, signed=signed)
    if signed and not math.isnan(low) and (low > 0 or high < 0):
        text += " *"
    return text


def world_ab_report(result: dict, metrics: list[str] | None = None) -> str:
    """Markdown: per arm the mean [95% interval] over seeds, then each arm minus the baseline
    paired by seed (``*``: the interval leaves out zero), the heard-of share by graph hop, and
    the failed runs."""
    metrics = metrics or TABLE
    arms = list(result.get("arms") or {})
    base = result.get("baseline")
    summ, diffs = result.get("summary") or {}, result.get("differences") or {}
    runs = result.get("runs") or []
    lines = [f"## In-world A/B: {result.get('target')}", "",
             (f"Status: **{result.get('status')}**. Seeds: {', '.join(map(str, result.get('seeds', [])))}; "
             f"figures count ordinary users only (attackers' seats are left out of every arm). "
             "Cells: mean [95% t interval over seeds]."), ""]
    for a in arms:
        ov = result["arms"][a]
        shown = [o if len(o) <= 90 else o[:87] + "..." for o in ov]
        lines.append(f"- `{a}`: " + (", ".join(f"`{o}`" for o in shown) if ov else "the scenario as it is"))
    lines.append("")

    def table(rows_of, signed):
        head = ["arm", "seeds"] + metrics
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for a in rows_of:
            cells = (summ if not signed else diffs).get(a, {})
            n = max([c["n"] for c in cells.values()] or [0])
            out.append("| " + " | ".join([a, str(n)] + [_cell(cells.get(m), signed) for m in metrics]) + " |")
        return out

    lines += ["### Per arm", ""] + table(arms, False) + [""]
    others = [a for a in arms if a != base]
    if others:
        lines += [f"### Difference from `{base}` (paired by seed; * = interval leaves out zero)", ""]
        lines += table(others, True) + [""]
    by_hop = result.get("by_hop") or {}
    if by_hop:
        hops = list(next(iter(by_hop.values())))
        lines += ["### Heard of the target, by graph distance from the nearest attacker (share of the users there)",
                  "", "| arm | " + " | ".join(f"hop {h}" for h in hops) + " |",
                  "|---|" + "|".join("---" for _ in hops) + "|"]
        for a, per in by_hop.items():
            lines.append(f"| {a} | " + " | ".join(_cell(per[h]["share"]) if per.get(h) else "n/a" for h in hops)
                         + " |")
        lines.append("")
    bad = [r for r in runs if r.get("status") not in ("completed", "degraded")]
    if bad:
        lines += ["### Runs that did not finish", ""]
        lines += [f"- `{r['arm']}` seed {r['seed']}: {r.get('status')}: {r.get('error') or ''}" for r in bad]
        lines.append("")
    lines += ["Metrics: " + "; ".join(f"`{m}`: {METRICS[m]}" for m in metrics if m in METRICS), ""]
    return "\n".join(lines)


def world_ab_plots(result: dict, plots_dir, metrics: list[str] | None = None) -> dict[str, Path]:
    """``world_ab_arms.png`` (each arm's mean and interval per metric),
    ``world_ab_differences.png`` (paired differences from the baseline) and
    ``world_ab_hops.png`` (heard-of share by graph hop); returns the files written."""
    from matplotlib.figure import Figure

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    metrics = metrics or TABLE
    written: dict[str, Path] = {}

    def panels(source: dict, name: str, title: str, zero: bool) -> None:
        arms = list(source)
        ms = [m for m in metrics if any((source[a].get(m) or {}).get("mean") is not None for a in arms)]
        if not arms or not ms:
            return
        cols = min(4, len(ms))
        rows = -(-len(ms) // cols)
        fig = Figure(figsize=(3.4 * cols, 1.0 + 2.6 * rows))
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, m in zip(axes, ms):
            x = np.arange(len(arms))
            iv = [source[a].get(m) or {} for a in arms]
            mean = np.array([np.nan if c.get("mean") is None else c["mean"] for c in iv], dtype=float)
            lo = np.array([np.nan if c.get("low") is None else c["low"] for c in iv], dtype=float)
            hi = np.array([np.nan if c.get("high") is None else c["high"] for c in iv], dtype=float)
            ax.errorbar(x, mean, yerr=[np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)], fmt="o", capsize=4)
            if zero:
                ax.axhline(0, color="grey", lw=0.8)
            ax.set_xticks(x, arms, rotation=30, ha="right", fontsize=8)
            ax.set_title(m, fontsize=9)
            ax.grid(alpha=0.3)
        for ax in axes[len(ms):]:
            ax.set_visible(False)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path = plots_dir / name
        fig.savefig(path, dpi=100)
        written[name] = path

    target = result.get("target")
    panels(result.get("summary") or {}, "world_ab_arms.png", f"{target}: per arm, mean and 95% interval over seeds",
           False)
    panels(result.get("differences") or {}, "world_ab_differences.png",
           f"{target}: difference from {result.get('baseline')} (paired by seed)", True)
    by_hop = result.get("by_hop") or {}
    if by_hop:
        fig = Figure(figsize=(5.5, 3.6))
        ax = fig.subplots()
        for k, (a, per) in enumerate(by_hop.items()):
            hops = list(per)
            x = np.arange(len(hops)) + (k - (len(by_hop) - 1) / 2) * 0.12
            mean = np.array([np.nan if not per[h]["share"] else per[h]["share"]["mean"] for h in hops], dtype=float)
            lo = np.array([np.nan if not per[h]["share"] or per[h]["share"]["low"] is None else per[h]["share"]["low"]
                           for h in hops], dtype=float)
            hi = np.array([np.nan if not per[h]["share"] or per[h]["share"]["high"] is None
                           else per[h]["share"]["high"] for h in hops], dtype=float)
            ax.errorbar(x, mean, yerr=[np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)], fmt="o-", capsize=3,
                        label=a)
        ax.set_xticks(np.arange(len(hops)), [f"hop {h}" for h in hops])
        ax.set_ylabel("share who heard of the target")
        ax.set_title(f"{target}: heard of it, by distance from an attacker", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = plots_dir / "world_ab_hops.png"
        fig.savefig(path, dpi=100)
        written["world_ab_hops.png"] = path
    return written


# ----------------------------------------------------------------------------- command line


def write_world_ab(result: dict, out) -> Path:
    """``report.md`` and ``plots/`` of a world A/B in ``out`` (``world_ab.json`` is written by ``world_ab``)."""
    out = Path(out)
    plots = world_ab_plots(result, out / "plots")
    text = world_ab_report(result) + "".join(f"\n![{name}](plots/{name})\n" for name in plots)
    (out / "report.md").write_text(text, encoding="utf-8")
    return out / "report.md"


def main(argv: list[str] | None = None) -> int:
    """``python -m recworld.simulator.studies.sts_world SCENARIO [--set K=V ...] --share 0.1 --seeds 5 --out DIR``:
    the scenario as it is against the scenario with a shill group of each ``--share``."""
    import argparse

    from recworld.simulator.scenario import load_scenario

    ap = argparse.ArgumentParser(prog="python -m recworld.simulator.studies.sts_world", description=main.__doc__)
    ap.add_argument("scenario")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of the base scenario (every arm), as recworld run --set")
    ap.add_argument("--share", type=float, action="append", help="share of shills in an attack arm (repeatable; "
                                                                   "default 0.1)")
    ap.add_argument("--target", help="the promoted item's title (default: the scenario's sts.target)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    base = load_scenario(args.scenario, args.overrides).model_dump(mode="json")
    arms = {"without": []}
    for share in args.share or [0.1]:
        arms[f"shills_{share:g}"] = [attackers_override(base, share, args.target)]
    result = world_ab(base, arms, args.seeds, Path(args.out), progress=not args.no_progress, target=args.target)
    print(world_ab_report(result))
    print(f"written: {write_world_ab(result, args.out)}")
    return 0 if result["status"] == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
