# Sourced by the setup scripts: as_root COMMAND... runs a command as root (directly, or through sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "$(basename "$0"): need root (or sudo) to run: $*" >&2
        return 1
    fi
}
