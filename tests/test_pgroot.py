"""scripts/pgroot.sh and test.sh --pg when something is wrong: a version
that is not supported, a mirror that cannot give the suite, a root left
half-made. Each ends the run non-zero with what to do, and a half-made
root is never used. (The roots themselves are made and used by
`scripts/test.sh --pg 17` and `--pg 18`.)"""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PGROOT = ROOT / "scripts" / "pgroot.sh"

# pgroot.sh installs debootstrap if it is missing, as a real run does.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("STEPUP_IN_PGROOT")) or os.geteuid() != 0,
    reason="pgroot.sh runs as root, on the host (not inside a root)")


def run(*args, **env):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **env))


def test_unsupported_versions_are_refused():
    for cmd in ([PGROOT, "16"], [PGROOT, "14", "run", "true"], [ROOT / "scripts" / "test.sh", "--pg", "16"]):
        r = run(*cmd)
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert "16" in r.stderr or "14" in r.stderr


def test_a_mirror_that_cannot_give_the_suite_fails_clearly(tmp_path):
    # Nothing listens on port 1: debootstrap cannot fetch the Release file.
    r = run(PGROOT, "17", STEPUP_ROOTS=tmp_path, STEPUP_DEBIAN_MIRROR="http://127.0.0.1:1/debian")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "PostgreSQL 17 cannot be had from this mirror; nothing was tested" in r.stderr
    assert not (tmp_path / "pg17").exists()


def test_a_half_made_root_is_made_again_never_used(tmp_path):
    # What an interrupted run leaves: a root without its completion record.
    half = tmp_path / "pg17"
    (half / "etc").mkdir(parents=True)
    (half / "marker").write_text("half-made")
    r = run(PGROOT, "17", "run", "true", STEPUP_ROOTS=tmp_path,
            STEPUP_DEBIAN_MIRROR="http://127.0.0.1:1/debian")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"{half} is incomplete or out of date; making it again" in r.stdout
    assert "cannot be had from this mirror" in r.stderr
    # Not used, and still not trusted the next time.
    r = run(PGROOT, "17", "run", "true", STEPUP_ROOTS=tmp_path,
            STEPUP_DEBIAN_MIRROR="http://127.0.0.1:1/debian")
    assert r.returncode == 1
    assert "making it again" in r.stdout
