"""End to end in a real Chromium: every page of the studio served by ``streamlit run``.

Screenshots of each page go to ``test-artifacts/`` (gitignored). The server runs with
``--server.maxUploadSize 1`` so that the oversized-upload message can be checked with a small file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.browser import (
    chromium_page,
    open_page,
    require_chromium,
    screenshot,
    streamlit_server,
    wait_idle,
    wait_layout,
)
from tests.app.conftest import ARTIFACTS, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def needs_chromium():
    require_chromium()


def wait_for_a_run_on(workspace: Path, dataset: str, timeout: float) -> Path:
    """The folder of the run on ``dataset`` once it has ended (the run trains in its own process)."""
    import json

    from recsys.train.run import read_status

    def ended():
        for config in (workspace / "runs").glob("*/config.json"):
            if json.loads(config.read_text())["config"]["dataset"] == dataset:
                if read_status(config.parent)["state"] not in ("running", "unknown"):
                    return config.parent
        return None

    return wait_for(ended, timeout=timeout, every=1.0, what=f"a run on {dataset} to end")


def visible(page, text: str, timeout: float = 60.0) -> None:
    page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout * 1000)


def test_every_page_in_a_real_browser(trained_workspace, tmp_path):
    out = ARTIFACTS / "browser"
    with (
        streamlit_server(trained_workspace, out / "server.log", ["--server.maxUploadSize", "1"]) as url,
        chromium_page() as page,
    ):
        try:
            # a deep link as the very first request still goes through app.py's navigation
            open_page(page, url, "data")
            visible(page, "Interactions per item")
            nav = page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()
            assert [n.split()[-1] for n in nav] == [
                "Home",
                "Data",
                "Train",
                "Recommendations",
                "Attention",
                "Experiments",
            ], nav
            assert page.locator('[data-testid="stImage"]').count() >= 12
            screenshot(page, out / "data.png")
            # an upload over the configured limit is refused with a clear message, and nothing breaks
            page.get_by_role("tab", name="Import").click()
            big = tmp_path / "too-big.csv"
            big.write_bytes(b"item_id,title\n" + b"x,y\n" * 400_000)  # 1.6 MB > 1 MB
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(big))
            page.get_by_text("File must be 1.0MB or smaller").first.wait_for(state="attached", timeout=60_000)
            page.locator('[data-testid="stFileChipIconError"]').first.wait_for()
            visible(page, "a larger file is refused")
            screenshot(page, out / "data-too-big.png", full=False)

            open_page(page, url, "home")
            visible(page, "Multimodal recommender studio")
            visible(page, "Fusion on demo")
            screenshot(page, out / "home.png")

            open_page(page, url, "train")
            visible(page, "New training run")
            visible(page, "Test metrics against the baselines")
            screenshot(page, out / "train.png")

            open_page(page, url, "recommendations")
            visible(page, "Top 10 for")
            selectbox = page.locator('[data-testid="stSelectbox"]').filter(has_text="User")
            current = selectbox.inner_text()
            selectbox.locator("input").click()
            options = page.locator('[role="option"]')
            options.nth(2).wait_for()
            chosen = options.nth(2).inner_text().split(" · ")[0].strip()
            options.nth(2).click()
            wait_idle(page)
            visible(page, f"Top 10 for {chosen}")
            assert chosen not in current
            cards = page.locator('[data-testid="stPopover"]')
            assert cards.count() == 10
            cards.first.locator("button").click()
            visible(page, "How much each modality weighs")
            page.locator(".main-svg text", has_text="attention weight").first.wait_for(timeout=120_000)
            wait_layout(page)
            screenshot(page, out / "recommendations-why.png", full=False)
            page.keyboard.press("Escape")
            screenshot(page, out / "recommendations.png")

            open_page(page, url, "attention")
            visible(page, "Behaviour — mean weight")
            assert page.locator('[data-testid="stPlotlyChart"]').count() >= 5
            page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for()
            screenshot(page, out / "attention.png")

            open_page(page, url, "experiments")
            visible(page, "Compare runs")
            visible(page, "Download the model")
            screenshot(page, out / "experiments.png")
        except Exception:
            screenshot(page, out / "failure.png", full=False)  # what the browser showed when it went wrong
            raise
    for name in ("home", "data", "train", "recommendations", "attention", "experiments"):
        assert Path(out / f"{name}.png").stat().st_size > 10_000


def test_a_sparse_catalogue_uploaded_in_the_browser_trains_with_defaults(trained_workspace, tmp_path):
    """The real-catalogue path: a sparse fashion-like bundle (median ~4 purchases per customer, codes, a third
    of the pictures missing) uploaded as a .zip, trained with the form's defaults, then explored."""
    import zipfile

    from tests.conftest import write_sparse_shop_bundle

    folder = write_sparse_shop_bundle(tmp_path / "shop")
    archive = tmp_path / "shop.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in folder.rglob("*"):
            if path.is_file():
                bundle.write(path, path.relative_to(folder).as_posix())
    out = ARTIFACTS / "browser-sparse"
    with streamlit_server(trained_workspace, out / "server.log") as url, chromium_page() as page:
        try:
            open_page(page, url, "data")
            page.get_by_role("tab", name="Import").click()
            page.get_by_text("Upload a .zip bundle").first.click()
            wait_idle(page)
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(archive))
            visible(page, "Each column's role was inferred", timeout=120)
            # the report says which protocol fits before anything trains
            visible(page, "Evaluation: sparse (leave-last-out, no filter)", timeout=120)
            screenshot(page, out / "data-import.png")
            page.get_by_role("button", name="Import dataset").click()
            visible(page, "Explore it in the Explore tab", timeout=180)

            open_page(page, url, "train")  # the dataset just imported is the active one
            visible(page, "New training run")
            visible(page, "Evaluation: sparse", timeout=120)
            screenshot(page, out / "train.png")
            page.get_by_role("button", name="Start training").click()
            visible(page, "Training started", timeout=120)
            run_dir = wait_for_a_run_on(trained_workspace, "shop", timeout=900)
            from recsys.train.run import read_status

            assert read_status(run_dir)["state"] == "finished", read_status(run_dir)
            open_page(page, url, "train")
            visible(page, "Test metrics against the baselines", timeout=120)
            screenshot(page, out / "train-finished.png")

            open_page(page, url, "recommendations")  # the latest run on the active dataset
            visible(page, "Top 10 for", timeout=120)
            assert "Fusion on shop" in page.locator('[data-testid="stSelectbox"] input').first.input_value()
            page.locator('[data-testid="stPopover"]').first.locator("button").click()
            visible(page, "How much each modality weighs", timeout=120)
            # the per-modality chart itself draws in the popover (not only its caption)
            page.locator(".main-svg text", has_text="attention weight").first.wait_for(timeout=120_000)
            wait_layout(page)
            screenshot(page, out / "recommendations-why.png", full=False)
            page.keyboard.press("Escape")

            open_page(page, url, "attention")
            page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=120_000)
            screenshot(page, out / "attention.png")
            open_page(page, url, "experiments")
            visible(page, "Compare runs")
            screenshot(page, out / "experiments.png")
            assert page.get_by_text("This page ran into a problem").count() == 0
        except Exception:
            screenshot(page, out / "failure.png", full=False)
            raise
