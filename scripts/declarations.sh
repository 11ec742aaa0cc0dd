#!/usr/bin/env bash
# The Postgres functions the extension declares itself and pgrx does not
# bind (src/pg/raise.rs, src/pg/raw.rs, src/rows/mod.rs), checked against
# the headers of the PostgreSQL the build is for: each C prototype below is
# what the Rust declaration says, and must appear in the header as written.
# (Functions pgrx binds are checked by the compiler: src/pg/mod.rs,
# `unguarded!`.)
#   declarations.sh PG_CONFIG
set -euo pipefail
pg_config=${1:?usage: declarations.sh PG_CONFIG}
inc=$("$pg_config" --includedir-server)
[ -f "$inc/postgres.h" ] || { echo "declarations.sh: no server headers in $inc" >&2; exit 1; }

# header|prototype (whitespace as in the header does not matter)
expected=(
    "utils/elog.h|extern bool errstart(int elevel, const char *domain);"
    "utils/elog.h|extern int errcode(int sqlerrcode);"
    "utils/elog.h|extern int errmsg(const char *fmt,...) pg_attribute_printf(1, 2);"
    "utils/elog.h|extern int errdetail(const char *fmt,...) pg_attribute_printf(1, 2);"
    "utils/elog.h|extern int errhint(const char *fmt,...) pg_attribute_printf(1, 2);"
    "utils/elog.h|extern void errfinish(const char *filename, int lineno, const char *funcname);"
    "commands/sequence.h|extern int64 nextval_internal(Oid relid, bool check_permissions);"
    "utils/datum.h|extern bool datum_image_eq(Datum value1, Datum value2, bool typByVal, int typLen);"
)

# A header with each declaration on one line and runs of blanks as one space.
flat() { tr '\n\t' '  ' < "$1" | sed 's/;/;\n/g' | sed 's/  */ /g; s/^ //'; }

bad=0
for e in "${expected[@]}"; do
    header=${e%%|*} proto=${e#*|}
    if ! grep -qF "$proto" <<<"$(flat "$inc/$header")"; then
        echo "declarations.sh: $header of $("$pg_config" --version) does not declare: $proto" >&2
        bad=1
    fi
done
[ $bad -eq 0 ] && echo "declarations.sh: ${#expected[@]} declarations match the headers of $("$pg_config" --version)"
exit $bad
