#!/usr/bin/env bash
# Every feature on, every question new, against the floor in the same run (issue 9, section 5).
#
#   loadtests/bench_every_feature.sh                       # R=3 alternating rounds of DUR=10s, wrk -c50
#   OLD=<commit> loadtests/bench_every_feature.sh          # also the gateway of that commit, same rounds
#   VARIANTS="static usem3" loadtests/bench_every_feature.sh   # embedding.model of this tree's gateway
#   OLD=<commit> OLD_ENV="GATEWAY_CACHE__ENABLED=false GATEWAY_EMBEDDING__ENABLED=false" VARIANTS=core ...  # core A/B
#   VARIANTS="static core" loadtests/bench_every_feature.sh    # core: this tree's gateway, cache and embedding off
#   VARIANTS="static exact:GATEWAY_CACHE__SEMANTIC=false"      # label:ENV=VALUE,ENV=VALUE: this tree, that environment
#   NEW_ENV="GATEWAY_DIFFICULTY__SECOND_OPINION_BAND=0" ...    # extra environment of this tree's gateways
#   PYSPY=1 loadtests/bench_every_feature.sh                   # py-spy on each gateway's measured run (needs
#       py-spy in .venv); then .venv/bin/python loadtests/bench_every_feature.py FILE: where the samples went
#
# Each round runs, one after the other on the same machine: the floor (../shared/bench floor_proxy.py,
# CLIENT=aiohttp), then this tree's gateway once per VARIANTS entry, then OLD's gateway when given (a
# `git worktree` in loadtests/results/old, started from there with this .venv). The proxy under test is
# pinned to CPU 0, the Node mock and wrk to CPU 1, like run_bench.sh. The gateway config is
# bench_every_feature.yaml (Redis, cache, embedding, intents, routing, canary) with a fresh Redis prefix for
# each start, deleted afterwards; the body is unique_questions.lua. Prints RPS, p50, p99 and the proxy
# process's CPU time per request (/proc utime + stime over the measured run: steadier than RPS on a shared
# machine) per round, the medians, each one's ratio to the floor, and the gateway's cache outcomes.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
SRC=${BENCH_SRC:-$REPO/../shared/bench}
[ -f "$SRC/floor_proxy.py" ] || SRC=$REPO/../../shared/bench  # a worktree in /work/wt/NAME
WORK=$REPO/loadtests/results/bench
mkdir -p "$WORK"
cp "$SRC"/{floor_proxy.py,mock_upstream.js} "$WORK"/ || { echo "no harness at $SRC (set BENCH_SRC)" >&2; exit 1; }
cp "$REPO/loadtests/unique_questions.lua" "$WORK"/
R=${R:-3}; DUR=${DUR:-10s}; CONNS=${CONNS:-50}; VARIANTS=${VARIANTS:-static}; OLD=${OLD:-}
OUT=$WORK/every_feature_$(date +%Y%m%d-%H%M%S).txt
URL_PATH=/v1/chat/completions

