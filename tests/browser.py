"""Opening an HTML page in headless Chromium with the network off, and listing what a reader would hit.

`check_page(html, screenshot)` is the one check: console errors, images that did not load, internal
links and #anchors that lead nowhere, and any request for something other than a `file:` or `data:`
URL; it also saves a full-page screenshot. Chromium and its driver are Debian's (`chromium`,
`chromium-driver`); selenium is given the driver's path, so nothing is downloaded at test time.

Given axe-core's `axe.min.js` (`$CARCOLOR_AXE`: .ci/run installs axe-core from npm), it also audits the
page's accessibility (WCAG rules, as most checkers do): the script is injected into the opened page, and
a serious or critical violation is a problem; moderate and minor ones are listed (`violations`).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

BROWSERS = ("chromium", "chromium-browser")
ALLOWED_SCHEMES = ("file", "data")
WIDTH = 1280
AXE_VARIABLE = "CARCOLOR_AXE"  # the path of axe-core's axe.min.js
BLOCKING = ("serious", "critical")  # the impacts that fail a page


class AccessibilityNote(UserWarning):
    """A moderate or minor accessibility violation: listed in the test output, not a failure."""


def _missing(msg: str) -> None:
    """Skip the test, or fail it where the variable CI is set (.ci/run installs what is missing)."""
    if os.environ.get("CI"):
        pytest.fail(f"{msg} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(msg)


def tools() -> tuple[str, str]:
    """Chromium's and chromedriver's paths; where one is missing the test is skipped, or fails under CI."""
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        _missing(f"browser check needs {', '.join(missing)}: "
                 "apt-get install -y --no-install-recommends chromium chromium-driver")
    return browser, driver


def axe_found() -> Path | None:
    """axe-core's axe.min.js named by $CARCOLOR_AXE, where that file exists."""
    value = os.environ.get(AXE_VARIABLE)
    return Path(value) if value and Path(value).is_file() else None


def axe_script() -> Path:
    """axe.min.js; where it is missing the test is skipped, or fails under CI."""
    path = axe_found()
    if path is None:
        _missing(f"the accessibility check needs axe-core: npm install axe-core@4 in a folder of your choice, "
                 f"then {AXE_VARIABLE}=<that folder>/node_modules/axe-core/axe.min.js")
    return path


def _driver(browser: str, driver: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--disable-extensions", f"--window-size={WIDTH},900",
                # the network off: no name resolves, and nothing may be proxied anywhere
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost", "--proxy-server=127.0.0.1:9",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    chrome.set_page_load_timeout(60)
    chrome.execute_cdp_cmd("Network.enable", {})
    chrome.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    return chrome


_PAGE_FACTS = """
const anchors = new Set([...document.querySelectorAll('[id]')].map(e => e.id)
    .concat([...document.querySelectorAll('a[name]')].map(e => e.getAttribute('name'))));
return {
  images: [...document.images].map(i => ({src: (i.currentSrc || i.src || '').slice(0, 100),
                                           complete: i.complete, width: i.naturalWidth})),
  links: [...document.querySelectorAll('a[href]')].map(a => ({href: a.getAttribute('href'), url: a.href})),
  anchors: [...anchors],
  title: document.title,
};
"""


def _requests(performance_log: list[dict]) -> list[str]:
    urls = []
    for entry in performance_log:
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _link_problems(links: list[dict], anchors: set[str], page: Path) -> list[str]:
    problems = []
    for link in links:
        href, url = link["href"], urlsplit(link["url"])
        if href.startswith("#"):
            target = unquote(href[1:])
            if target and target not in anchors:
                problems.append(f"link '{href}': no element with id '{target}' in {page.name}")
        elif url.scheme == "file":
            path = Path(unquote(url.path))
            if not path.is_file():
                problems.append(f"link '{href}': {path} does not exist")
            elif url.fragment and path.resolve() != page.resolve():
                text = path.read_text(encoding="utf-8", errors="replace")
                if f'id="{unquote(url.fragment)}"' not in text:
                    problems.append(f"link '{href}': no id '{url.fragment}' in {path.name}")
            elif url.fragment and unquote(url.fragment) not in anchors:
                problems.append(f"link '{href}': no element with id '{url.fragment}' in {page.name}")
    return problems


def _screenshot(chrome, out: Path) -> Path:
    size = chrome.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = chrome.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    return out


_AXE_RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
  targets: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))), e => done([{id: 'axe-error', impact: 'critical',
  help: String(e), nodes: 0, targets: []}]));
"""


def _audit(chrome, axe: Path) -> list[dict]:
    """axe-core's violations on the open page: {id, impact, help, nodes (how many), targets (the first 3)}."""
    chrome.set_script_timeout(120)
    chrome.execute_script(axe.read_text(encoding="utf-8"))
    return chrome.execute_async_script(_AXE_RUN)


def describe(violation: dict) -> str:
    v = violation
    return f"{v['impact']}: {v['id']} ({v['help']}) on {v['nodes']} element(s), e.g. {'; '.join(v['targets'])}"


def check_page(html: str | Path, screenshot: str | Path, axe: Path | None = None) -> dict:
    """Open html in headless Chromium with the network off; return what a reader would find wrong.

    Returns {"problems": [one line each], "images": n, "links": [hrefs], "requests": [urls], "screenshot": path,
    "console": [entries], "violations": [axe's, see _audit] or None without ``axe``}. Problems: console
    messages at level SEVERE, an <img> not complete or with naturalWidth 0, an '#id' link with no such id in
    the page, a relative link to a file that does not exist (or lacks the #id it names), a request for any
    URL that is not file: or data:, and (with ``axe``, the path of axe.min.js) each serious or critical
    accessibility violation; the moderate and minor ones are issued as :class:`AccessibilityNote` warnings.
    """
    page = Path(html).resolve()
    if not page.is_file():
        raise FileNotFoundError(f"no page to check at '{page}'")
    chrome = _driver(*tools())
    try:
        chrome.get(page.as_uri())
        facts = chrome.execute_script(_PAGE_FACTS)
        shot = _screenshot(chrome, Path(screenshot))
        violations = _audit(chrome, Path(axe)) if axe else None
        console = chrome.get_log("browser")
        requests = _requests(chrome.get_log("performance"))
    finally:
        chrome.quit()
    problems = [f"console {e['level']}: {e['message']}" for e in console if e["level"] == "SEVERE"]
    problems += [f"image not loaded: {i['src']}" for i in facts["images"] if not (i["complete"] and i["width"] > 0)]
    problems += _link_problems(facts["links"], set(facts["anchors"]), page)
    problems += [f"request leaves the file: {url[:200]}" for url in requests
                 if urlsplit(url).scheme not in ALLOWED_SCHEMES]
    for v in violations or []:
        if v["impact"] in BLOCKING:
            problems.append(f"accessibility, {describe(v)}")
        else:
            warnings.warn(AccessibilityNote(f"{page.name}: {describe(v)}"), stacklevel=2)
    return {"problems": problems, "images": len(facts["images"]), "links": [link["href"] for link in facts["links"]],
            "requests": requests, "screenshot": shot, "console": console, "title": facts["title"],
            "violations": violations}
