"""The documentation site: built pages render in a real browser, and page code that fails fails the build.

Marked ``docs``: outside ``make test``'s budget; ``make docs-test`` builds the site (``make docs``) and runs
these: the home page and two tutorials render (no console errors, failed requests or broken figures, a
screenshot that is not blank). The browser is Debian's ``chromium`` (headless), driven over the DevTools
protocol on a pipe (``--remote-debugging-pipe``: JSON messages separated by NUL bytes), so no driver or
extra package is needed. Screenshots go to ``logs/docs-screenshots/``.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.docs

SITE = ROOT / "site"
SHOTS = ROOT / "logs" / "docs-screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# the pages the browser opens: the front page and two tutorials with figures (the second with a figure a run
# drew, one the page drew, and a run's log)
PAGES = {"home": ("index.html", 0), "tutorial": ("tutorials/lif-digits/index.html", 1),
         "conv_tutorial": ("tutorials/conv-cifar/index.html", 2)}


class Browser:
    """Headless Chromium over the DevTools protocol on a pipe (fd 3 in, fd 4 out, from Chromium's side)."""

    def __init__(self, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium reads fd 3 and writes fd 4: map them in the child
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=functools.partial(_map_fds, to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def _map_fds(to_chrome_r: int, from_chrome_w: int) -> None:
    os.dup2(to_chrome_r, 3)
    os.dup2(from_chrome_w, 4)


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        pytest.fail("site/ is not built: run `make docs` first (make docs-test does)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the browser checks need it")
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def problems(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions, failed requests and error log entries among DevTools events."""
    found = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            found.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            found.append("exception: " + p["exceptionDetails"].get("exception", {}).get("description", p["exceptionDetails"].get("text", "")))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            found.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        elif method == "Network.loadingFailed" and not p.get("canceled"):
            found.append(f"request failed: {p.get('errorText')} ({p.get('type')})")
        elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
            found.append(f"HTTP {p['response']['status']}: {p['response']['url']}")
    return found


def blank_fraction(png: bytes) -> float:
    """The share of the screenshot's pixels that have its most common colour (1.0 = a blank page)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=image.width * image.height)
    return max(count for count, _ in colours) / (image.width * image.height)


@pytest.mark.parametrize("name", list(PAGES))
def test_page_renders(name, server, browser):
    path, min_figures = PAGES[name]
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.events.clear()
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    browser.send("Page.navigate", {"url": server + path}, session=session)
    browser.wait_for("Page.loadEventFired")
    time.sleep(1.0)  # let the search worker and late requests report
    browser.send("Runtime.evaluate", {"expression": "1"}, session=session)  # drain events that arrived

    title = browser.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                         session=session)["result"]["value"]
    assert "spikelight" in title, title
    figures = browser.send("Runtime.evaluate", {
        "expression": "Array.from(document.querySelectorAll('img.spikelight-figure'))"
                      ".map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])",
        "returnByValue": True}, session=session)["result"]["value"]
    assert len(figures) >= min_figures, f"{path}: {len(figures)} figures, expected at least {min_figures}"
    broken = [f for f in figures if not (f[1] and f[2] > 100 and f[3] > 100)]
    assert not broken, f"{path}: figures that did not load: {broken}"
    if figures:  # show the first figure in the screenshot
        browser.send("Runtime.evaluate", {"expression":
                     "document.querySelector('img.spikelight-figure').scrollIntoView({block: 'center'})"},
                     session=session)
        time.sleep(0.3)

    shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / f"{name}.png").write_bytes(shot)
    assert blank_fraction(shot) < 0.97, f"{path}: the screenshot is (nearly) one colour"

    found = problems(browser.events)
    browser.send("Target.closeTarget", {"targetId": target})
    assert not found, f"{path}: " + "; ".join(found)


def _build(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    (tmp_path / "docs").mkdir(parents=True)
    (tmp_path / "docs" / "index.md").write_text(f'# page\n\n```python exec="1"\n{code}\n```\n')
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nplugins:\n  - markdown-exec\nmarkdown_extensions:\n  - pymdownx.superfences\n"
    )
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_failing_page_code_fails_the_build(tmp_path):
    """The site's promise, every page true because it runs: a code block that raises stops --strict."""
    bad = _build(tmp_path / "bad", 'raise ValueError("this page is wrong")')
    assert bad.returncode != 0 and "this page is wrong" in bad.stderr, bad.stderr[-2000:]
    good = _build(tmp_path / "good", 'print("fine")')
    assert good.returncode == 0, good.stderr[-2000:]
