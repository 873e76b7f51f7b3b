"""``report.html`` of an STS study (``recworld sts``) and of a fidelity study (``recworld fidelity``).

Both pages are built from the files the study wrote, so they can be (re)built at any time
(``recworld report FOLDER``):

- STS: ``results.json`` (per catalog: the search's trace, and per recommender the paired
  ranks of every trial with and without the STS, the rank distributions, the mean rank
  gain, top-1 shares, advantage and disadvantage with their 95% intervals; the in-world
  A/B).  The world runs' folders (``world_with/``, ``world_without/``) are linked to their
  own explorers.
- Fidelity: ``fidelity.json`` (accuracy, precision, recall, F1 per ratio, pooled and per
  user, with bootstrap intervals, next to the popularity, genre and random baselines; AUC;
  rating errors; the simulated and real rating histograms) and ``fidelity_users.csv`` (one
  row per user and ratio: the per-user F1 distribution).

The pages are the explorer's (same script, styles and offline rules, ``html.render_page``)
with the study views of ``assets/studies.js``.
"""

from __future__ import annotations

import json
from pathlib import Path

#: per-user F1 of a public reproduction of Agent4Rec (1,000 LLM avatars), at 1:1 / 1:3 / 1:9
AGENT4REC_F1 = {"1:1": 0.501, "1:3": 0.373, "1:9": 0.223}

#: bins of the per-user F1 histogram (0, 0.1, ..., 1; the last bin holds 1.0)
F1_BINS = 10


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: is {path.parent} the output folder of the study "
                                "(it writes that file)?") from None
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); the study may have been stopped while writing it: "
                         "run it again") from None


def _link(folder: Path, sub: str) -> str | None:
    """``sub/report.html`` relative to ``folder`` if that page exists."""
    return f"{sub}/report.html" if (folder / sub / "report.html").exists() else None


def _provenance(folder: Path) -> dict:
    """The provenance of the first run folder under ``folder`` (STS results carry none)."""
    for sub in ("world_without", "world_with"):
        try:
            return json.loads((folder / sub / "metrics.json").read_text(encoding="utf-8")).get("provenance") or {}
        except (OSError, ValueError):
            continue
    return {}


def _matrix(m: dict | None) -> dict | None:
    """The attacks x defences cells without their per-trial ranks (the table needs none)."""
    if not m:
        return None
    drop = ("ranks_with", "ranks_without", "rank_distribution")
    return {d: {rec: {**{k: v for k, v in cell.items() if k != "attacks"},
                      "attacks": {a: {k: v for k, v in p.items() if k not in drop} for a, p in cell["attacks"].items()}}
                for rec, cell in recs.items()} for d, recs in m.items()}


def sts_data(folder) -> dict:
    """The JSON the STS page draws, from ``folder/results.json``."""
    folder = Path(folder)
    res = _read_json(folder / "results.json")
    if not isinstance(res.get("studies"), dict):
        raise ValueError(f"{folder / 'results.json'} has no 'studies': it is not the results of recworld sts")
    studies = []
    for key, s in res["studies"].items():
        recs = []
        for name, p in (s.get("protocol") or {}).items():
            w, o = list(p.get("ranks_with") or []), list(p.get("ranks_without") or [])
            recs.append({"name": name, **{k: v for k, v in p.items() if k not in ("ranks_with", "ranks_without")},
                         "trials_paired": [[int(a), int(b)] for a, b in zip(o, w)]})     # [without, with]
        studies.append({"key": key, "catalog": s.get("catalog", key), "target": s.get("target"),
                        "items": s.get("items"), "domain": s.get("domain"), "query": s.get("query"),
                        "sts": s.get("sts"), "search": s.get("search"), "recommenders": recs,
                        "matrix": _matrix(s.get("matrix")), "attack_texts": s.get("attack_texts")})
    world = res.get("world")
    if world:
        world = dict(world, reports={"with": _link(folder, "world_with"), "without": _link(folder, "world_without")})
    status = str(res.get("status") or "unknown")
    model = res.get("model")
    if model == "embedded":
        model = f"embedded {res.get('embedded_model')}"
    return {"kind": "sts", "title": f"RecWorld STS study: {res.get('scenario') or folder.name}",
            "folder": folder.name, "status": "failed" if status.startswith("failed") else status,
            "status_text": status, "target": res.get("target"), "position": res.get("position"), "model": model,
            "studies": studies, "world": world, "llm": res.get("llm") or {}, "provenance": _provenance(folder)}


