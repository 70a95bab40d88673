"""Headless Chromium (Debian's `chromium`) driven with the Chrome DevTools protocol over
--remote-debugging-pipe (fds 3 and 4, NUL-separated JSON): no websocket, no extra package."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed "
                                    "(apt-get install -y chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-default-apps", "--disable-sync",
         "--disable-extensions", "--mute-audio"]


class CdpError(RuntimeError):
    pass


class Chrome:
    """One headless browser with one page. Events are kept in self.events (method, params)."""

    def __init__(self, profile, width=1200, height=800, timeout=60.0):
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()

        def child_fds():  # Chromium reads commands from fd 3 and writes answers to fd 4
            a, b = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)  # (a pipe end that already was fd 3 or 4 would keep its close-on-exec flag)
            os.dup2(b, 4)
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, "--remote-debugging-pipe", "--user-data-dir=%s" % profile,
                                      "--window-size=%d,%d" % (width, height), "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     close_fds=False, preexec_fn=child_fds)
        os.close(to_r)
        os.close(from_w)
        self.timeout = timeout
        self._buf = b""
        self._id = 0
        self.events: list[tuple[str, dict]] = []
        self.session = None
        target = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.call(domain + ".enable")

    def _read(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("no answer from Chromium in %.0f s" % self.timeout)
            r, _, _ = select.select([self._from_r], [], [], left)
            if r:
                chunk = os.read(self._from_r, 1 << 20)
                if not chunk:
                    raise CdpError("Chromium closed the pipe (exit %s)" % self.proc.poll())
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise CdpError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append((m["method"], m.get("params", {})))

    def wait_event(self, method, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        for i, (name, params) in enumerate(self.events):
            if name == method:
                del self.events[i]
                return params
        while True:
            m = self._read(deadline)
            if m.get("method") == method:
                return m.get("params", {})
            if "method" in m:
                self.events.append((m["method"], m.get("params", {})))

    def navigate(self, url):
        self.events = [e for e in self.events if e[0] != "Page.loadEventFired"]
        r = self.call("Page.navigate", url=url)
        if r.get("errorText"):
            raise CdpError("navigate %s: %s" % (url, r["errorText"]))
        if r.get("loaderId"):  # a new document (a change of the #fragment only stays in the same one)
            self.wait_event("Page.loadEventFired")
        self.eval("new Promise(function (ok) { requestAnimationFrame(function () { ok(1); }); })")

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise CdpError("%s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def click(self, selector, navigates=False):
        """A real mouse click at the centre of the element (scrolled into view).

        navigates=True: the click loads a new document; wait for its load event instead of
        settling in the page being left (its context is destroyed under the evaluation)."""
        box = self.eval("(function(){var e=document.querySelector(%s); if(!e) return null; e.scrollIntoView({block:'center'});"
                        "var r=e.getBoundingClientRect(); return [r.left+r.width/2, r.top+r.height/2];})()"
                        % json.dumps(selector))
        if box is None:
            raise CdpError("no element %s" % selector)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
        if navigates:
            self.wait_event("Page.loadEventFired")
        else:
            self.settle()

    def settle(self, ms=50):
        """Let queued events (hashchange, a navigation) run."""
        self.eval("new Promise(function (ok) { setTimeout(ok, %d); })" % ms)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def exceptions(self) -> list[str]:
        return [p.get("exceptionDetails", {}).get("exception", {}).get("description")
                or p.get("exceptionDetails", {}).get("text", "?")
                for name, p in self.events if name == "Runtime.exceptionThrown"]

    def requests(self) -> list[str]:
        return [p["request"]["url"] for name, p in self.events if name == "Network.requestWillBeSent"]

    def close(self):
        try:
            self.call("Browser.close")
        except (CdpError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_w, self._from_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
