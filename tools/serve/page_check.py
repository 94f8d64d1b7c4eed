"""Drives the `mm serve` search page in headless Chromium (Debian's `chromium`) over the DevTools
protocol on a pipe (--remote-debugging-pipe: no websocket library, no puppeteer): loads the page,
types a query into the search box, presses Enter, waits for the result grid, clicks the first
result (search by it), and prints a JSON summary of the grid. Optionally saves a screenshot.

    python3 tools/serve/page_check.py http://127.0.0.1:PORT/ "red circle" [--screenshot out.png]
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, binary):
        self.profile = tempfile.mkdtemp(prefix="mm-chromium-")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        # The child reads commands on fd 3 and answers on fd 4 (dup2 in the child, which then
        # keeps exactly those two: pass_fds applies after preexec_fn).
        def wire():
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "--window-size=1100,800", "about:blank"],
            preexec_fn=wire, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buffer = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def send(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while time.time() < deadline:
            reply = self.read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(method)

    def read(self, deadline):
        import select
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.from_child], [], [], max(0.0, deadline - time.time()))
            if not ready:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        return result.get("result", {}).get("value")

    def wait_for(self, expression, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"waiting for {expression}")

    def close(self):
        try:
            self.send("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


GRID = """JSON.stringify({
  status: document.getElementById('status').textContent,
  results: [...document.querySelectorAll('#results .result')].map(card => ({
    id: Number(card.dataset.id),
    caption: card.querySelector('.caption').textContent,
    score: card.querySelector('.score').textContent,
    thumbnail: card.querySelector('img') ? card.querySelector('img').getAttribute('src') : null,
    loaded: card.querySelector('img') ? card.querySelector('img').complete && card.querySelector('img').naturalWidth > 0 : null,
  })),
})"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("query")
    parser.add_argument("--screenshot")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()

    browser = Browser(args.chromium)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        browser.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        browser.send("Page.enable")
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1100, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        browser.send("Page.navigate", {"url": args.url})
        browser.wait_for("document.readyState === 'complete' && document.getElementById('index').options.length > 0")
        # Type the query as a user would: focus the box, insert the text, press Enter.
        browser.evaluate("document.getElementById('text').focus()")
        browser.send("Input.insertText", {"text": args.query})
        for kind in ("keyDown", "keyUp"):
            browser.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                                                    "text": "\r" if kind == "keyDown" else ""})
        browser.wait_for("document.querySelectorAll('#results .result').length > 0 && "
                         "[...document.querySelectorAll('#results img')].every(i => i.complete)")
        typed = json.loads(browser.evaluate(GRID))
        if args.screenshot:
            shot = browser.send("Page.captureScreenshot", {"format": "png"})
            with open(args.screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        # Click the first result: the page searches by it.
        first = typed["results"][0]["id"]
        browser.evaluate("document.querySelector('#results .result').click()")
        browser.wait_for(f"document.getElementById('status').textContent.includes('result {first}') && "
                         "[...document.querySelectorAll('#results img')].every(i => i.complete)")
        clicked = json.loads(browser.evaluate(GRID))
        print(json.dumps({"typed": typed, "clicked": clicked}))
    finally:
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
