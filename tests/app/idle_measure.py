"""Measures the app at rest: started as at login (`--hidden`, in the tray, no window) with no
jobs, its CPU time over 60 s and its resident memory, read from /proc. Prints figures, asserts
nothing; run inside Xvfb and a D-Bus session:

  xvfb-run -a dbus-run-session -- python3 tests/app/idle_measure.py target/debug/model-cache-app [SECONDS]
"""

import os
import subprocess
import sys
import tempfile
import time

APP = sys.argv[1]
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    # utime and stime of the process and its threads (fields 14 and 15 of /proc/PID/stat).
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def memory_kib(pid):
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


home = tempfile.mkdtemp(prefix="mcache-idle-")
env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": f"{home}/.config",
       "XDG_DATA_HOME": f"{home}/.local/share", "HF_HUB_CACHE": f"{home}/hub"}
app = subprocess.Popen([APP, "--demo", "--hidden"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    time.sleep(15)  # started, tray registered, the first checks done
    if app.poll() is not None:
        raise SystemExit(f"the app exited with {app.returncode}")
    cpu0, t0 = cpu_seconds(app.pid), time.monotonic()
    time.sleep(SECONDS)
    cpu1, t1 = cpu_seconds(app.pid), time.monotonic()
    rss, hwm = memory_kib(app.pid)
    print(f"idle app over {t1 - t0:.0f} s: CPU {cpu1 - cpu0:.2f} s "
          f"({100 * (cpu1 - cpu0) / (t1 - t0):.2f} % of one core); "
          f"RSS {rss / 1024:.1f} MiB (peak {hwm / 1024:.1f} MiB)")
finally:
    app.terminate()
    try:
        app.wait(timeout=10)
    except subprocess.TimeoutExpired:
        app.kill()
