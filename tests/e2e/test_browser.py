"""A real browser on the pages a person opens after an end-to-end run.

Headless Chromium (Debian's ``chromium``, driven by playwright with ``executable_path``: no
browser download) opens the MLflow run page, the registered model's version page and the
Prefect flow-run page of the session's ``trained_run`` (see conftest.py), checks that the run's
metrics, its model and the flow run's state are shown, and saves a full-page PNG of each page
in ``$ECG_SCREENSHOT_DIR`` (default ``data/screenshots/``; the paths are printed, ``-rP`` shows
them). Without chromium (``$ECG_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on the
PATH) or without the playwright package the module is skipped with the reason. Both UIs are
single-page apps: every check waits for its text to render, never for a fixed time.
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import pytest
from e2e_support import call

REPO = Path(__file__).resolve().parents[2]
MODEL = "dt4ecg-demo"
# What the run page must show, with the values MLflow's REST API returns.
METRICS = ("heldout_score", "identity_test_accuracy", "activity_test_accuracy")
# The first render waits on the servers' answers and a cold browser on two busy cores.
FIRST_RENDER_MS = 120_000
RENDER_MS = 60_000
# This machine's closed network refuses Chromium's background connections, and the servers
# are on loopback: nothing may go elsewhere or through a proxy. A small /dev/shm (containers)
# must not crash the renderer.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--disable-dev-shm-usage",
)


def find_chromium(env: dict[str, str] | None = None) -> tuple[str | None, str]:
    """The Chromium to drive, or None and why not.

    ``$ECG_CHROMIUM`` (a path or a command name) wins and is not second-guessed: when it names
    nothing executable there is no fallback. Otherwise ``chromium``, then ``chromium-browser``,
    on the PATH.
    """
    env = os.environ if env is None else env
    path = env.get("PATH")
    wanted = env.get("ECG_CHROMIUM", "").strip()
    if wanted:
        found = shutil.which(wanted, path=path)
        return found, "" if found else f"ECG_CHROMIUM={wanted!r} is not an executable"
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name, path=path):
            return found, ""
    return None, (
        "no chromium: neither `chromium` nor `chromium-browser` is on the PATH and ECG_CHROMIUM "
        "is not set (Debian: apt-get install chromium; .ci/run does it)"
    )


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"playwright is not importable ({exc}): pip install -c constraints.txt -e '.[dev]'"
    return find_chromium()[1] or None


SKIP_REASON = _skip_reason()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
]


@contextmanager
def launch_chromium(executable: str):
    """A headless Chromium (a fresh temporary profile, removed on exit) driven by playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            timeout=FIRST_RENDER_MS,
        )
        try:
            yield browser
        finally:
            browser.close()


# --- fixtures and helpers ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    with launch_chromium(find_chromium()[0]) as launched:
        yield launched


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(RENDER_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def screenshot_dir() -> Path:
    folder = Path(os.environ.get("ECG_SCREENSHOT_DIR") or REPO / "data" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def page_text(page) -> str:
    try:
        return page.inner_text("body", timeout=5_000)
    except Exception as exc:  # a crashed or navigating page: say so instead
        return f"<page text unavailable: {exc}>"


def screenshot(page, path: Path) -> Path:
    """A PNG of the whole page, including what the app scrolls inside its own panes.

    Both UIs scroll an inner element, not the document, so ``full_page`` alone gives one
    screen: the viewport is first made tall enough for the tallest such pane.
    """
    extra = page.evaluate("""() => Math.max(0, ...[...document.querySelectorAll('*')]
        .filter(e => e.clientHeight > innerHeight / 2
                     && /auto|scroll/.test(getComputedStyle(e).overflowY))
        .map(e => e.scrollHeight - e.clientHeight))""")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(size["height"] + extra, 12_000)})
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    if not path.stem.endswith("-failed"):  # this page passed: drop an earlier run's failure
        path.with_name(f"{path.stem}-failed.png").unlink(missing_ok=True)
    print(f"screenshot: {path}")
    return path


