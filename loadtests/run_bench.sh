#!/usr/bin/env bash
# The side-by-side benchmark (../shared/bench, read-only) with this gateway, in one run on one machine:
# the Node mock direct, the FastAPI floor proxy (aiohttp, httpx, httpx over aiohttp), LiteLLM proxy when
# WITH_LITELLM=1, and the gateway once per upstream client (configs gateway_aiohttp, gateway_httpx,
# gateway_httpx-aiohttp: loadtests/bench.yaml with GATEWAY_SERVER__UPSTREAM_CLIENT set).
#
#   loadtests/run_bench.sh                          # ROUNDS=3 DUR=10s CONNS=50, LiteLLM included
#   ROUNDS=1 DUR=5s WITH_LITELLM=0 loadtests/run_bench.sh
#   CONFIGS="direct floor_aiohttp gateway_aiohttp" loadtests/run_bench.sh
#
# Work happens in loadtests/results/bench (git-ignored): the harness is copied there and patched only to
# start the gateway under each client. The floor runs in this repository's .venv (same library versions as
# the gateway); LiteLLM gets its own venv there on first use. Each run's wrk outputs: results/bench/runs/<time>.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
SRC=${BENCH_SRC:-$REPO/../shared/bench}
WORK=$REPO/loadtests/results/bench
mkdir -p "$WORK"
cp "$SRC"/{run_all.sh,summarize.py,floor_proxy.py,mock_upstream.js,chat.lua,chat_stream.lua,litellm_config.yaml} "$WORK"/
chmod +x "$WORK"/run_all.sh "$WORK"/summarize.py
# `gateway_<client>`: the same gateway command, started with that upstream client.
sed -i -e 's/^    gateway) PORT=/    gateway*) PORT=/' \
       -e 's/exec taskset -c 0 \$GATEWAY_CMD)/exec env $([ "$1" = gateway ] || echo GATEWAY_SERVER__UPSTREAM_CLIENT=${1#gateway_}) taskset -c 0 $GATEWAY_CMD)/' \
       "$WORK/run_all.sh"
grep -q 'GATEWAY_SERVER__UPSTREAM_CLIENT' "$WORK/run_all.sh" || { echo "could not patch run_all.sh" >&2; exit 1; }
[ -x "$WORK/venv/bin/uvicorn" ] || ln -sfn "$REPO/.venv" "$WORK/venv"

export WITH_LITELLM=${WITH_LITELLM:-1}
export ROUNDS=${ROUNDS:-3} DUR=${DUR:-10s} CONNS=${CONNS:-50}
export GATEWAY_CMD=${GATEWAY_CMD:-"$REPO/.venv/bin/gateway serve --config $REPO/loadtests/bench.yaml --port 4200"}
export GATEWAY_PORT=${GATEWAY_PORT:-4200} GATEWAY_DIR=${GATEWAY_DIR:-$REPO}
LITELLM=""; [ "$WITH_LITELLM" = 1 ] && [ -x "$WORK/lvenv/bin/litellm" ] && LITELLM=litellm  # else run_all.sh installs it and adds it
export CONFIGS=${CONFIGS:-"direct floor_aiohttp floor_httpx floor_httpx-aiohttp $LITELLM gateway_aiohttp gateway_httpx gateway_httpx-aiohttp"}
export RES=${RES:-runs/$(date +%Y%m%d-%H%M%S)}
cd "$WORK"
echo "configs: $CONFIGS; rounds $ROUNDS x $DUR, wrk -c$CONNS; results in $WORK/$RES"
./run_all.sh
{ echo; cat "$RES/rss.txt" 2>/dev/null | awk '{split($4,a,"="); if (a[2]>m[$1]) m[$1]=a[2]} END {for (k in m) printf "peak rss %-24s %6.0f MB\n", k, m[k]/1024}' | sort; } || true
