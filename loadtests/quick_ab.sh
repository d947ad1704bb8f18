#!/usr/bin/env bash
# A quick A/B of the floor proxy against the gateway, alternating, one minute: for checking a hot-path change
# before a full run_bench.sh. Needs run_bench.sh to have set up loadtests/results/bench once.
#   loadtests/quick_ab.sh            # R=2 rounds of 5 s each
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd); BENCH=$REPO/loadtests/results/bench
[ -f "$BENCH/floor_proxy.py" ] || { echo "run loadtests/run_bench.sh once first" >&2; exit 1; }
R=${R:-2}; DUR=${DUR:-5s}
wrk_run() { taskset -c 1 wrk -t1 -c50 -d"$DUR" --latency -s "$BENCH/${LUA:-chat.lua}" "$1" | awk '/Requests\/sec/ {r=$2} / 99%/ {p=$2} END {print "RPS", r, "p99", p}'; }
wait_up() { for _ in $(seq 1 80); do curl -s -o /dev/null -XPOST "$1" -H 'authorization: Bearer sk-bench' -d '{}' && return 0; sleep 0.25; done; return 1; }
(cd "$BENCH" && CHUNKS=20 PORT=9100 exec taskset -c 1 node mock_upstream.js >/dev/null 2>&1) & MOCK=$!
trap 'kill $MOCK $PID 2>/dev/null' EXIT; PID=""
for r in $(seq 1 "$R"); do
  (cd "$BENCH" && CLIENT=aiohttp UPSTREAM=http://127.0.0.1:9100 exec taskset -c 0 "$REPO/.venv/bin/uvicorn" floor_proxy:app \
    --port 4100 --loop uvloop --http httptools --no-access-log --log-level warning) & PID=$!
  wait_up http://127.0.0.1:4100/v1/chat/completions; wrk_run http://127.0.0.1:4100/v1/chat/completions >/dev/null
  echo "round $r floor   $(wrk_run http://127.0.0.1:4100/v1/chat/completions)"; kill $PID; wait $PID 2>/dev/null
  (cd "$REPO" && exec taskset -c 0 .venv/bin/gateway serve --config loadtests/bench.yaml --port 4200) >/dev/null 2>&1 & PID=$!
  wait_up http://127.0.0.1:4200/v1/chat/completions; wrk_run http://127.0.0.1:4200/v1/chat/completions >/dev/null
  echo "round $r gateway $(wrk_run http://127.0.0.1:4200/v1/chat/completions)"; kill $PID; wait $PID 2>/dev/null
done
