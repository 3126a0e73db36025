"""Catalogue text is text, in a real Chromium, on every page of the studio.

A small demo catalogue has its titles, descriptions and categories rewritten to hold Markdown image and
link syntax, raw HTML (an ``<img>`` and a ``<script>``), a ``javascript:`` link, ``**bold**`` and a
spreadsheet formula, all pointing at a local HTTP listener. The app is served by ``streamlit run`` and
every page is opened: the planted strings must show as the literal characters, no ``<img>`` may point at
the listener, no anchor may carry a ``javascript:`` (or planted) href, the script must not have run, and
neither the listener nor Playwright's request log may see a single request to the planted host. The CSV
download of the Recommendations page must neutralise the formula (``recsys/export.py``: a leading ``'``).

Screenshots go to ``test-artifacts/browser/markup-*.png`` (gitignored).
"""

from __future__ import annotations

import csv
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.app.browser import chromium_page, open_page, require_chromium, screenshot, streamlit_server, wait_idle
from tests.app.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N_ITEMS = 40  # the Recommendations page shows up to 40: with seen items shown, that is every item


@pytest.fixture(scope="module", autouse=True)
def needs_chromium():
    require_chromium()


class Listener:
    """A local HTTP server that records every request it receives (the planted URLs point at it)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                listener.requests.append(f"{self.command} {self.path}")
                self.send_response(204)
                self.end_headers()

            do_GET = do_HEAD = do_POST = do_OPTIONS = _record

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Listener:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def title_plants(host: str) -> list[str]:
    return [
        f"![x](http://{host}/track.png)",
        f'<img src="http://{host}/img.png">',
        "<script>window.__pwned=1</script>",
        "[click](javascript:alert(1))",
        "**bold**",
        f'=HYPERLINK("http://{host}/x")',
    ]


def category_plants(host: str) -> list[str]:
    """One per title plant (item i has both number i % 6), each at most 40 characters (captions cut longer)."""
    return [
        f"![c](http://{host}/c-md.png)",
        f"<img src=//{host}/c-img.png>",
        "<script>window.__pwned=2</script>",
        "[c](javascript:alert(2))",
        "**cat** :material/home: :red[x]",  # Streamlit's icon and colour codes
        f'=HYPERLINK("http://{host}/c")',
    ]


def build_markup_workspace(root: Path, host: str) -> Path:
    """A small demo catalogue with planted markup in its text, imported and trained (fusion + MostPop)."""
    import pandas as pd

    from recsys.data.demo import generate_demo_bundle
    from recsys.train.run import RunConfig, train_run
    from recsys.workspace import Workspace

    bundle = generate_demo_bundle(root / "bundle", n_users=60, n_items=N_ITEMS, n_interactions=900)
    items = pd.read_csv(bundle / "items.csv", dtype=str, keep_default_na=False)
    titles, categories = title_plants(host), category_plants(host)
    for i in range(len(items)):
        k = i % len(titles)
        items.at[i, "title"] = f"{titles[k]} {items.at[i, 'title']}"
        items.at[i, "description"] = f"{titles[(k + 1) % len(titles)]} {items.at[i, 'description']}".strip()
        items.at[i, "category"] = categories[k]
    items.to_csv(bundle / "items.csv", index=False)
    workspace = Workspace(root / "workspace")
    result = workspace.import_bundle(bundle, name="markup")
    assert result.ok, result.report.format()
    train_run(
        workspace,
        RunConfig(dataset="markup", fusion_options={"epochs": 2}, text_encoder="tfidf", baselines=["mostpop"]),
    )
    return workspace.root


@pytest.fixture(scope="module")
def listener():
    with Listener() as server:
        yield server


@pytest.fixture(scope="module")
def markup_workspace(tmp_path_factory, listener) -> Path:
    return build_markup_workspace(tmp_path_factory.mktemp("markup"), listener.host)


def visible(page, text: str, timeout: float = 120.0) -> None:
    page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout * 1000)


# what the page holds that could fetch, run or link: every element with a src/href, and every script's text
_DOM_SCAN = """() => {
  const attrs = [];
  for (const e of document.querySelectorAll('[src], [href], [srcset], [poster], [data]')) {
    for (const a of ['src', 'href', 'srcset', 'poster', 'data', 'xlink:href'])
      if (e.getAttribute(a)) attrs.push({tag: e.tagName.toLowerCase(), attr: a, value: e.getAttribute(a)});
  }
  for (const e of document.querySelectorAll('image, use')) {
    const v = e.getAttributeNS('http://www.w3.org/1999/xlink', 'href');
    if (v) attrs.push({tag: e.tagName.toLowerCase(), attr: 'xlink:href', value: v});
  }
  const scripts = Array.from(document.querySelectorAll('script')).map(s => s.textContent || '');
  const strong = Array.from(document.querySelectorAll('[data-testid="stMain"] strong, [data-testid="stMain"] b'))
                      .map(s => s.textContent);
  return {attrs, scripts, strong, pwned: typeof window.__pwned};
}"""


_SHOWS_ALL = """(expected) => {
  const main = document.querySelector('[data-testid="stMain"]');
  const text = main ? main.innerText.replaceAll('\\u2060', '') : '';
  return expected.every(t => text.includes(t));
}"""


def shown_text(locator) -> str:
    return locator.inner_text().replace("\u2060", "")


def is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def check_page(page, name: str, host: str, expected: list[str]) -> str:
    """The page shows ``expected`` literally and holds nothing that fetches, runs or links planted markup."""
    # md_text puts an invisible word joiner (U+2060) into URLs so that Markdown does not make them links
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(_SHOWS_ALL, arg=expected, timeout=30_000)
    except PlaywrightTimeout:
        pass  # the assertions below say what is wrong
    scan = page.evaluate(_DOM_SCAN)
    assert scan["pwned"] == "undefined", f"{name}: the planted script ran"
    planted = [a for a in scan["attrs"] if host in a["value"]]
    assert not planted, f"{name}: an element points at the planted host: {planted}"
    scripted = [a for a in scan["attrs"] if a["value"].strip().lower().startswith("javascript:")]
    assert not scripted, f"{name}: a javascript: link: {scripted}"
    assert not [s for s in scan["scripts"] if "__pwned" in s], f"{name}: the planted script is a <script> element"
    # **bold** / **cat** are shown with their asterisks, never as bold "bold" / "cat"
    assert not {"bold", "cat", "click", "c", "x"} & {s.strip() for s in scan["strong"]}, scan["strong"]
    main_text = shown_text(page.locator('[data-testid="stMain"]'))
    missing = [text for text in expected if text not in main_text]
    assert not missing, f"{name}: not shown as text: {missing}"
    screenshot(page, ARTIFACTS / "browser" / f"markup-{name}.png")
    return main_text


def test_catalogue_markup_is_text_on_every_page(markup_workspace, listener):
    host = listener.host
    titles, categories = title_plants(host), category_plants(host)
    out = ARTIFACTS / "browser"
    seen_requests: list[str] = []
    with streamlit_server(markup_workspace, out / "markup-server.log") as url, chromium_page() as page:
        page.context.on("request", lambda request: seen_requests.append(request.url))
        try:
            open_page(page, url, "home")
            visible(page, "Fusion on markup")
            check_page(page, "home", host, [])

            # Explore: a gallery of 12 spread over the 6 categories (2 each) shows every title and category plant
            open_page(page, url, "data")
            visible(page, "A look at the catalog")
            check_page(page, "data", host, [t[:40] for t in titles] + categories)

            open_page(page, url, "train")
            visible(page, "Test metrics against the baselines")
            check_page(page, "train", host, [])

            open_page(page, url, "recommendations")
            visible(page, "Top 10 for")
            check_page(page, "recommendations-top10", host, [])
            # every item on the page: the user's own items too, and the longest list
            page.get_by_text("Hide seen items").first.click()
            wait_idle(page)
            page.get_by_text("One per product").first.click()
            wait_idle(page)
            page.locator('[data-testid="stSlider"]').filter(has_text="How many").get_by_role("slider").press("End")
            wait_idle(page)
            visible(page, "Top 40 for")
            assert page.locator('[data-testid="stPopover"]').count() == N_ITEMS
            check_page(page, "recommendations", host, titles + categories)
            # the explanation of a card, with its history items and shared evidence
            page.locator('[data-testid="stPopover"]').first.locator("button").click()
            visible(page, "The history items behind it")
            wait_idle(page)
            popover = page.locator('[data-testid="stPopoverBody"]')
            popover_text = shown_text(popover) if popover.count() else ""
            assert any(t in popover_text for t in titles), popover_text
            check_page(page, "recommendations-why", host, [])
            page.keyboard.press("Escape")
            wait_idle(page)

            with page.expect_download() as download_info:
                page.get_by_role("button", name="Download this list (CSV)").click()
            rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text(encoding="utf-8"))))
            assert len(rows) == N_ITEMS
            formula_titles = [r["title"] for r in rows if "HYPERLINK" in r["title"]]
            assert formula_titles and all(t.startswith("'=HYPERLINK(") for t in formula_titles), formula_titles
            formula_categories = [r["category"] for r in rows if "HYPERLINK" in r["category"]]
            assert formula_categories and all(c == "'" + categories[5] for c in formula_categories)
            for row in rows:  # no text cell is a formula (numbers such as a negative share stay numbers)
                assert not [v for v in row.values() if v.startswith(("=", "+", "-", "@")) and not is_number(v)], row
            assert any(r["title"].startswith(titles[0]) for r in rows)  # the other plants are kept as they are
            # the CSV is built in the server's thread when the button is clicked: nothing in it may need the
            # page's script context (it read the session state there, one warning per item)
            assert "missing ScriptRunContext" not in (out / "markup-server.log").read_text(errors="replace")

            # the category heatmap and the item map's legend name every category; the top-items heatmap titles
            open_page(page, url, "attention")
            visible(page, "Behaviour — mean weight")
            page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for()
            text = check_page(page, "attention", host, categories)
            assert sum(t[:40] in text for t in titles) >= 2, "the top-items heatmap shows no planted title"

            open_page(page, url, "experiments")
            visible(page, "Compare runs")
            check_page(page, "experiments", host, [])
        except Exception:
            screenshot(page, out / "markup-failure.png", full=False)
            raise
    assert listener.requests == [], listener.requests
    assert seen_requests, "Playwright's request log is empty"
    planted = [u for u in seen_requests if host in u]
    assert not planted, planted
    assert all(u.startswith((url, "data:", "blob:")) for u in seen_requests), [
        u for u in seen_requests if not u.startswith((url, "data:", "blob:"))
    ]
