# Shared settings for the scripts; sourced, not run.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${STEPUP_IN_PGROOT:-}" ]; then
    # Inside a root made by scripts/pgroot.sh for PostgreSQL 17 or 18. Its
    # python3 is not the host's: its venv lives in the root, not the tree.
    PG_MAJOR=$STEPUP_IN_PGROOT
    VENV=/var/cache/stepup-venv
else
    PG_MAJOR=15
    VENV=$ROOT/.venv
fi
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.1
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
export PATH="$HOME/.cargo/bin:$PATH"

# Run a command as the postgres OS user (initdb refuses root).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