def _f1(hits: float, picks: float, positives: float) -> float:
    """F1 of one user's picks: 2 hits / (picks + positives); 0 when both are 0."""
    d = picks + positives
    return 2.0 * hits / d if d > 0 else 0.0


def per_user_f1(rows: list[dict]) -> dict:
    """Per ratio: the users' F1 values (from ``fidelity_users.csv`` rows), their histogram
    over ``F1_BINS`` bins on [0, 1], mean, median and the share of users at 0."""
    by: dict[str, list[float]] = {}
    for r in rows:
        try:
            ratio, hits, picks, pos = int(r["ratio"]), float(r["hits"]), float(r["picks"]), float(r["positives"])
        except (KeyError, TypeError, ValueError):
            continue
        by.setdefault(f"1:{ratio}", []).append(_f1(hits, picks, pos))
    out = {}
    for ratio, vals in by.items():
        counts = [0] * F1_BINS
        for v in vals:
            counts[min(int(v * F1_BINS), F1_BINS - 1)] += 1
        s = sorted(vals)
        mid = len(s) // 2
        median = s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
        out[ratio] = {"users": len(vals), "counts": counts, "mean": sum(vals) / len(vals), "median": median,
                      "zero": sum(1 for v in vals if v == 0) / len(vals)}
    return out


def fidelity_data(folder) -> dict:
    """The JSON the fidelity page draws, from ``folder/fidelity.json`` and ``fidelity_users.csv``."""
    import csv


    folder = Path(folder)
    res = _read_json(folder / "fidelity.json")        # NaN (e.g. an undefined correlation) is shown as –
    if not isinstance(res.get("ratios"), dict) or "ratings" not in res:
        raise ValueError(f"{folder / 'fidelity.json'} has no 'ratios' and 'ratings': it is not the output of "
                         "recworld fidelity")
    rows = []
    users_csv = folder / "fidelity_users.csv"
    if users_csv.exists():
        with users_csv.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    brains = sorted({r.get("brain") for r in rows if r.get("brain")})
    brain = res.get("brain") or {}
    label = ", ".join(brain.get("names") or []) + (f" ({brain['class']})" if brain.get("class") else "")
    body = {k: v for k, v in res.items() if k not in ("provenance", "plots")}
    body["brain"] = {k: v for k, v in brain.items() if k != "calibration"}
    return {"kind": "fidelity", "title": f"RecWorld fidelity: {label or folder.name}", "folder": folder.name,
            "status": "completed", "result": body, "calibration": brain.get("calibration") or {},
            "agent4rec_f1": AGENT4REC_F1, "per_user_f1": per_user_f1(rows), "per_user_brains": brains,
            "provenance": res.get("provenance") or {}}


def write_study_html(folder, kind: str, name: str = "report.html") -> Path:
    """Write ``folder/report.html`` for an ``sts`` or ``fidelity`` output folder; returns its path."""
    from recworld.simulator.output.html import render_page

    builders = {"sts": sts_data, "fidelity": fidelity_data}
    if kind not in builders:
        raise ValueError(f"no study page for {kind!r}; known: {', '.join(builders)}")
    folder = Path(folder)
    page = render_page(builders[kind](folder))
    path, tmp = folder / name, folder / f".{name}.tmp"
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
