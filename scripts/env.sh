# Shared settings for the scripts; sourced, not run.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.1
VENV=$ROOT/.venv
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
export PATH="$HOME/.cargo/bin:$PATH"

# Run a command as the postgres OS user (initdb refuses root).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
