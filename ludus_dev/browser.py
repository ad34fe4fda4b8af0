"""How Ludus starts Debian's Chromium under Playwright (tests, benches, screenshots): no browser
download, and no background connections the closed network would refuse."""

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
