#!/usr/bin/env bash
# A Debian root with PostgreSQL NN for building and testing pg_stepup against
# versions Debian 12 does not ship (17 from trixie, 18 from sid), without
# installing them, or the newer libc they need, on the host.
#   pgroot.sh NN                make the root if it is missing (once; cached)
#   pgroot.sh NN run CMD ARG..  run CMD inside it, in /src
#   pgroot.sh NN rebuild        make it again from scratch
#   pgroot.sh NN path           print where it lives
# Inside: PostgreSQL NN with its server headers, build tools, python3, node;
# the host's Rust toolchain (~/.rustup, read-only) and ~/.cargo (cargo-pgrx,
# and the registry cache, so crates are downloaded once) bind-mounted;
# `cargo pgrx init --pgNN` done; this repository bind-mounted at /src.
# Roots live in $STEPUP_ROOTS (default /var/cache/pg_stepup/roots), one
# directory per version. A root is made in pgNN.new and renamed when
# complete; a half-made one (interrupted) is removed and made again, never
# used. Every mount lives in a private mount namespace of its own, so it
# goes away with the command even when the command fails or is killed.
# Needs root (debootstrap, mount, chroot); installs debootstrap if missing.
set -euo pipefail
source "$(dirname "$0")/env.sh"
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

usage() {
    echo "usage: pgroot.sh NN [run CMD [ARG...] | rebuild | path]   (NN: 17 or 18)" >&2
    exit 2
}
die() { echo "pgroot.sh: $*" >&2; exit 1; }

[ $# -ge 1 ] || usage
ver=$1; shift
case "$ver" in
17) suite=trixie ;;
18) suite=sid ;;
*) echo "pgroot.sh: no Debian suite known for PostgreSQL '$ver' (17: trixie, 18: sid)" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || die "needs to run as root (debootstrap, mount, chroot)"

roots=${STEPUP_ROOTS:-/var/cache/pg_stepup/roots}
dir=$roots/pg$ver
packages=(postgresql-$ver postgresql-server-dev-$ver build-essential pkg-config clang
          libclang-dev sudo procps git ca-certificates python3 python3-venv nodejs npm
          pgbouncer)

# The Debian mirror the host's apt sources name (STEPUP_DEBIAN_MIRROR overrides).
debian_mirror() {
    if [ -n "${STEPUP_DEBIAN_MIRROR:-}" ]; then echo "$STEPUP_DEBIAN_MIRROR"; return; fi
    local uri
    uri=$({ grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources |
                sed 's/^URIs:[[:space:]]*//' | tr ' ' '\n'
            grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
                awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }'
          } | grep -E '^(https?|ftp)://[^[:space:]]*/debian/?$' | head -n1 || true)
    [ -n "$uri" ] || die "no Debian mirror (a URI ending in /debian) in the host's apt sources; set STEPUP_DEBIAN_MIRROR"
    echo "${uri%/}"
}

# What a root is made of; a root whose record differs is made again.
signature() {
    echo "format 1"
    echo "suite $suite"
    echo "mirror $mirror"
    echo "packages ${packages[*]}"
}

# Mount points at or below $1, as this mount namespace sees them.
mounts_under() {
    awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo
}

remove_root() {
    local d=$1
    [ -e "$d" ] || return 0
    # Never rm -rf through a bind mount (~/.rustup, ~/.cargo, the repository).
    if [ -n "$(mounts_under "$d")" ]; then
        die "$d still has mounts ($(mounts_under "$d" | tr '\n' ' ')); not removing it"
    fi
    rm -rf --one-file-system "$d"
}

# The part that runs inside a private mount namespace: mount, chroot, run.
#   pgroot.sh NN __inside ROOTDIR CMD...
inside() {
    local r=$1; shift
    local mounted=()
    cleanup() {
        local i
        for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" || true; done
    }
    trap cleanup EXIT
    bind() {  # bind SRC DEST [ro]
        mkdir -p "$2"
        mount --bind "$1" "$2"; mounted+=("$2")
        [ "${3:-}" != ro ] || mount -o remount,bind,ro "$2"
    }
    mount -t proc proc "$r/proc"; mounted+=("$r/proc")
    mount -t sysfs -o ro sysfs "$r/sys"; mounted+=("$r/sys")
    bind /dev "$r/dev"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"; mounted+=("$r/dev/shm")
    bind "$HOME/.rustup" "$r/root/.rustup" ro
    bind "$HOME/.cargo" "$r/root/.cargo"
    bind "$ROOT" "$r/src"
    # Name resolution as on the host (sudo looks up the host name).
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    cp /etc/hosts "$r/etc/hosts"

    # The chroot gets a clean environment; what reaching the package
    # registries may need (proxies, CA bundles) is passed on.
    local envs=(HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM=dumb USER=root LOGNAME=root
                PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
                STEPUP_IN_PGROOT="$ver" CARGO_TARGET_DIR=/var/cache/stepup-target)
    local v
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
             SSL_CERT_FILE SSL_CERT_DIR PIP_CERT PIP_INDEX_URL PIP_DEFAULT_TIMEOUT \
             REQUESTS_CA_BUNDLE CURL_CA_BUNDLE NODE_EXTRA_CA_CERTS CARGO_HTTP_CAINFO \
             STEPUP_HUGE_TESTS STEPUP_XVER_REQUIRED; do
        [ -z "${!v:-}" ] || envs+=("$v=${!v}")
    done
    local rc=0
    chroot "$r" /usr/bin/env -i -C /src "${envs[@]}" "$@" || rc=$?
    exit $rc
}

