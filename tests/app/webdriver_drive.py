"""The cache on a drive that is not there: with the chosen cache folder missing at start, the app
window says so and waits (nothing is created anywhere, no other folder is used); when the folder
comes back the app starts on it by itself. Run inside Xvfb and the test's D-Bus session, against a
hub emulator on loopback (so the app does not fall back to its demo hub).

usage: webdriver_drive.py APP_BINARY OUT_DIR HUB_URL
"""

import json
import os
import sys
import time

from wd import stop_driver, Session, start_driver, wait_for

APP, OUT, HUB = sys.argv[1], sys.argv[2], sys.argv[3]

home = os.path.join(OUT, "drive-home")
data_home = os.path.join(home, ".local", "share")
data_dir = os.path.join(data_home, "dev.modelcache.app")
drive = os.path.join(OUT, "drive")            # the unplugged drive's mount point
chosen = os.path.join(drive, "models", "hub")  # the cache folder chosen in Settings
default_cache = os.path.join(home, ".cache", "huggingface")
os.makedirs(data_dir, exist_ok=True)
with open(os.path.join(data_dir, "preferences.json"), "w") as f:
    json.dump({"cache_dir": chosen}, f)

env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")}
env.update(HOME=home, XDG_DATA_HOME=data_home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
           HF_ENDPOINT=HUB)
driver = start_driver(env)
try:
    window = Session(APP, [])
    text = wait_for("the waiting message", lambda: window.script(
        "const w = document.getElementById('waiting'); return w && w.textContent"), 60)
    if drive not in text or "Connect the drive" not in text:
        raise SystemExit(f"the window says: {text!r}")
    status = window.script("return document.getElementById('engine-status').textContent")
    if "Waiting" not in status:
        raise SystemExit(f"the status line reads {status!r}")
    time.sleep(5)  # a few rounds of the app's check, with the folder still missing
    window.screenshot(os.path.join(OUT, "waiting-for-drive.png"))
    for path in (drive, default_cache):
        if os.path.exists(path):
            raise SystemExit(f"the app created {path} while its cache folder was missing")
    print("the window waits for the missing cache folder:", " ".join(text.split())[:140])

    # The drive comes back (with its cache folder): the app starts on it without a restart.
    os.makedirs(chosen)
    wait_for("the app to start on the folder", lambda: "Connected" in (window.script(
        "const s = document.getElementById('engine-status'); return s && s.textContent") or ""), 60)
    cache_dir = wait_for("the settings", lambda: window.script(
        "const i = document.getElementById('set-cache-dir'); return i && i.value"), 30)
    if os.path.realpath(cache_dir) != os.path.realpath(chosen):
        raise SystemExit(f"the app runs on {cache_dir!r}, not the chosen {chosen!r}")
    if os.path.exists(default_cache):
        raise SystemExit(f"the app created the default cache {default_cache}")
    print("the folder came back and the app started on it:", cache_dir)
    window.close()
finally:
    stop_driver(driver)
