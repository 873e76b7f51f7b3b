"""Screenshots of the run explorer (report.html) for the README and docs/explorer.md.

Opens report.html files in headless Chromium (Debian's chromium and chromium-driver, through
Selenium; nothing is downloaded) and saves PNGs of the main views: overview, time series,
a user's timeline, an LLM user's decision with its prompt and answer, and the social views.

    python benchmarks/screenshots.py                      # makes the runs it needs, in a temporary folder
    python benchmarks/screenshots.py --run runs/quickstart --llm-run runs/llm_quickstart --out docs/images

Without --run it runs scenarios/quickstart.yaml; without --llm-run it runs
scenarios/llm_quickstart.yaml against RecWorld's scripted fake LLM server (canned answers,
no model: the pictures then show the page, not what a model would say).  Pass a real LLM
run folder (e.g. from the embedded model) to show real prompts and answers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("overview", "timeseries", "user", "llm", "social")


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
        uq, ul = busiest_user(quick), busiest_user(llm, need_llm=True)
        page = (quick.path / "report.html").resolve().as_uri()
        llm_page = (llm.path / "report.html").resolve().as_uri()

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
                shoot(b, page + "#social", out / f"{args.prefix}social.png", setup=open_cascade, max_height=1500),
            ]
    for p in shots:
        print(f"{p} ({p.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
