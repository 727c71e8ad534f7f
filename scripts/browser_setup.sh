#!/usr/bin/env bash
# What the browser test (tests/test_browser.py, `make test-browser`) needs on Debian/Ubuntu: the system's chromium
# and the `browser` extra (Playwright) in .venv. Playwright drives that chromium; it downloads no browser of its own.
#
# Ubuntu ships chromium only as a snap: `apt-get install chromium-browser` installs a stub that pulls the snap, and
# a snap's confinement can keep it from starting headless from a script. When that happens, point the test at any
# other Chromium build with SLMLAB_CHROMIUM=/path/to/chrome.
set -euo pipefail

VENV="${VENV:-.venv}"

# shellcheck source=scripts/as_root.sh
. "$(dirname "$0")/as_root.sh"

have_chromium() {
    [ -n "${SLMLAB_CHROMIUM:-}" ] && [ -x "$(command -v "${SLMLAB_CHROMIUM}" || true)" ] && return 0
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

if have_chromium; then
    echo "browser_setup: chromium found"
elif command -v apt-get >/dev/null 2>&1; then
    as_root apt-get update
    # Debian names the package chromium; Ubuntu's chromium-browser is the snap stub described above
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
        || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium-browser
else
    echo "browser_setup: no apt-get here; install Chromium yourself and set SLMLAB_CHROMIUM to its executable" >&2
    exit 1
fi

"${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[browser]"
echo "browser_setup: ready (chromium: $(command -v "${SLMLAB_CHROMIUM:-chromium}" || command -v chromium-browser))"
