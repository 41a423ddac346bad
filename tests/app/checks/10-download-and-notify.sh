#!/usr/bin/env bash
# A download started through the running app (its local API, found the way `mcache queue` finds
# it) completes against the demo hub, and its "Download finished" notification reaches the
# notification server on the session bus.
set -euo pipefail
# The app runs `--demo`: the demo keeps its own state in the app-data folder's `demo/`.
DATA="$XDG_DATA_HOME/dev.modelcache.app/demo"
for _ in $(seq 1 40); do [ -f "$DATA/api.json" ] && break; sleep 0.25; done
[ -f "$DATA/api.json" ] || { echo "no api.json in $DATA"; exit 1; }
URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$DATA/api.json")
TOKEN=$(cat "$DATA/api-token")
api() { curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }

JOB=$(api -X POST "$URL/api/pulls" -d '{"repo":"demo/tiny-gguf","variant":"Q3_K_M"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
echo "job $JOB queued through the app"
STATE=""
for _ in $(seq 1 240); do
  STATE=$(api "$URL/api/jobs" | python3 -c 'import json,sys; j=[x for x in json.load(sys.stdin) if x["id"]=='"$JOB"']; print(j[0]["state"])')
  case "$STATE" in done|failed|cancelled) break;; esac
  sleep 0.25
done
[ "$STATE" = done ] || { echo "job ended as '$STATE'"; exit 1; }
FILE=$(find "$DATA/hub/models--demo--tiny-gguf/snapshots" -name '*Q3_K_M*.gguf' | head -1)
[ -n "$FILE" ] && [ -s "$FILE" ] || { echo "the downloaded file is not in the demo's snapshot"; exit 1; }
echo "downloaded: $FILE"
# The demo never touches the user's real cache, token or saved settings.
[ ! -e "$HF_HUB_CACHE/models--demo--tiny-gguf" ] || { echo "the demo downloaded into the real cache"; exit 1; }
[ ! -e "$HOME/.cache/huggingface/token" ] || { echo "the demo wrote the real token file"; exit 1; }
[ ! -e "$XDG_DATA_HOME/dev.modelcache.app/preferences.json" ] || { echo "the demo saved the real preferences"; exit 1; }

for _ in $(seq 1 40); do
  grep -q '"Download finished"' "$OUT/notify.log" && break
  sleep 0.25
done
grep -q '"Download finished"' "$OUT/notify.log" || { echo "no notification on the bus:"; cat "$OUT/notify.log"; exit 1; }
grep -A3 '"Download finished"' "$OUT/notify.log" | grep -q 'demo/tiny-gguf' || { echo "the notification does not name the model"; exit 1; }
echo "notification seen on the session bus"
