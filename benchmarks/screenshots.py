"""Screenshots of the run explorer (report.html) for the README and docs/explorer.md.

Opens report.html files in headless Chromium (Debian's chromium and chromium-driver, through
Selenium; nothing is downloaded) and saves PNGs of the main views: overview, time series,
a user's timeline, an LLM user's decision with its prompt and answer, an LLM user's memories
and reflections, the social views, and the pages of an STS study and of a fidelity study.

    python benchmarks/screenshots.py                      # makes the outputs it needs, in a temporary folder
    python benchmarks/screenshots.py --run runs/quickstart --llm-run runs/llm_quickstart --out docs/images \
        --sts runs/sts-coffee --fidelity runs/fidelity-ml

Without --run it runs scenarios/quickstart.yaml; without --llm-run it runs
scenarios/llm_quickstart.yaml against RecWorld's scripted fake LLM server (canned answers,
no model: the pictures then show the page, not what a model would say).  Pass a real LLM
run folder (e.g. from the embedded model) to show real prompts and answers.  Without --sts
it runs scenarios/sts_coffee.yaml (8 trials, a search of 16 calls) against the same
scripted server, ranking requests answered with the products in the order the prompt lists
them: the STS then changes nothing, the pages show the study's shape, not a result.
Without --fidelity it runs the fidelity protocol on 100 users of the bundled MovieLens
sample with the parametric brain.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("overview", "timeseries", "user", "llm", "memory", "social", "sts", "sts-ranks", "fidelity",
         "fidelity-choices")


def make_runs(tmp: Path) -> tuple[Path, Path]:
    import yaml

    from recworld.simulator.run import run_scenario
    from recworld.simulator.testing.fakellm import FakeLLMServer
    from recworld.simulator.testing.scripted import answer

    quick = run_scenario(ROOT / "scenarios" / "quickstart.yaml", tmp / "quickstart", progress=False)
    scn = yaml.safe_load((ROOT / "scenarios" / "llm_quickstart.yaml").read_text())
    with FakeLLMServer(answer) as srv:
        scn["llm"] = {"model": "openai/scripted", "api_base": srv.url, "cache": False}
        llm = run_scenario(scn, tmp / "llm_quickstart", progress=False)
    return quick, llm


def listed_order(body: dict, n: int):
    """A ranking request answered with the products in the order its prompt lists them (their
    text, STS included, changes nothing); any other request as the scripted server answers."""
    import json

    from recworld.simulator.testing.fakellm import Reply
    from recworld.simulator.testing.scripted import answer

    if (body.get("response_format") or {}).get("json_schema"):
        return answer(body, n)
    lines = [json.loads(x) for x in body["messages"][-1]["content"].splitlines() if x.startswith("{")]
    names = [o.get("Name", o.get("name")) for o in lines]
    return Reply("\n".join(f"{k}. {x}" for k, x in enumerate(names, 1)))


def make_sts(tmp: Path) -> Path:
    from recworld.simulator.studies.sts import run_sts
    from recworld.simulator.testing.fakellm import FakeLLMServer

    with FakeLLMServer(listed_order) as srv:
        run_sts(ROOT / "scenarios" / "sts_coffee.yaml", tmp / "sts", progress=False,
                overrides=["llm.model=openai/scripted", f"llm.api_base={srv.url}", "llm.cache=false", "sts.trials=8",
                           "sts.optimize.budget_calls=16"])
    return tmp / "sts"


def make_fidelity(tmp: Path) -> Path:
    from recworld.simulator.output.folders import prepare_out
    from recworld.simulator.studies.fidelity import FidelitySettings, fidelity_scenario, run_fidelity, write_fidelity

    scn = fidelity_scenario(None, None, None, [])
    out = prepare_out(tmp / "fidelity", kind="fidelity")
    write_fidelity(run_fidelity(scn, FidelitySettings(users=100, bootstrap=200)), out, scn)
    return out


def reflective_user(run) -> int | None:
    """The LLM user with the most reflections in memories.parquet (None: no memories kept)."""
    from recworld.simulator.output.memories import read_memories

    mem, _ = read_memories(run.path)
    if mem.empty:
        return None
    score = mem.assign(r=mem["kind"] == "reflection").groupby("user_id")["r"].agg(["sum", "size"])
    return int(score.sort_values(["sum", "size"], ascending=False, kind="stable").index[0])


def busiest_user(run, need_llm: bool = False) -> int:
    """A user with chats and many slates (with page decisions, for an LLM run)."""
    ev = run.events
    chat = ev[ev["kind"] == "chat"]
    chatty = set(chat["user_id"]) | set(chat["other_id"].dropna())
    counts = ev[ev["kind"] == "slate"].groupby("user_id").size().sort_values(ascending=False, kind="stable")
    if need_llm and len(run.llm_calls):
        pages = run.llm_calls[run.llm_calls["purpose"] == "page"]
        counts = pages.groupby("user_id").size().sort_values(ascending=False, kind="stable")
    for u in counts.index:
        if int(u) in chatty:
            return int(u)
    return int(counts.index[0])


def compact(path: Path) -> None:
    """Re-save a screenshot with a 256-colour palette (a third of the size; pages are flat colours)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def shoot(browser, url: str, path: Path, setup=None, max_height: int = 2400, width: int = 1400) -> Path:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser.driver
    d.set_window_size(width, 1000)
    d.get(url)
    WebDriverWait(d, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "body[data-ready='1']")))
    if setup:
        setup(d)
    time.sleep(0.3)
    height = int(d.execute_script("return document.documentElement.scrollHeight"))
    d.set_window_size(width, min(max(height, 700), max_height))
    time.sleep(0.3)
    d.save_screenshot(str(path))
    compact(path)
    errors = browser.console_errors()
    if errors:
        print(f"warning: {path.name}: console errors: {errors}", file=sys.stderr)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a run folder for the overview, time series, user and social views")
    ap.add_argument("--llm-run", help="a run folder with LLM users for the decision view")
    ap.add_argument("--sts", help="an STS study folder (recworld sts) for its page")
    ap.add_argument("--fidelity", help="a fidelity folder (recworld fidelity) for its page")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder for the PNGs (default docs/images)")
    ap.add_argument("--prefix", default="explorer-")
    args = ap.parse_args(argv)

    from recworld.simulator.output.browser import Browser, missing
    from recworld.simulator.run import load_run

    why = missing()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recworld-shots-") as tmp:
        made = make_runs(Path(tmp)) if not (args.run and args.llm_run) else (None, None)
        quick = load_run(args.run or made[0])
        llm = load_run(args.llm_run or made[1])
        for r in (quick, llm):
            if not (r.path / "report.html").exists():
                from recworld.simulator.output.html import write_html

                write_html(r.path, r)
        from recworld.simulator.output.studies import write_study_html

        sts_page = write_study_html(Path(args.sts) if args.sts else make_sts(Path(tmp)), "sts").resolve().as_uri()
        fid_page = write_study_html(Path(args.fidelity) if args.fidelity else make_fidelity(Path(tmp)),
                                    "fidelity").resolve().as_uri()
        uq, ul = busiest_user(quick), busiest_user(llm, need_llm=True)
        um = reflective_user(llm) or ul
        page = (quick.path / "report.html").resolve().as_uri()
        llm_page = (llm.path / "report.html").resolve().as_uri()

        def memories_only(d):
            d.execute_script("document.querySelectorAll('input.kindf').forEach(function (cb) {"
                             " if (['memory', 'reflect'].indexOf(cb.value) < 0 && cb.checked) cb.click(); });")

        def open_first_decision(d):
            d.execute_script("var x = document.querySelector('.entry-slate details.llm'); if (x) { x.open = true;"
                             " x.closest('.entry').scrollIntoView(); window.scrollBy(0, -120); }")

        def open_cascade(d):
            d.execute_script("var a = document.querySelector('a.cas'); if (a) a.click();")

        with Browser(width=1400, height=1000) as b:
            shots = [
                shoot(b, page + "#overview", out / f"{args.prefix}overview.png", max_height=1300),
                shoot(b, page + "#series", out / f"{args.prefix}timeseries.png", max_height=1500),
                shoot(b, page + f"#user={uq}", out / f"{args.prefix}user.png", max_height=1800),
                shoot(b, llm_page + f"#user={ul}", out / f"{args.prefix}llm.png", setup=open_first_decision,
                      max_height=1800),
                shoot(b, llm_page + f"#user={um}", out / f"{args.prefix}memory.png", setup=memories_only,
                      max_height=1500),
                shoot(b, page + "#social", out / f"{args.prefix}social.png", setup=open_cascade, max_height=1500),
                shoot(b, sts_page + "#overview", out / f"{args.prefix}sts.png", max_height=1400),
                shoot(b, sts_page + "#ranks", out / f"{args.prefix}sts-ranks.png", max_height=1400),
                shoot(b, fid_page + "#overview", out / f"{args.prefix}fidelity.png", max_height=1300),
                shoot(b, fid_page + "#choices", out / f"{args.prefix}fidelity-choices.png", max_height=1300),
            ]
    for p in shots:
        print(f"{p} ({p.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
