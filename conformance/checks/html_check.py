"""Opens report.html pages in headless Chromium over the DevTools protocol (on a pipe: nothing
listens on a port) and fails when a page logs a console error, throws, fails to load anything,
or asks for anything besides itself (report.html must be self-contained). Writes one PNG
screenshot per page and prints its size, its sections and the page's byte size.

Usage: python3 html_check.py CHROMIUM OUT_DIR PAGE.html...
Standard library only.
"""

import base64
import json
import os
import subprocess
import sys
import time

TIMEOUT_S = 120


class Browser:
    def __init__(self, binary):
        cmd_r, self.cmd_w = os.pipe()
        self.evt_r, evt_w = os.pipe()

        def fds():
            # Chromium reads commands on fd 3 and writes on fd 4; dup first so neither clobbers
            # the other when the pipes happen to be 3 or 4 already.
            a, b = os.dup(cmd_r), os.dup(evt_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--remote-debugging-pipe", "--window-size=1280,2000",
             "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds,
            stdout=subprocess.DEVNULL, stderr=open(os.environ.get("HTML_CHECK_LOG", os.devnull), "w"))
        os.close(cmd_r)
        os.close(evt_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read(self, deadline):
        while b"\0" not in self.buf:
            if time.time() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self.evt_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + TIMEOUT_S
        while True:
            m = self._read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def wait_event(self, method, deadline):
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def check(browser, page, out_dir):
    url = "file://" + os.path.abspath(page)
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Network", "Page"):
        browser.call(f"{domain}.enable", session=session)
    browser.events.clear()
    nav = browser.call("Page.navigate", {"url": url}, session=session)
    if nav.get("errorText"):
        return [f"navigation failed: {nav['errorText']}"], None
    browser.wait_event("Page.loadEventFired", time.time() + TIMEOUT_S)
    sections = browser.call("Runtime.evaluate", {
        "expression": "document.querySelectorAll('section').length + ' sections, ' + "
                      "document.querySelectorAll('svg').length + ' svg'",
        "returnByValue": True}, session=session)["result"]["value"]
    shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)
    png = os.path.join(out_dir, os.path.basename(os.path.dirname(os.path.abspath(page))) + ".png")
    with open(png, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    errors = []
    for e in browser.events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(f"exception: {p['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(f"console.{p['type']}: {p.get('args')}")
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"console error: {p['entry'].get('text')} ({p['entry'].get('url', '')})")
        elif method == "Network.loadingFailed":
            errors.append(f"load failed: {p.get('errorText')}")
        elif method == "Network.requestWillBeSent" and p["request"]["url"] != url \
                and not p["request"]["url"].startswith("data:"):
            errors.append(f"not self-contained: requested {p['request']['url']}")
    browser.call("Target.closeTarget", {"targetId": target})
    return errors, (png, sections)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    binary, out_dir, pages = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(out_dir, exist_ok=True)
    browser = Browser(binary)
    failed = 0
    try:
        for page in pages:
            errors, shot = check(browser, page, out_dir)
            size = os.path.getsize(page)
            if errors:
                failed += 1
                print(f"html: FAIL {page} ({size} bytes)")
                for e in errors[:20]:
                    print(f"  {e}")
            else:
                png, sections = shot
                print(f"html: ok {page}: {size} bytes, {sections}, no console errors; "
                      f"screenshot {png} ({os.path.getsize(png)} bytes)")
    finally:
        browser.close()
    print(f"html: {len(pages) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
