#!/usr/bin/env bash
# Play every lever's before/after from the trained artifacts (nothing is trained; run scripts/run_all.sh first).
# Extra arguments go to `slmlab demo all`, e.g. --record results/report/demo.svg or --pause 2; SLMLAB_QUICK=1 plays the
# quick/ tree. DEMO_PAUSE sets the seconds between steps (default: the demo's, a second on a terminal, 0 when piped).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SLMLAB="${SLMLAB:-.venv/bin/slmlab}"

if [ -n "${DEMO_PAUSE:-}" ]; then
  set -- --pause "$DEMO_PAUSE" "$@"
fi
exec "$SLMLAB" demo all "$@"
