"""A minimal WebDriver client for the app tests (standard library only): WebKitWebDriver drives
the real app window, started as the session's browser."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

PORT = 4445
BASE = f"http://127.0.0.1:{PORT}"


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        # Starting the app for a new session can take a while on a loaded 2-core machine.
        with urllib.request.urlopen(request, timeout=180) as response:
            return json.loads(response.read() or b"null")["value"]
    except urllib.error.HTTPError as error:
        raise SystemExit(f"WebDriver {method} {path} failed: {error.read().decode()}")


def wait_for(what, probe, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    raise SystemExit(f"timed out waiting for {what}")


def _status():
    try:
        with urllib.request.urlopen(BASE + "/status", timeout=2) as response:
            return json.loads(response.read())["value"]["ready"]
    except Exception:
        return False


def start_driver(env=None):
    """Starts WebKitWebDriver (the app it launches inherits `env`) and waits until it is ready.
    The driver and the apps it starts form a process group of their own, which `stop_driver`
    ends."""
    driver = subprocess.Popen(["WebKitWebDriver", f"--port={PORT}"],
                              env={**(env or os.environ), "TAURI_WEBVIEW_AUTOMATION": "true"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    wait_for("WebKitWebDriver", _status, 30)
    return driver


def _group_alive(group):
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


def stop_driver(driver):
    """Stops the driver and every app it started, and waits until they are gone: an app left
    running (closing its window only hides it in the tray) would take the next launch's
    single-instance hand-over, and that launch would never show a window."""
    group = driver.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + 10
        while _group_alive(group) and time.time() < deadline:
            try:
                driver.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        if not _group_alive(group):
            break
    try:
        driver.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class Session:
    """One app window: `find`, `script`, `click`, `screenshot`."""

    def __init__(self, app, args):
        session = call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "webkitgtk:browserOptions": {"binary": app, "args": args}}}})
        self.path = f"/session/{session['sessionId']}"

    def find(self, css):
        found = call("POST", f"{self.path}/elements", {"using": "css selector", "value": css})
        return found[0] if found else None

    @staticmethod
    def element_id(element):
        return next(iter(element.values()))

    def script(self, code):
        return call("POST", f"{self.path}/execute/sync", {"script": code, "args": []})

    def click(self, element):
        call("POST", f"{self.path}/element/{self.element_id(element)}/click", {})

    def screenshot(self, path):
        import base64
        shot = call("GET", f"{self.path}/screenshot")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot))

    def close(self):
        call("DELETE", self.path)
