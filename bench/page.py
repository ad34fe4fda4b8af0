"""Battle page load: requests, bytes transferred and first contentful paint (FCP) in Chromium.

Starts the ASGI app under uvicorn (as deployed) on the configured database, then loads the arena
home page (the battle page a visitor lands on) several times, each in a fresh browser context (cold
cache, no cookies), and reports the median FCP from performance.getEntriesByName(
'first-contentful-paint'). Needs Debian's chromium (/usr/bin/chromium) and Playwright for Python.
Run inside `python -m ludus_dev env`, under the shared bench lock so that other benches do not
overlap:

    flock /tmp/ludus-bench.lock .venv/bin/python bench/page.py --loads 15

The last line is one JSON object: requests, bytes, fcp_median_ms (and the individual loads).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if not os.environ.get("DATABASE_URL"):
    # Self-contained like the other benches: embedded services, the bench's own database.
    from ludus_dev.services import ensure_services

    os.environ.update(ensure_services(ROOT / "data", database="ludus_bench").env())

from ludus_dev.browser import CHROMIUM_ARGS  # noqa: E402
from ludus_dev.browser import CHROMIUM_PATH as CHROMIUM  # noqa: E402

METRICS_JS = """() => {
  const entries = performance.getEntriesByType('resource');
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {
    bytes: entries.reduce((s, e) => s + e.transferSize, 0) + nav.transferSize,
    html_bytes: nav.transferSize,
    ttfb_ms: nav.responseStart,
    fcp_ms: fcp ? fcp.startTime : null,
  };
}"""


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ) | {
        "LUDUS_SECURE_COOKIES": "0",
        "DJANGO_DEBUG": "0",
        "LUDUS_LOG_LEVEL": "ERROR",
        "PYTHONWARNINGS": "ignore",
    }
    env.setdefault("DJANGO_SECRET_KEY", "bench-secret-key")
    # The page names content-hashed static files, served from what collectstatic writes.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip


def wait_ready(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def _collector(seen: list[str]) -> Any:
    return lambda request: seen.append(request.url)


def measure(url: str, loads: int) -> list[dict[str, float]]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for i in range(loads + 1):  # the first load warms the server and the browser
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                requests: list[str] = []
                page.on("request", _collector(requests))
                page.goto(url)
                page.wait_for_load_state("networkidle")
                page.wait_for_function(
                    "performance.getEntriesByName('first-contentful-paint').length > 0"
                )
                metrics = page.evaluate(METRICS_JS)
                context.close()
                if i:
                    results.append({"requests": len(requests), **metrics})
        finally:
            browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=15)
    parser.add_argument("--port", type=int, default=8732)
    parser.add_argument("--path", default="/")
    parser.add_argument("--url", default="", help="measure a running server instead")
    args = parser.parse_args()
    url = args.url or f"http://127.0.0.1:{args.port}{args.path}"
    server = None if args.url else start_server(args.port)
    try:
        wait_ready(url)
        results = measure(url, args.loads)
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
    fcps = [r["fcp_ms"] for r in results if r["fcp_ms"] is not None]
    for r in results:
        print(f"requests {r['requests']:3d}  bytes {r['bytes']:7.0f}  ttfb {r['ttfb_ms']:6.1f} ms"
              f"  fcp {r['fcp_ms']:6.1f} ms")  # fmt: skip
    summary = {
        "requests": max(r["requests"] for r in results),
        "bytes": max(r["bytes"] for r in results),
        "html_bytes": max(r["html_bytes"] for r in results),
        "fcp_median_ms": round(statistics.median(fcps), 1),
        "fcp_min_ms": round(min(fcps), 1),
        "fcp_max_ms": round(max(fcps), 1),
        "ttfb_median_ms": round(statistics.median(r["ttfb_ms"] for r in results), 1),
        "loads": len(results),
        "loadavg_1m": round(os.getloadavg()[0], 1),
    }
    print(f"requests {summary['requests']}, bytes {summary['bytes']:.0f}, "
          f"FCP median {summary['fcp_median_ms']} ms over {len(fcps)} loads")  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
