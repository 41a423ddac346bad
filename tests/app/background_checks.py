"""The app started as start-at-login starts it (`--hidden`): no window is shown, downloads run,
and each kind of desktop notification reaches the notification server on the session bus with
the app's icon, naming the model and its variant; a kind turned off in Settings does not.

Usage: background_checks.py DEMO_DATA_DIR NOTIFY_LOG APP_PID

DEMO_DATA_DIR is the running app's demo state (`api.json`, `api-token`); NOTIFY_LOG is the
output of `dbus-monitor` watching `org.freedesktop.Notifications.Notify` on the same bus. Only
the standard library: the local API over urllib, the bus through dbus-monitor's log.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

DATA, NOTIFY_LOG, APP_PID = sys.argv[1], sys.argv[2], int(sys.argv[3])


def fail(message):
    raise SystemExit(f"background check FAILED: {message}")


def wait_for(what, check, timeout=60.0, every=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        try:
            os.kill(APP_PID, 0)
        except OSError:
            fail(f"the app exited while waiting for {what}")
        time.sleep(every)
    fail(f"timed out waiting for {what}")


wait_for("the app's local API", lambda: os.path.exists(os.path.join(DATA, "api.json")))
URL = json.load(open(os.path.join(DATA, "api.json")))["url"]
TOKEN = open(os.path.join(DATA, "api-token")).read().strip()


def api(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{URL}/api{path}", data=data, method=method, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as error:
        fail(f"{method} {path} answered {error.code}: {error.read().decode()[:500]}")
    return json.loads(text) if text else None


# --- Notify calls on the bus, as dbus-monitor printed them -------------------------------------

START = os.path.getsize(NOTIFY_LOG)
STRING = re.compile(r'^\s*string "(.*)"$')


def notes():
    """The Notify calls logged since this script started: app, icon, summary, body."""
    with open(NOTIFY_LOG, errors="replace") as log:
        log.seek(START)
        lines = log.read().splitlines()
    out = []
    for i, line in enumerate(lines):
        if "member=Notify" not in line:
            continue
        # app_name (string), replaces_id (uint32), app_icon, summary, body (strings).
        fields = lines[i + 1:i + 6]
        if len(fields) < 5:
            continue
        values = [STRING.match(f) for f in (fields[0], fields[2], fields[3], fields[4])]
        if not all(values):
            continue
        app, icon, summary, body = (v.group(1) for v in values)
        out.append({"app": app, "icon": icon, "summary": summary, "body": body})
    return out


def wait_note(what, check, timeout=60.0):
    return wait_for(f"a notification {what}", lambda: next((n for n in notes() if check(n)), None),
                    timeout)


def check_icon(note):
    if note["app"] != "Model Cache":
        fail(f"the notification's app name is {note['app']!r}")
    icon = note["icon"]
    if not icon or not os.path.isfile(icon):
        fail(f"the notification has no icon file: {note!r}")
    with open(icon, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            fail(f"the notification's icon is not a PNG: {icon}")


def wait_job(job_id, states=("done", "failed", "cancelled"), timeout=120.0):
    def state():
        for job in api("GET", "/jobs"):
            if job["id"] == job_id and job["state"] in states:
                return job
        return None
    return wait_for(f"job {job_id} to be {'/'.join(states)}", state, timeout)


def pull(repo, variant):
    return api("POST", "/pulls", {"repo": repo, "variant": variant})["job_id"]


# --- Started in the tray ------------------------------------------------------------------------

def shown_windows():
    found = subprocess.run(["xdotool", "search", "--name", "^Model Cache$"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split()
    shown = []
    for wid in found:
        info = subprocess.run(["xwininfo", "-id", wid], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True).stdout
        if "IsViewable" in info:
            shown.append(wid)
    return shown


time.sleep(2)  # Give a window that would wrongly show the time to map.
if shown_windows():
    fail("`--hidden` showed a window")
print("started with --hidden: no window shown")

# --- Finished (and downloads run while hidden) ------------------------------------------------------

job = wait_job(pull("demo/tiny-gguf", "Q3_K_M"))
if job["state"] != "done":
    fail(f"the download ended as {job['state']}: {job.get('error')}")
note = wait_note("saying the download finished",
                 lambda n: n["summary"] == "Download finished" and "demo/tiny-gguf Q3_K_M" in n["body"])
check_icon(note)
if shown_windows():
    fail("a download showed the window")
print("finished:", note["body"], "| icon:", note["icon"])

# --- Failed: a gated model whose token was removed before its download started --------------------

api("POST", "/jobs/pause-all")
gated = api("POST", "/pulls", {"repo": "demo/gated"})["job_id"]
api("POST", "/token", {"token": None})
api("POST", "/jobs/resume-all")
job = wait_job(gated)
if job["state"] != "failed":
    fail(f"a gated download without a token ended as {job['state']}")
note = wait_note("saying the download failed",
                 lambda n: n["summary"] == "Download failed" and "demo/gated" in n["body"])
check_icon(note)
if "Request access on the model's page" not in note["body"] or "`" in note["body"]:
    fail(f"the failure does not say what to do in plain words: {note['body']!r}")
print("failed:", note["body"])
api("POST", "/token", {"token": "hf_demo_token"})

# --- Deferred for long: outside the allowed hours, told once ------------------------------------

now = time.localtime()
minute = now.tm_hour * 60 + now.tm_min
hhmm = lambda m: f"{(m // 60) % 24:02d}:{m % 60:02d}"  # noqa: E731
api("PUT", "/settings", {"schedule": {"start": hhmm(minute + 120), "end": hhmm(minute + 180)},
                         "notify_deferred_after": "2s"})
waiting = pull("demo/tiny-gguf", "Q2_K")
wait_job(waiting, states=("deferred",), timeout=30)
note = wait_note("saying the download waits",
                 lambda n: n["summary"] == "Download waiting" and "demo/tiny-gguf Q2_K" in n["body"])
check_icon(note)
if "Outside allowed hours" not in note["body"]:
    fail(f"the wait does not say why: {note['body']!r}")
time.sleep(4)  # The scheduler re-checks the deferral meanwhile: still one notification.
told = [n for n in notes() if n["summary"] == "Download waiting"]
if len(told) != 1:
    fail(f"the wait was told {len(told)} times")
print("deferred:", note["body"])
api("POST", f"/jobs/{waiting}/cancel")
api("PUT", "/settings", {"schedule": None})

# --- Storage alert, then eviction ----------------------------------------------------------------

used = api("GET", "/health")["storage"]["used_bytes"]
if used <= 0:
    fail("the cache reports no bytes used after a download")
api("PUT", "/settings", {"auto_cleanup": False, "size_budget_bytes": int(used / 0.9)})
note = wait_note("about the budget", lambda n: n["summary"].startswith("The cache is at"))
check_icon(note)
print("storage:", note["summary"], "|", note["body"])
api("PUT", "/settings", {"auto_cleanup": True, "size_budget_bytes": max(1, used // 3)})
note = wait_note("naming what was evicted",
                 lambda n: n["summary"].startswith("Removed ") and "demo/tiny-gguf" in n["body"])
check_icon(note)
print("evicted:", note["summary"], "|", note["body"])
api("PUT", "/settings", {"size_budget_bytes": None})

# --- A kind turned off is not shown ------------------------------------------------------------

settings = api("PUT", "/settings", {"notify_finished": False})
if settings["notify_finished"] is not False:
    fail(f"the setting did not change: {settings!r}")
before = len([n for n in notes() if n["summary"] == "Download finished"])
job = wait_job(pull("demo/tiny-gguf", "Q4_K_M"))
if job["state"] != "done":
    fail(f"the download ended as {job['state']}")
time.sleep(3)
after = len([n for n in notes() if n["summary"] == "Download finished"])
if after != before:
    fail("a notification of a kind turned off in Settings was shown")
print("a kind turned off (finished) was not shown")
api("PUT", "/settings", {"notify_finished": True})
if shown_windows():
    fail("the window showed while the app ran in the tray")
print("background checks passed")
