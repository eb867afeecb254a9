"""Open an HTML file in a real headless Chromium and report what a reader's browser would see.

Talks the Chrome DevTools Protocol over a websocket: console errors, uncaught exceptions and
failed loads are collected while the page loads, then every image's natural width is read and
a full-page screenshot is taken.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--no-first-run", "--mute-audio",
                  "--disable-extensions", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-port=0", "--window-size=1280,900"]


def find_chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                       "google-chrome")) if p), None)


@dataclass
class PageCheck:
    console_errors: list[str] = field(default_factory=list)
    image_widths: list[int] = field(default_factory=list)
    screenshot: bytes = b""


class _Session:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=deadline - time.monotonic())))


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            out.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            out.append(params["entry"]["text"])
    return out


def check_page(chromium: str, html: Path) -> PageCheck:
    # Chromium's helper processes may still write to the profile while they exit
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                 "about:blank"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text().strip():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"chromium did not start (exit code {proc.poll()})")
                time.sleep(0.1)
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            with connect(pages[0]["webSocketDebuggerUrl"], max_size=None,
                         open_timeout=30) as ws:
                session = _Session(ws)
                for domain in ("Runtime", "Log", "Page"):
                    session.call(f"{domain}.enable")
                session.call("Page.navigate", url=html.resolve().as_uri())
                session.wait_for("Page.loadEventFired")
                widths = session.call("Runtime.evaluate", returnByValue=True, expression=(
                    "Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)"))
                shot = session.call("Page.captureScreenshot", format="png",
                                    captureBeyondViewport=True)
            return PageCheck(_errors(session.events), list(widths["result"]["value"]),
                             base64.b64decode(shot["data"]))
        finally:  # the whole process group: browser, renderers, helpers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
