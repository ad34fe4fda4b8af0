"""Take the README's battle screenshots from a running Ludus (`make run` in another terminal).

python -m ludus_dev.screenshots [--url http://127.0.0.1:8000] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

from ludus_dev.browser import CHROMIUM_ARGS, CHROMIUM_PATH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--prompt", default="What is the capital of France?")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(args.url + "/")
        page.get_by_test_id("prompt-input").fill(args.prompt)
        page.get_by_test_id("send").click()
        page.get_by_test_id("vote-a").wait_for(state="visible", timeout=60_000)
        page.wait_for_function(
            "() => !document.querySelector('[data-testid=vote-a]').disabled", timeout=60_000
        )
        page.screenshot(path=str(out / "battle-before-vote.png"))
        page.get_by_test_id("vote-a").click()
        # The names are on the page from the start ("Model A"): wait for the vote's verdict,
        # which comes with the revealed names.
        page.get_by_test_id("verdict").wait_for(timeout=15_000)
        page.screenshot(path=str(out / "battle-after-vote.png"))
        browser.close()
    print(f"wrote {out / 'battle-before-vote.png'} and {out / 'battle-after-vote.png'}")


if __name__ == "__main__":
    main()
