#!/usr/bin/env bash
# Everything `make test --no-skips` needs on a fresh Debian/Ubuntu machine, so that no real part goes untested:
# chromium (the browser test), latexmk + texlive-latex-recommended (the paper), the .venv with the llama.cpp
# backend compiled, kenlm compiled, and Playwright. Each part says what it installs; one that cannot be installed
# names itself and fails the run (never a silent skip). Run as root or with sudo for the system packages.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "${HERE}/.."

SYSTEM_PACKAGES=(chromium latexmk texlive-latex-recommended)
BIN=.venv/bin

part() {  # part NAME COMMAND...: run one part, timed; on failure name it and stop
    local name="$1" started
    shift
    started=$(date +%s)
    echo "ci_setup: ${name} ..."
    if ! "$@"; then
        echo "ci_setup: FAILED to install ${name} (the command was: $*); CI stops here rather than skip its tests" >&2
        exit 1
    fi
    echo "ci_setup: ${name} ready in $(( $(date +%s) - started )) s"
}

# shellcheck source=scripts/as_root.sh
. "${HERE}/as_root.sh"

system_packages() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
    command -v latexmk >/dev/null 2>&1 || missing+=(latexmk)
    kpsewhich booktabs.sty >/dev/null 2>&1 || missing+=(texlive-latex-recommended)
    if [ ${#missing[@]} -eq 0 ]; then
        echo "ci_setup: ${SYSTEM_PACKAGES[*]}: already here"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ci_setup: no apt-get on this machine: install ${missing[*]} with its package manager" \
             "(chromium, latexmk and LaTeX with booktabs), then run .ci/run again" >&2
        return 1
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${SYSTEM_PACKAGES[@]}"
}

part "system packages (${SYSTEM_PACKAGES[*]})" system_packages
part "slmlab and its dependencies in .venv" make setup
part "the llama.cpp backend (llama-cpp-python, compiled)" make setup-llamacpp
part "kenlm (compiled from PyPI's source)" "${BIN}/python" -m pip install --quiet --disable-pip-version-check -e ".[kenlm]"
part "Playwright for the browser test (uses the system's chromium)" bash scripts/browser_setup.sh