if [ -n "$OLD" ]; then
  OLDDIR=$REPO/loadtests/results/old
  git -C "$REPO" worktree remove --force "$OLDDIR" 2>/dev/null
  git -C "$REPO" worktree add --detach "$OLDDIR" "$OLD" >/dev/null 2>&1 || { echo "cannot check out $OLD" >&2; exit 1; }
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime of the proxy, in clock ticks
HZ=$(getconf CLK_TCK)
wrk_run() {  # $1 url, $2 pid of the proxy: RPS, p50, p99, CPU ms per request (of the proxy process)
  local before after; before=$(cpu_ticks "$2")
  taskset -c 1 wrk -t1 -c"$CONNS" -d"$DUR" --latency -s "$WORK/unique_questions.lua" "$1" > "$WORK/wrk.out"
  after=$(cpu_ticks "$2")
  awk -v ticks=$((after - before)) -v hz="$HZ" '/Requests\/sec/ {r=$2} / 99%/ {p=$2} / 50%/ {m=$2}
    / requests in / {n=$1} END {printf "%s %s %s %.3f", r, m, p, (n ? ticks * 1000 / hz / n : 0)}' "$WORK/wrk.out"; }
wait_up() { for _ in $(seq 1 120); do curl -s -o /dev/null -XPOST "$1" -H 'authorization: Bearer sk-bench' -d '{}' && return 0; sleep 0.25; done; return 1; }
cache_outcomes() { curl -s "http://127.0.0.1:4200/metrics" | awk '/^gateway_cache_requests_total\{/ {
  match($0, /result="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9); n[r] += $NF } END {
  for (r in n) if (n[r] > 0) printf "%s=%d ", r, n[r] }'; }

(cd "$WORK" && CHUNKS=20 PORT=9100 exec taskset -c 1 node mock_upstream.js >/dev/null 2>&1) & MOCK=$!
PID=""
trap 'kill $MOCK $PID 2>/dev/null' EXIT

run_floor() {
  (cd "$WORK" && CLIENT=aiohttp UPSTREAM=http://127.0.0.1:9100 exec taskset -c 0 "$REPO/.venv/bin/uvicorn" floor_proxy:app \
    --port 4100 --loop uvloop --http httptools --no-access-log --log-level warning) >/dev/null 2>&1 & PID=$!
  wait_up http://127.0.0.1:4100$URL_PATH || echo "floor did not start" >&2
  wrk_run http://127.0.0.1:4100$URL_PATH $PID >/dev/null  # warm-up, same length
  echo "$1 floor $(wrk_run http://127.0.0.1:4100$URL_PATH $PID)" | tee -a "$OUT"
  kill $PID; wait $PID 2>/dev/null
}

run_gateway() {  # $1 round, $2 label, $3 directory to start from, $4 extra env
  local prefix="gwbench:$$:$2:$1:"
  (cd "$3" && exec env GATEWAY_REDIS__PREFIX="$prefix" $4 taskset -c 0 "$REPO/.venv/bin/python" -m gateway serve \
    --config "$REPO/loadtests/bench_every_feature.yaml" --port 4200) >"$WORK/gateway_$2.log" 2>&1 & PID=$!
  wait_up http://127.0.0.1:4200$URL_PATH || { echo "gateway $2 did not start:" >&2; tail -5 "$WORK/gateway_$2.log" >&2; }
  wrk_run http://127.0.0.1:4200$URL_PATH $PID >/dev/null
  local spy=""
  if [ -n "${PYSPY:-}" ]; then
    "$REPO/.venv/bin/py-spy" record -p "$PID" -d "${DUR%s}" -r 200 -f raw -o "$WORK/pyspy_$2_$1.txt" --nonblocking \
      >/dev/null 2>&1 & spy=$!
  fi
  echo "$1 $2 $(wrk_run http://127.0.0.1:4200$URL_PATH $PID) $(cache_outcomes)" | tee -a "$OUT"
  [ -n "$spy" ] && wait "$spy" && echo "  py-spy samples: $WORK/pyspy_$2_$1.txt"
  kill $PID; wait $PID 2>/dev/null
  redis-cli --scan --pattern "${prefix}*" | xargs -r -n 500 redis-cli del >/dev/null
}

echo "round config RPS p50 p99 cpu_ms_per_request [cache outcomes, warm-up included]" | tee "$OUT"
for r in $(seq 1 "$R"); do
  run_floor "$r"
  for v in $VARIANTS; do
    if [ "$v" = core ]; then run_gateway "$r" core "$REPO" "GATEWAY_CACHE__ENABLED=false GATEWAY_EMBEDDING__ENABLED=false ${NEW_ENV:-}"
    elif [ "${v#*:}" != "$v" ]; then run_gateway "$r" "${v%%:*}" "$REPO" "$(echo "${v#*:}" | tr , ' ') ${NEW_ENV:-}"
    else run_gateway "$r" "$v" "$REPO" "GATEWAY_EMBEDDING__MODEL=$v ${NEW_ENV:-}"; fi
  done
  [ -n "$OLD" ] && run_gateway "$r" old "$OLDDIR" "${OLD_ENV:-}"
done
awk 'function median(list,   v, n) { n = split(list, v, " "); asort(v); return v[int((n + 1) / 2)] }
  NR > 1 { rps[$2] = rps[$2] " " $3; cpu[$2] = cpu[$2] " " $6 } END {
  for (c in rps) { r[c] = median(rps[c]); m[c] = median(cpu[c]) }
  for (c in r) printf "median %-8s %8.0f RPS  x%.2f the floor   CPU %.3f ms a request (floor + %.3f ms)\n",
    c, r[c], r[c] / r["floor"], m[c], m[c] - m["floor"] }' "$OUT" | sort
echo "(rounds in $OUT)"
