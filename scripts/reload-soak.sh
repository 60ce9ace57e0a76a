#!/bin/sh
# Reload soak: 100 SIGHUP reloads (alternating two upstreams) of the real binary while load
# threads keep opening and using connections; prints the counts and fails on any failed
# connection. Knobs: SOAK_RELOADS (default 100), SOAK_WORKERS (default 4).
set -eu
cd "$(dirname "$0")/.."
exec cargo test --test reload_soak -- --ignored --nocapture "$@"