in_root() {  # in_root ROOTDIR CMD...
    unshare --mount --propagation private -- "$self" "$ver" __inside "$@"
}

# The host's CA certificates (a proxy's own CA among them) and package
# client settings, so that apt, pip and npm inside reach what the host reaches.
copy_host_config() {
    local r=$1
    cp /etc/resolv.conf "$r/etc/resolv.conf"
    if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
        mkdir -p "$r/usr/local/share/ca-certificates"
        cp -a /usr/local/share/ca-certificates/. "$r/usr/local/share/ca-certificates/"
    fi
    [ ! -f /etc/pip.conf ] || cp /etc/pip.conf "$r/etc/pip.conf"
    if [ -d /etc/apt/apt.conf.d ]; then
        # Proxy settings only: the rest of the host's apt configuration is its own.
        grep -hsi 'proxy' /etc/apt/apt.conf.d/* > "$r/etc/apt/apt.conf.d/99host-proxy" || true
    fi
}

make_root() {
    local new=$dir.new log=$roots/pg$ver.log start=$SECONDS
    remove_root "$new"
    mkdir -p "$roots"
    if ! command -v debootstrap >/dev/null; then
        echo "== pgroot: apt-get install debootstrap"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    echo "== pgroot: debootstrap $suite for PostgreSQL $ver from $mirror into $new (log: $log)"
    if ! unshare --mount --propagation private -- \
            debootstrap --variant=minbase "$suite" "$new" "$mirror" >"$log" 2>&1; then
        tail -n 15 "$log" >&2
        die "debootstrap of Debian $suite from $mirror failed (log above and in $log): PostgreSQL $ver cannot be had from this mirror; nothing was tested"
    fi
    # No service may start while packages are configured: the root shares the
    # host's network, and a cluster started by postgresql's postinst would
    # hold port 5432 there. Nor is a default cluster wanted.
    printf '#!/bin/sh\nexit 101\n' > "$new/usr/sbin/policy-rc.d"
    chmod 755 "$new/usr/sbin/policy-rc.d"
    mkdir -p "$new/etc/postgresql-common/createcluster.d"
    echo "create_main_cluster = false" > "$new/etc/postgresql-common/createcluster.d/pg_stepup.conf"
    copy_host_config "$new"
    # sid's Release carries a Valid-Until a week after it was made; a mirror
    # that serves a snapshot of it (signatures intact, but older than that
    # week) is refused by apt as "expired" without this.
    echo 'Acquire::Check-Valid-Until "false";' > "$new/etc/apt/apt.conf.d/99pg_stepup-snapshot"
    echo "== pgroot: apt-get install ${packages[*]}"
    if ! in_root "$new" sh -c 'apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" &&
            update-ca-certificates' \
            sh "${packages[@]}" >>"$log" 2>&1; then
        tail -n 15 "$log" >&2
        die "installing ${packages[*]} in the $suite root failed (log above and in $log)"
    fi
    local pg_config=/usr/lib/postgresql/$ver/bin/pg_config
    [ -x "$new$pg_config" ] || die "no $pg_config in the root after installing postgresql-server-dev-$ver"
    echo "== pgroot: cargo pgrx init --pg$ver $pg_config"
    if ! in_root "$new" cargo pgrx init "--pg$ver" "$pg_config" >>"$log" 2>&1; then
        tail -n 15 "$log" >&2
        die "cargo pgrx init --pg$ver failed in the root (log above and in $log); is cargo-pgrx $PGRX_VERSION installed on the host (scripts/setup.sh)?"
    fi
    signature > "$new/etc/pg_stepup-root"
    remove_root "$dir"
    mv "$new" "$dir"
    echo "== pgroot: PostgreSQL $ver root ready in $dir ($((SECONDS - start)) s)"
}

# A root is used only if it is complete and made of what this script says.
ensure_root() {
    if [ -d "$dir" ] && [ "$(cat "$dir/etc/pg_stepup-root" 2>/dev/null)" = "$(signature)" ]; then
        return 0
    fi
    [ ! -d "$dir" ] || echo "== pgroot: $dir is incomplete or out of date; making it again"
    make_root
}

# All of it in one function, read before it runs: editing this file while
# a run waits on its root does not change what the run does next.
main() {
    cmd=${1:-make}
    [ $# -eq 0 ] || shift
    if [ "$cmd" = __inside ]; then
        inside "$@"
    fi
    mirror=$(debian_mirror)

    mkdir -p "$roots"
    exec 9>"$roots/pg$ver.lock"
    if ! flock -n 9; then
        echo "== pgroot: waiting for another run using $dir"
        flock 9
    fi
    case "$cmd" in
    make) ensure_root ;;
    rebuild) remove_root "$dir"; make_root ;;
    path) echo "$dir" ;;
    run)
        [ $# -ge 1 ] || usage
        ensure_root
        [ -d "$HOME/.rustup" ] && [ -x "$HOME/.cargo/bin/cargo" ] ||
            die "no Rust toolchain in $HOME/.rustup and $HOME/.cargo on the host"
        in_root "$dir" "$@"
        ;;
    *) usage ;;
    esac
}
main "$@"; exit
