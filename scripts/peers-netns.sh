#!/usr/bin/env bash
# Three peers in three network namespaces joined by a bridge (addresses 10.77.0.1-3 exist only
# inside them), each a `mcache serve --demo` (the demo hub is deterministic, so the three see one
# Hub, each on its own loopback): discovery across the bridge within seconds (DNS-SD on the real
# interfaces, not loopback), pairing by peer id and code, then A pulls a model from its Hub, B
# and C pull it after, and C gets at most one chunk from its Hub. Every namespace, link and
# process is removed in a trap. Needs root and `ip netns add`; skips (exit 0) without them.
#
#   scripts/peers-netns.sh [path/to/mcache]
set -euo pipefail
cd "$(dirname "$0")/.."
MCACHE=$(realpath "${1:-${MCACHE_BIN:-${CARGO_TARGET_DIR:-target}/debug/mcache}}")
PREFIX="mcp$$"
BRIDGE_NS="$PREFIX-br"
NAMES=(a b c)
CHUNK=$((1024 * 1024))
ROOT=$(mktemp -d)
PIDS=()

if ! ip netns add "$PREFIX-probe" 2>/dev/null; then
  echo "peers-netns: skipped (ip netns add does not work here: not root, or no namespaces)" >&2
  exit 0
fi
ip netns del "$PREFIX-probe"

cleanup() {
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for name in "${NAMES[@]}"; do ip netns del "$PREFIX-$name" 2>/dev/null || true; done
  ip netns del "$BRIDGE_NS" 2>/dev/null || true
  rm -rf "$ROOT"
}
trap cleanup EXIT

fail() { echo "peers-netns: FAILED: $*" >&2; for n in "${NAMES[@]}"; do tail -5 "$ROOT/$n.err" >&2 || true; done; exit 1; }

# The bridge in a namespace of its own; each peer's namespace has one end of a veth pair.
ip netns add "$BRIDGE_NS"
ip -n "$BRIDGE_NS" link add br0 type bridge
ip -n "$BRIDGE_NS" link set br0 up
for i in 0 1 2; do
  ns="$PREFIX-${NAMES[$i]}"
  ip netns add "$ns"
  ip link add "v$i" netns "$BRIDGE_NS" type veth peer name eth0 netns "$ns"
  ip -n "$BRIDGE_NS" link set "v$i" master br0 up
  ip -n "$ns" addr add "10.77.0.$((i + 1))/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done

declare -A URL TOKEN
for i in 0 1 2; do
  name=${NAMES[$i]}
  mkdir -p "$ROOT/$name/hub" "$ROOT/$name/data"
  ip netns exec "$PREFIX-$name" env -u HF_TOKEN -u HF_ENDPOINT NO_COLOR=1 "$MCACHE" \
    --data-dir "$ROOT/$name/data" --cache-dir "$ROOT/$name/hub" --chunk-size 1MiB \
    serve --demo --demo-big-size 16MiB --no-mirror \
    --peers-bind "10.77.0.$((i + 1))" --peers-port 7871 --peers-discovery lan \
    >"$ROOT/$name.out" 2>"$ROOT/$name.err" &
  PIDS+=($!)
done
for name in "${NAMES[@]}"; do
  for _ in $(seq 300); do [ -s "$ROOT/$name.out" ] && break; sleep 0.1; done
  line=$(head -1 "$ROOT/$name.out")
  [ -n "$line" ] || fail "$name printed no URL"
  URL[$name]=${line%%/#token=*}
  TOKEN[$name]=${line##*#token=}
done

api() { # api NAME METHOD PATH [JSON]
  local name=$1 method=$2 path=$3 body=${4:-}
  ip netns exec "$PREFIX-$name" curl -sS -X "$method" -H "Authorization: Bearer ${TOKEN[$name]}" \
    ${body:+-H 'Content-Type: application/json' --data "$body"} "${URL[$name]}$path"
}

for name in "${NAMES[@]}"; do api "$name" POST /api/peers/sharing '{"on":true}' >/dev/null; done
declare -A ID
for name in "${NAMES[@]}"; do ID[$name]=$(api "$name" GET /api/peers | jq -r .this.peer_id); done

started=$(date +%s.%N)
for _ in $(seq 300); do
  seen=0
  for name in "${NAMES[@]}"; do
    [ "$(api "$name" GET /api/peers | jq '.unpaired | length')" = 2 ] && seen=$((seen + 1))
  done
  [ "$seen" = 3 ] && break
  sleep 0.1
done
[ "$seen" = 3 ] || fail "the peers did not all see each other"
echo "peers-netns: discovery across the bridge took $(echo "$(date +%s.%N) - $started" | bc) s" >&2
api a GET /api/peers | jq -r '.unpaired[] | "peers-netns: A sees \(.name) \(.peer_id) at \(.address)"' >&2
api a GET /api/peers | jq -e '[.unpaired[].address] | all(startswith("10.77.0."))' >/dev/null ||
  fail "A should see the others at their bridge addresses"

pair() { # pair JOINER ACCEPTER
  local code
  code=$(api "$2" POST /api/peers/pairing | jq -r .code)
  api "$1" POST /api/peers/pair "{\"address\":\"${ID[$2]}\",\"code\":\"$code\"}" | jq -e .peer_id >/dev/null ||
    fail "$1 could not pair with $2"
}
pair b a
pair c a
pair c b

pull() { # pull NAME: demo/big's GGUF, waits, prints the job
  local job
  job=$(api "$1" POST /api/pulls '{"repo":"demo/big","files":["big-model-Q4_K_M.gguf"]}' | jq -r .job_id)
  for _ in $(seq 600); do
    state=$(api "$1" GET /api/jobs | jq -r ".[] | select(.id == $job) | .state")
    case "$state" in
      done) api "$1" GET /api/jobs | jq -c ".[] | select(.id == $job)"; return ;;
      failed | cancelled) fail "$1's download $state" ;;
    esac
    sleep 0.1
  done
  fail "$1's download did not finish"
}
pull a >/dev/null
pull b >/dev/null
job=$(pull c)
echo "$job" | jq -r '.files[0].sources[] | "peers-netns: C got \(.bytes) bytes from \(.source)\(if .dropped then " (dropped)" else "" end)"' >&2
size=$(echo "$job" | jq '.files[0].size')
from_hub=$(echo "$job" | jq '[.files[0].sources[] | select(.source == "hub") | .bytes] | add // 0')
from_peers=$(echo "$job" | jq '[.files[0].sources[] | select(.source | startswith("peer:")) | .bytes] | add // 0')
[ "$from_hub" -le "$CHUNK" ] || fail "C got $from_hub bytes from its Hub (more than one chunk)"
[ "$((from_hub + from_peers))" -ge "$size" ] || fail "C's sources account for $((from_hub + from_peers)) of $size bytes"
[ "$(echo "$job" | jq '[.files[0].sources[] | select(.source | startswith("peer:")) | select(.bytes > 0)] | length')" = 2 ] ||
  fail "both A and B should have served C"
echo "peers-netns: ok (C: $from_peers bytes from peers, $from_hub from its Hub, file $size bytes)" >&2
