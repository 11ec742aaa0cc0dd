#!/usr/bin/env bash
# What the OpenID provider tests need beyond scripts/setup.sh: the npm
# packages of tests/oidc (node-oidc-provider, jose; exact versions from its
# package-lock.json, via npm ci) and jwcrypto in the venv. Skips what is
# already there. Needs node >= 20.19 and npm (Debian: apt-get install nodejs npm).
set -euo pipefail
source "$(dirname "$0")/env.sh"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "== setup_oidc: apt-get install nodejs npm"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

oidc="$ROOT/tests/oidc"
# npm ci writes node_modules/.package-lock.json; installed and locked agree
# when that copy matches the committed lock file's package list.
if ! node -e '
    const fs = require("fs");
    const lock = JSON.parse(fs.readFileSync(process.argv[1] + "/package-lock.json")).packages;
    const have = JSON.parse(fs.readFileSync(process.argv[1] + "/node_modules/.package-lock.json")).packages;
    for (const [path, p] of Object.entries(lock)) {
        if (path && (!have[path] || have[path].version !== p.version)) process.exit(1);
    }' "$oidc" 2>/dev/null; then
    echo "== setup_oidc: npm ci in tests/oidc"
    (cd "$oidc" && npm ci --no-audit --no-fund --loglevel=error)
fi

if ! "$VENV/bin/python" -c 'import jwcrypto' 2>/dev/null; then
    echo "== setup_oidc: pip install jwcrypto"
    "$VENV/bin/pip" install -q --disable-pip-version-check 'jwcrypto>=1.5,<2'
fi
