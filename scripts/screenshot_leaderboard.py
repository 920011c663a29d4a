"""Render a leaderboard page in headless Chromium and save a full-page PNG screenshot.

    python scripts/screenshot_leaderboard.py runs/leaderboard.html [--png shot.png] [--width 1400]

Talks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (file descriptors 3
and 4, NUL-terminated JSON messages; no extra Python package): opens the page, waits for
its load event, sizes the viewport to the whole page and captures it. Writes the PNG
(default: beside the page, ``.png``) and, beside the PNG, ``.json`` with the page height and
every image's box in CSS pixels and whether it decoded, for checks. Needs ``chromium`` on
PATH (Debian: ``apt-get install chromium``); runs it with ``--no-sandbox`` so that it works
as root.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MEASURE = """JSON.stringify({
  height: Math.ceil(document.documentElement.scrollHeight),
  images: Array.from(document.images).map((img) => {
    const box = img.getBoundingClientRect();
    return {x: box.left + scrollX, y: box.top + scrollY, width: box.width, height: box.height,
            natural_width: img.naturalWidth, natural_height: img.naturalHeight, decoded: img.complete};
  }),
})"""


def find_browser() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class DevTools:
    """A headless browser driven over the DevTools pipe."""

    def __init__(self, browser: str, timeout: float = 60.0) -> None:
        self.timeout, self.next_id, self.buffer = timeout, 0, b""
        commands_read, self.commands = os.pipe()  # we write, the browser reads on fd 3
        self.replies, replies_write = os.pipe()  # the browser writes on fd 4, we read
        self.profile = tempfile.TemporaryDirectory(prefix="wsbench-chromium-")

        def as_fds_3_and_4() -> None:  # in the child (this script starts no threads): both ends above 9, then 3, 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, replies_write)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile.name}", "about:blank"],
            preexec_fn=as_fds_3_and_4, close_fds=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(commands_read)
        os.close(replies_write)

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.replies], [], [], left)[0]:
                raise TimeoutError("the browser did not answer in time")
            chunk = os.read(self.replies, 1 << 20)
            if not chunk:
                raise ConnectionError("the browser closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command and return its result (events met meanwhile are dropped)."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def wait_for(self, event: str) -> None:
        deadline = time.monotonic() + self.timeout
        while self._message(deadline).get("method") != event:
            pass

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (OSError, RuntimeError, TimeoutError, ConnectionError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.commands)
        os.close(self.replies)
        self.profile.cleanup()


@contextmanager
def open_page(page: Path, width: int = 1400, browser: str | None = None) -> Iterator[tuple[DevTools, str]]:
    """A browser showing ``page`` (loaded) in a viewport ``width`` CSS pixels wide: the
    DevTools connection and the page's session id, for ``tools.call(method, session, ...)``."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no browser on PATH (looked for {', '.join(BROWSERS)}); "
                                "install one: apt-get install chromium")
    tools = DevTools(browser)
    try:
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tools.call("Page.enable", session)
        tools.call("Emulation.setDeviceMetricsOverride", session, width=width, height=900, deviceScaleFactor=1,
                   mobile=False)
        tools.call("Page.navigate", session, url=page.resolve().as_uri())
        tools.wait_for("Page.loadEventFired")
        yield tools, session
    finally:
        tools.close()


def evaluate(tools: DevTools, session: str, expression: str):
    """The JSON value of a JavaScript expression in the page."""
    return tools.call("Runtime.evaluate", session, expression=expression, returnByValue=True)["result"].get("value")


def screenshot(page: Path, png: Path, width: int = 1400, browser: str | None = None) -> dict:
    """Render ``page`` at ``width`` CSS pixels wide and write the whole page to ``png``;
    returns the page height and its images' boxes (also written to ``png`` with ``.json``)."""
    with open_page(page, width, browser) as (tools, session):
        height = json.loads(evaluate(tools, session, MEASURE))["height"]
        tools.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1,
                   mobile=False)
        layout = json.loads(evaluate(tools, session, MEASURE))
        data = tools.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)["data"]
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(base64.b64decode(data))
    layout["width"] = width
    png.with_suffix(".json").write_text(json.dumps(layout, indent=1) + "\n")
    return layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Full-page PNG screenshot of a leaderboard page (headless Chromium).")
    parser.add_argument("page", type=Path, help="the HTML page, e.g. runs/leaderboard.html")
    parser.add_argument("--png", type=Path, help="where to write the screenshot (default: the page with .png)")
    parser.add_argument("--width", type=int, default=1400, help="viewport width in CSS pixels (default 1400)")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"error: {args.page}: no such page; give a leaderboard.html "
              "(python -m benchmarks.leaderboard writes one)", file=sys.stderr)
        return 2
    png = args.png or args.page.with_suffix(".png")
    try:
        layout = screenshot(args.page, png, args.width)
    except (FileNotFoundError, TimeoutError, ConnectionError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{png}: {layout['width']} x {layout['height']} CSS pixels, {len(layout['images'])} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
