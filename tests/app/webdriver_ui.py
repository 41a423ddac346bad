"""Drives the real app window over WebDriver (WebKitWebDriver): search a repo, download the
recommended variant through the UI (Tauri IPC inside the app), and wait until the Downloads tab
shows it done. Standard library only; run inside Xvfb and the test's D-Bus session.

usage: webdriver_ui.py APP_BINARY OUT_DIR
"""

import os
import subprocess
import sys
import time

from wd import stop_driver, Session, call, start_driver, wait_for

APP, OUT = sys.argv[1], sys.argv[2]

driver = start_driver()
try:
    window = Session(APP, ["--demo"])
    s, find, script, element_id = window.path, window.find, window.script, Session.element_id

    wait_for("the UI to connect", lambda: "Connected" in (script(
        "return document.getElementById('engine-status').textContent") or ""))
    # A first start shows the welcome screen, with the app's own start-at-login choice.
    welcome = wait_for("the welcome screen", lambda: script(
        "const w = document.getElementById('welcome');"
        "return w && !w.hidden && document.getElementById('welcome-cache-dir').textContent"
        " && !document.getElementById('welcome-autostart-field').hidden"
        " && document.getElementById('welcome').textContent"))
    if "Where models are stored" not in welcome or "metered" not in welcome:
        raise SystemExit(f"the welcome screen reads: {welcome!r}")
    time.sleep(1.5)
    window.screenshot(os.path.join(OUT, "webdriver-welcome.png"))
    call("POST", f"{s}/element/{element_id(find('#welcome-skip'))}/click", {})
    wait_for("the welcome screen to close", lambda: script(
        "return document.getElementById('welcome').hidden"))
    print("the welcome screen showed where models go, with start at login; Not now closed it")

    search = find("#search-input")
    call("POST", f"{s}/element/{element_id(search)}/value", {"text": "demo/tiny-gguf"})
    call("POST", f"{s}/element/{element_id(find('#search-button'))}/click", {})
    # The model's page in the window: the card rendered by the engine, its license.
    card = wait_for("the model card", lambda: script(
        "const h = document.querySelector('#model-card h1'); return h && h.textContent"))
    license_text = script("return document.getElementById('model-license').textContent")
    if card != "Tiny GGUF" or "MIT" not in license_text:
        raise SystemExit(f"the model page reads {card!r}, {license_text!r}")
    if script("return document.querySelectorAll('#model-card img, #model-card script').length") != 0:
        raise SystemExit("the card holds an image or a script")
    print("the model page shows the card and the license:", card, "|", license_text)
    button = wait_for("the variants list", lambda: find("#download-button"))
    call("POST", f"{s}/element/{element_id(button)}/click", {})
    wait_for("the download to finish", lambda: find('#jobs li[data-state="done"]'), 120)
    text = script("return document.querySelector('#jobs li[data-state=\"done\"]').textContent")
    if "demo/tiny-gguf" not in text or "100%" not in text:
        raise SystemExit(f"the finished job reads: {text!r}")
    time.sleep(1.5)  # WebKit shows the previous paint right after a DOM change.
    window.screenshot(os.path.join(OUT, "webdriver-downloaded.png"))
    print("downloaded through the app's UI:", " ".join(text.split())[:120])

    # The window's Content-Security-Policy: an injected inline script never runs, while IPC (the
    # download above, and a call now) still works.
    ran = script(
        "window.__injected = false;"
        "const s = document.createElement('script');"
        "s.textContent = 'window.__injected = true';"
        "document.body.appendChild(s);"
        "return window.__injected;")
    if ran is not False:
        raise SystemExit(f"an injected inline script ran in the app window: {ran!r}")
    health = call("POST", f"{s}/execute/async", {"script": (
        "const done = arguments[arguments.length - 1];"
        "window.__TAURI__.core.invoke('health').then((h) => done(h.status), (e) => done('error: ' + e));"),
        "args": []})
    if health not in ("ok", "degraded"):
        raise SystemExit(f"IPC does not work under the CSP: {health!r}")
    print("the window's CSP blocks an injected inline script; IPC still answers:", health)

    # Start at login, from the Settings tab: writes the XDG autostart entry (HOME is a temp dir).
    call("POST", f"{s}/element/{element_id(find('#tab-settings'))}/click", {})
    box = wait_for("the start-at-login box", lambda: script(
        "const f = document.getElementById('autostart-field'); return f && !f.hidden") and find("#set-autostart"))
    call("POST", f"{s}/element/{element_id(box)}/click", {})
    desktop = os.path.join(os.environ["HOME"], ".config", "autostart", "Model Cache.desktop")
    wait_for("the autostart entry", lambda: os.path.exists(desktop), 20)
    entry = open(desktop).read()
    exec_line = next((l for l in entry.splitlines() if l.startswith("Exec=")), "")
    if not exec_line.endswith(" --hidden") or APP not in exec_line:
        raise SystemExit(f"the autostart entry does not start the app hidden: {entry!r}")
    print("start at login: enabled,", desktop, "|", exec_line)
    # Turned off again: the entry goes.
    call("POST", f"{s}/element/{element_id(box)}/click", {})
    wait_for("the autostart entry to go", lambda: not os.path.exists(desktop), 20)
    if script("return document.getElementById('set-autostart').checked") is not False:
        raise SystemExit("the start-at-login box stays ticked after turning it off")
    print("start at login: disabled, the entry is gone")

    # The cache folder from the system's folder chooser: Choose… opens the native dialog, a folder
    # typed into its location bar comes back into the field (saved with the form, not here).
    chosen = os.path.join(os.environ["HOME"], "models-here")
    os.makedirs(chosen, exist_ok=True)
    field_value = "return document.getElementById('set-cache-dir').value"
    before = script(field_value)
    pick = wait_for("the Choose button", lambda: script(
        "return !document.getElementById('set-cache-dir-pick').hidden") and find("#set-cache-dir-pick"))
    # A script's click: the button sits beside the field, where a toast may cover it.
    script("document.getElementById('set-cache-dir-pick').scrollIntoView();"
           " document.getElementById('set-cache-dir-pick').click()")

    def chooser():
        found = subprocess.run(["xdotool", "search", "--name", "^Choose the cache folder$"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split()
        return found[-1] if found else None

    dialog = wait_for("the folder chooser", chooser, 30)
    time.sleep(1)
    subprocess.run(["import", "-window", "root", os.path.join(OUT, "folder-chooser.png")], check=False)
    subprocess.run(["xdotool", "windowfocus", "--sync", dialog], check=False)
    subprocess.run(["xdotool", "key", "ctrl+l"], check=True)
    subprocess.run(["xdotool", "type", "--delay", "20", chosen], check=True)
    subprocess.run(["xdotool", "key", "Return"], check=True)
    time.sleep(1)
    if chooser():
        # GTK opened the typed folder instead of choosing it: Return again chooses it.
        subprocess.run(["xdotool", "key", "Return"], check=True)
    picked = wait_for("the chosen folder in the field", lambda: (lambda v: v if v != before else None)(
        script(field_value)), 20)
    if picked != chosen:
        raise SystemExit(f"the folder chooser filled {picked!r}, not {chosen!r}")
    print("Choose… opened the system's folder chooser; the folder picked fills the field:", picked)
    script("const f = document.getElementById('set-cache-dir'); f.value = " + repr(before).replace("'", '"')
           + "; f.dispatchEvent(new Event('input', {bubbles: true}));")

    # A second launch with a repo id hands it to this window, which shows that repo's variants.
    second = subprocess.run([APP, "demo/tiny-safetensors"], timeout=60,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if second.returncode != 0:
        raise SystemExit(f"the second launch exited {second.returncode}: {second.stdout[-2000:]!r}")
    wait_for("the handed-over repo's variants", lambda: script(
        "return document.getElementById('search-input').value === 'demo/tiny-safetensors'"
        " && /safetensors/.test(document.getElementById('variants').textContent)"), 60)
    print("a second launch opened demo/tiny-safetensors in the first window")

    # modelcache:// links, as the desktop entry hands them to a second launch: the repo opens in
    # this window with the link's quant or file selected, and the window's title names it.
    def open_link(link):
        run = subprocess.run([APP, link], timeout=60, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if run.returncode != 0:
            raise SystemExit(f"the launch with {link} exited {run.returncode}: {run.stdout[-2000:]!r}")

    def shown():
        return script(
            "const row = document.querySelector('#variants tr.selected');"
            "return {repo: document.getElementById('search-input').value,"
            " title: (document.getElementById('variants-title') || {}).textContent || null,"
            " selected: row ? row.dataset.variant : null, window: document.title,"
            " error: document.getElementById('search-error').hidden ? null"
            " : document.getElementById('search-error').textContent}")

    def wait_shown(what, check):
        state = {}
        def probe():
            state.update(shown())
            return check(state)
        try:
            wait_for(what, probe, 60)
        except SystemExit:
            raise SystemExit(f"timed out waiting for {what}; the window shows {state!r}")
        return state

    open_link("modelcache://open_from_hf?model=demo/tiny-gguf&quant=Q4_K_M")
    wait_shown("the link's repo with Q4_K_M selected", lambda st: st["title"] == "demo/tiny-gguf"
               and st["selected"] == "Q4_K_M" and st["window"] == "demo/tiny-gguf — Model Cache"
               and st["error"] is None)
    print("modelcache://open_from_hf?model=demo/tiny-gguf&quant=Q4_K_M opened with Q4_K_M selected")

    open_link("modelcache://open_from_hf?model=demo%2Ftiny-gguf&file=tiny-model-Q2_K.gguf")
    wait_shown("the link's file selected", lambda st: st["title"] == "demo/tiny-gguf"
               and st["selected"] == "Q2_K" and st["error"] is None)
    print("a link with &file= selected the variant holding the file")

    open_link("modelcache://open_from_hf?model=demo/tiny-gguf&quant=Q9_X")
    state = wait_shown("the missing quant reported", lambda st: st["error"] is not None)
    if "no Q9_X variant" not in state["error"] or state["title"] != "demo/tiny-gguf":
        raise SystemExit(f"a link to a missing quant shows {state!r}")
    print("a link to a missing quant shows the repo and says:", state["error"].strip())

    open_link("modelcache://open_from_hf?model=../../etc/passwd")
    state = wait_shown("the bad link refused", lambda st: st["error"] is not None
                       and "not a repository id" in st["error"])
    if "modelcache://open_from_hf?model=org/name" not in state["error"]:
        raise SystemExit(f"a refused link gives no hint: {state['error']!r}")
    print("a bad link is refused in the window:", " ".join(state["error"].split())[:120])

    # A Hub file URL pasted into the search box selects the variant holding that file.
    search = find("#search-input")
    call("POST", f"{s}/element/{element_id(search)}/clear", {})
    call("POST", f"{s}/element/{element_id(search)}/value",
         {"text": "https://huggingface.co/demo/tiny-gguf/blob/main/tiny-model-Q3_K_M.gguf"})
    call("POST", f"{s}/element/{element_id(find('#search-button'))}/click", {})
    wait_shown("the pasted URL's file selected", lambda st: st["selected"] == "Q3_K_M" and st["error"] is None)
    print("a pasted huggingface.co/.../blob/main/<file> URL selected the variant holding the file")
    call("DELETE", s)
finally:
    stop_driver(driver)
