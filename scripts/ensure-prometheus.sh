#!/usr/bin/env bash
# The alert-rule tests run `promtool test rules` and the panel test runs a real Prometheus: install Debian's
# `prometheus` package (promtool and prometheus 2.42) when either is missing. Prints nothing on success.
set -euo pipefail
command -v promtool >/dev/null && command -v prometheus >/dev/null && exit 0
echo "ensure-prometheus: installing Debian's prometheus package" >&2
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null && command -v prometheus >/dev/null