def shown(page, locator, what: str, shot: Path, timeout_ms: int = RENDER_MS):
    """Wait until ``locator`` is visible; otherwise fail with the page's text and a screenshot."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        locator.first.wait_for(state="visible", timeout=timeout_ms)
    except PlaywrightError as exc:
        try:
            failed = screenshot(page, shot.with_name(f"{shot.stem}-failed.png"))
        except PlaywrightError as shot_exc:
            failed = f"failed too ({shot_exc})"
        raise AssertionError(
            f"{what} not shown on {page.url} within {timeout_ms / 1000:.0f} s "
            f"({type(exc).__name__}); screenshot {failed}\n--- page text ---\n{page_text(page)}"
        ) from None
    return locator.first


def number_in(text: str) -> float | None:
    """The first decimal number in a cell's text, as the UI wrote it (maybe rounded)."""
    found = re.search(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?", text)
    return float(found[0].replace(",", "")) if found else None


# --- tests -------------------------------------------------------------------------------------
def test_mlflow_run_page_shows_the_metrics_and_the_model(stack, trained_run, page, screenshot_dir):
    run = trained_run["mlflow_runs"][0]
    info, metrics = run["info"], {m["key"]: m["value"] for m in run["data"]["metrics"]}
    shot = screenshot_dir / "mlflow-run.png"
    page.goto(f"{stack['mlflow_ui']}/#/experiments/{info['experiment_id']}/runs/{info['run_id']}")

    shown(
        page,
        page.get_by_text(info["run_name"], exact=True),
        "the run's name",
        shot,
        FIRST_RENDER_MS,
    )
    for key in METRICS:
        # The metrics table: one row per metric, cells name | value | models.
        row = shown(
            page,
            page.get_by_role("row").filter(has=page.get_by_text(key, exact=True)),
            f"the metrics row of {key}",
            shot,
        )
        cells = row.get_by_role("cell").all_inner_texts()
        value = number_in(cells[1]) if len(cells) > 1 else None
        assert value == pytest.approx(metrics[key], abs=1e-3), (
            f"{key}: the page shows {cells}, MLflow's REST API {metrics[key]}\n"
            f"--- page text ---\n{page_text(page)}"
        )

    # The model: the logged model and its registered version, linked from the run page.
    shown(page, page.get_by_text("Logged models (1)"), "the run's logged model", shot)
    query = urllib.parse.urlencode({"filter": f"run_id='{info['run_id']}'"})
    versions = call(f"{stack['mlflow']}/api/2.0/mlflow/model-versions/search?{query}")
    versions = [v for v in versions.get("model_versions", []) if v["name"] == MODEL]
    assert len(versions) == 1, versions
    version = versions[0]["version"]
    link = shown(
        page,
        page.get_by_role("link", name=MODEL, exact=True),
        f"the link to the registered model {MODEL}",
        shot,
    )
    href = link.get_attribute("href") or ""
    assert href.endswith(f"/models/{MODEL}/versions/{version}"), href
    shown(page, page.get_by_text("Registered models", exact=True), "'Registered models'", shot)
    # The metrics table scrolls inside the page: bring the checked rows into the screenshot.
    row = page.get_by_role("row").filter(has=page.get_by_text(METRICS[0], exact=True))
    row.first.evaluate("row => row.scrollIntoView({block: 'center'})")
    screenshot(page, shot)

    # The registered version's own page: its source run and its held-out score tag.
    shot = screenshot_dir / "mlflow-model-version.png"
    page.goto(f"{stack['mlflow_ui']}/#/models/{MODEL}/versions/{version}")
    shown(
        page,
        page.get_by_text(f"Version {version}", exact=True),
        f"{MODEL} version {version}",
        shot,
        FIRST_RENDER_MS,
    )
    shown(
        page,
        page.get_by_role("link", name=info["run_name"], exact=True),
        "the version's source run",
        shot,
    )
    # The version's tags table: the score it was registered with (tracking/registry.py).
    tag = shown(
        page,
        page.get_by_role("row").filter(has=page.get_by_text("heldout_score", exact=True)),
        "the version's heldout_score tag",
        shot,
    )
    text = tag.inner_text()
    assert number_in(text.replace("heldout_score", "")) == pytest.approx(
        metrics["heldout_score"], abs=1e-3
    ), f"the heldout_score tag row reads {text!r}, the run's metric is {metrics['heldout_score']}"
    screenshot(page, shot)


def test_prefect_flow_run_page_shows_the_completed_run(stack, trained_run, page, screenshot_dir):
    flow_run = trained_run["flow_run"]
    shot = screenshot_dir / "prefect-flow-run.png"
    # The UI learns its API's address from /ui-settings: a server on another port than 4200
    # that was not given PREFECT_UI_API_URL sends every browser to 127.0.0.1:4200.
    ui_api = call(f"{stack['prefect_ui']}/ui-settings")["api_url"]
    assert ui_api.rstrip("/") == stack["api"].rstrip("/"), (
        f"the Prefect UI is told that its API is at {ui_api}, not {stack['api']}: the server "
        "needs PREFECT_UI_API_URL (see start_prefect in ecg_pipeline/stack/servers.py)"
    )
    page.goto(f"{stack['prefect_ui']}/runs/flow-run/{flow_run['id']}")

    shown(
        page,
        page.get_by_text(flow_run["name"], exact=True),
        "the flow run's name",
        shot,
        FIRST_RENDER_MS,
    )
    shown(page, page.get_by_text("Completed", exact=True), "the state 'Completed'", shot)
    shown(page, page.get_by_text("ingest-train", exact=True), "the flow's name", shot)
    # Task runs are named <task>-<3 hex>; the logs tab (open by default) names each one.
    shown(
        page, page.get_by_text(re.compile(r"^evaluate-[0-9a-f]{3}$")), "the evaluate task run", shot
    )
    screenshot(page, shot)
