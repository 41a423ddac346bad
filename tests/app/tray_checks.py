"""The app's tray icon as a desktop's tray host sees it: the item the app registered with the
StatusNotifierWatcher (sni_watcher.py), its menu over com.canonical.dbusmenu, and clicks on that
menu. Pause all pauses the engine and the status line says so; Quit with a download not
finished shows the window and asks (the app stays when the question is closed); Resume all lets
the download finish, and the status line comes back to Idle by itself; Show window shows it.

Run with Debian's /usr/bin/python3 (python3-dbus, python3-xlib):
tray_checks.py ITEMS_FILE DEMO_DATA_DIR APP_PID WINDOW_ID
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

import dbus
from Xlib import X, display, protocol

ITEMS, DATA, APP_PID, WID = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


def fail(message):
    raise SystemExit(f"tray check FAILED: {message}")


def wait_for(what, check, timeout=60.0, every=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        try:
            os.kill(APP_PID, 0)
        except OSError:
            fail(f"the app exited while waiting for {what}")
        time.sleep(every)
    fail(f"timed out waiting for {what}")


URL = json.load(open(os.path.join(DATA, "api.json")))["url"]
TOKEN = open(os.path.join(DATA, "api-token")).read().strip()


def api(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{URL}/api{path}", data=data, method=method, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read().decode()
    return json.loads(text) if text else None


bus = dbus.SessionBus()
line = wait_for("the app's tray item on the watcher",
                lambda: open(ITEMS).read().split("\n")[0].strip(), timeout=30)
bus_name, item_path = line.split()
item = bus.get_object(bus_name, item_path)
props = dbus.Interface(item, "org.freedesktop.DBus.Properties")
menu_path = props.Get("org.kde.StatusNotifierItem", "Menu")
title = props.Get("org.kde.StatusNotifierItem", "Title")
print(f"tray item {bus_name}{item_path} ({title!r}), menu at {menu_path}")
menu = dbus.Interface(bus.get_object(bus_name, menu_path), "com.canonical.dbusmenu")


def entries():
    """The menu's items: label -> (id, enabled)."""
    _, layout = menu.GetLayout(0, -1, dbus.Array([], signature="s"))
    out = {}

    def walk(node):
        node_id, node_props, children = node
        label = node_props.get("label")
        if label is not None:
            out[str(label).replace("_", "")] = (int(node_id), bool(node_props.get("enabled", True)))
        for child in children:
            walk(child)
    walk(layout)
    return out


def click(label):
    found = entries()
    if label not in found:
        fail(f"no {label!r} in the tray menu: {sorted(found)}")
    menu.Event(found[label][0], "clicked", dbus.String("", variant_level=1), dbus.UInt32(0))


ACTIONS = ["Pause all", "Resume all", "Show window", "Quit"]


def status_line():
    """The one disabled item: the status line."""
    lines = [label for label, (_, enabled) in entries().items()
             if not enabled and label not in ACTIONS]
    return lines[0] if lines else None


found = entries()
missing = [label for label in ACTIONS if label not in found]
if missing:
    fail(f"the tray menu lacks {missing}: {sorted(found)}")
print("tray menu:", status_line(), "|", ", ".join(ACTIONS))


# Pause all: the engine pauses, the status line says so.
click("Pause all")
wait_for("the status line to say Paused", lambda: status_line() == "Paused", timeout=20)
job_id = api("POST", "/pulls", {"repo": "demo/tiny-gguf", "variant": "Q4_K_M"})["job_id"]


def job():
    return next(j for j in api("GET", "/jobs") if j["id"] == job_id)


wait_for("the new download to wait", lambda: job()["state"] == "deferred", timeout=20)
if "Paused" not in (job().get("reason") or ""):
    fail(f"the download waits for another reason: {job()!r}")
print("Pause all: the download waits:", job()["reason"])

# Quit with a download not finished: the window shows and the question is asked.
hide_main = display.Display()


def send_delete(window_id):
    win = hide_main.create_resource_object("window", window_id)
    event = protocol.event.ClientMessage(
        window=win, client_type=hide_main.intern_atom("WM_PROTOCOLS"),
        data=(32, [hide_main.intern_atom("WM_DELETE_WINDOW"), X.CurrentTime, 0, 0, 0]))
    win.send_event(event, event_mask=X.NoEventMask)
    hide_main.flush()


def viewable(window_id):
    info = subprocess.run(["xwininfo", "-id", str(window_id)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True).stdout
    return "IsViewable" in info


send_delete(int(WID, 0))
wait_for("the window to hide", lambda: not viewable(WID), timeout=10)
click("Quit")


def dialog():
    found = subprocess.run(["xdotool", "search", "--name", "^Quit Model Cache\\?$"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split()
    return next((w for w in found if viewable(w)), None)


question = wait_for("the quit question", dialog, timeout=20)
if not viewable(WID):
    fail("Quit asked without showing the window")
print("Quit with a download waiting: the window shows and asks")
send_delete(int(question))
wait_for("the question to close", lambda: not dialog(), timeout=10)
time.sleep(1)
try:
    os.kill(APP_PID, 0)
except OSError:
    fail("closing the question quit the app")
print("the question closed without an answer: the app stays")

# Resume all: the download finishes; the status line follows by itself.
click("Resume all")
wait_for("the download to finish", lambda: job()["state"] == "done", timeout=120)
wait_for("the status line to say Idle", lambda: status_line() == "Idle", timeout=20)
print("Resume all: the download finished, status line:", status_line())

# Show window.
send_delete(int(WID, 0))
wait_for("the window to hide", lambda: not viewable(WID), timeout=10)
click("Show window")
wait_for("the window to show", lambda: viewable(WID), timeout=10)
print("Show window: the window is back")
print("tray checks passed")
