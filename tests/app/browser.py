"""Drive the studio in a real Chromium: start ``streamlit run app.py``, open pages, take screenshots.

Used by the browser test (``test_browser.py``) and to refresh ``docs/screenshots``::

    .venv/bin/python -m tests.app.browser --workspace /tmp/shots-ws --out docs/screenshots
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("RECSYS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PAGES = {
    "home": "",
    "data": "data",
    "train": "train",
    "recommendations": "recommendations",
    "attention": "attention",
    "experiments": "experiments",
}


def require_chromium() -> None:
    """Skip the calling test module when Debian's Chromium or the playwright package is missing; fail instead
    when ``RECSYS_REQUIRE_BROWSER=1`` (CI sets it: there a skip would hide a broken page)."""
    import pytest

    give_up = pytest.fail if os.environ.get("RECSYS_REQUIRE_BROWSER") == "1" else pytest.skip
    if not CHROMIUM.exists():
        give_up(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        give_up("the playwright package is not installed (pip install -r requirements-dev.txt)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def streamlit_server(
    workspace: Path, log_file: Path, extra_args: list[str] | None = None, timeout: float = 120.0
) -> Iterator[str]:
    """Run the app on a free local port with ``RECSYS_WORKSPACE=workspace``; yield its URL; stop it by PID."""
    port = free_port()
    env = dict(os.environ, RECSYS_WORKSPACE=str(workspace), PYTHONUNBUFFERED="1")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        *(extra_args or []),
    ]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {process.returncode}; see {log_file}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer on {url} within {timeout:.0f} s; see {log_file}")
            time.sleep(0.5)
        yield url
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@contextmanager
def chromium_page(width: int = 1440, height: int = 1000):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            page.set_default_timeout(120_000)
            yield page
        finally:
            browser.close()


_QUIET_FOR = """([settle, key]) => {
    const app = document.querySelector('.stApp');
    const busy = !app || app.getAttribute('data-test-script-state') !== 'notRunning'
        || document.querySelector('[data-testid="stSkeleton"]') !== null;
    const now = performance.now();
    if (busy) { window[key] = null; return false; }
    if (window[key] == null) window[key] = now;
    return now - window[key] >= settle;
}"""

_STILL_FOR = """([settle, key]) => {
    // the sizes of the main area and of every chart: unchanged for `settle` ms means the layout is done
    const parts = [...document.querySelectorAll('[data-testid="stMain"], canvas, svg.marks, .js-plotly-plot')];
    const shape = parts.map(e => { const r = e.getBoundingClientRect(); return `${r.width}x${r.height}`; }).join();
    const now = performance.now();
    const last = window[key];
    if (!last || last.shape !== shape) { window[key] = {shape, since: now}; return false; }
    return now - last.since >= settle;
}"""


def wait_idle(page, settle: float = 1.0, timeout: float = 150.0) -> None:
    """Wait until the app has finished running its script (``notRunning`` for ``settle`` seconds)."""
    page.wait_for_selector('[data-testid="stMain"]', timeout=timeout * 1000)
    page.evaluate("() => { window.__recsysQuiet = null; }")
    page.wait_for_function(_QUIET_FOR, arg=[settle * 1000, "__recsysQuiet"], polling=100, timeout=timeout * 1000)


def wait_layout(page, settle: float = 0.3, timeout: float = 30.0) -> None:
    """Wait until the page's layout (main area, charts) has stopped changing size, e.g. after a resize."""
    page.evaluate("() => { window.__recsysShape = null; }")
    page.wait_for_function(_STILL_FOR, arg=[settle * 1000, "__recsysShape"], polling=100, timeout=timeout * 1000)


def open_page(page, url: str, name: str) -> None:
    page.goto(f"{url}/{PAGES[name]}", wait_until="domcontentloaded")
    wait_idle(page)


def screenshot(page, path: Path, full: bool = True, max_height: int = 7000) -> Path:
    """Save a picture of the whole page (the main area scrolls inside the app, so grow the viewport)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if full:
        height = page.evaluate(
            "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
            " const b = m && m.querySelector('[data-testid=\"stMainBlockContainer\"]');"
            " return Math.ceil(Math.max(b ? b.scrollHeight + 120 : 0, m ? m.scrollHeight : 0, window.innerHeight)); }"
        )
        size = page.viewport_size
        page.set_viewport_size({"width": size["width"], "height": min(int(height), max_height)})
        wait_layout(page)  # charts re-layout to the new size
        page.screenshot(path=str(path))
        page.set_viewport_size(size)
    else:
        page.screenshot(path=str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True, help="workspace with a trained run")
    parser.add_argument("--out", default="docs/screenshots", help="folder for the PNG files")
    parser.add_argument("--pages", nargs="*", default=list(PAGES), help="pages to capture")
    parser.add_argument("--import-folder", default=None, help="a bundle folder to show on the Data page's Import tab")
    args = parser.parse_args()
    out = Path(args.out)
    with streamlit_server(Path(args.workspace).resolve(), out / "server.log") as url, chromium_page() as page:
        for name in args.pages:
            open_page(page, url, name)
            if name == "recommendations":
                button = page.locator('[data-testid="stPopover"] button').first
                size = page.viewport_size
                page.set_viewport_size({"width": size["width"], "height": 1250})
                # the card's top near the top of the window, so the popover opens downwards
                button.evaluate("b => b.closest('[data-testid=\"stVerticalBlock\"]').scrollIntoView({block: 'start'})")
                wait_layout(page)
                button.click()
                page.get_by_text("How much each modality weighs").first.wait_for(timeout=120_000)
                wait_idle(page)
                wait_layout(page)
                screenshot(page, out / "recommendations-why.png", full=False)
                page.keyboard.press("Escape")
                page.get_by_text("How much each modality weighs").first.wait_for(state="hidden", timeout=30_000)
                page.set_viewport_size(size)
                wait_layout(page)
            screenshot(page, out / f"{name}.png")
            print(f"saved {out / (name + '.png')}")
            if name == "data" and args.import_folder:
                page.get_by_role("tab", name="Import").click()
                page.get_by_role("radio", name="Folder on disk").click()
                wait_idle(page)
                page.get_by_label("Path").fill(args.import_folder)
                page.get_by_label("Path").press("Enter")
                wait_idle(page, settle=2.0)
                screenshot(page, out / "data-import.png")
                print(f"saved {out / 'data-import.png'}")
    (out / "server.log").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
