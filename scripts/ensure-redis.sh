#!/usr/bin/env bash
# The integration tests talk to a real Redis at 127.0.0.1:6379 (db 15, their own key prefix, cleaned up).
# Start one when none answers: Debian's redis-server, installed if missing.
set -euo pipefail
ping() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
ping && exit 0
if ! command -v redis-server >/dev/null; then
  echo "ensure-redis: installing redis-server" >&2
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
for _ in $(seq 1 50); do ping && exit 0; sleep 0.1; done
echo "ensure-redis: redis did not start on 127.0.0.1:6379" >&2
exit 1
