//! `stepup`: pg_stepup's command-line tool.

mod csv;
mod db;
mod discovery;
mod error;
mod http;
mod interval;
mod roots;
mod sync_jwks;
mod tables;
mod verify;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::discovery::UrlPolicy;
use crate::error::Error;

#[derive(Parser)]
#[command(name = "stepup", version, about = "pg_stepup's command-line tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import an OpenID issuer's signing keys (its JWKS) into the database.
    #[command(long_about = SYNC_ABOUT, after_help = SYNC_AFTER)]
    SyncJwks(SyncArgs),
    /// Verify an exported audit log and chain offline (no database needed).
    #[command(long_about = VERIFY_ABOUT, after_help = VERIFY_AFTER)]
    Verify(VerifyArgs),
}

const VERIFY_ABOUT: &str = "\
Verify an exported audit log and chain offline (no database needed).

Recomputes every entry hash and every link of the chain, with the same code
stepup.verify_audit() runs, and names the first entry that was edited,
deleted or reordered, with verify_audit()'s reason. With --digest, also
proves that the saved head is still in the chain (catches removal of the
newest entries), as verify_audit(digest) does.

Export (psql; DateStyle ISO is required, any TimeZone; UTF-8):
  SELECT stepup.seal();
  BEGIN ISOLATION LEVEL REPEATABLE READ;
  SET DateStyle = ISO;
  \\copy stepup.audit_log TO 'audit_log.csv' CSV HEADER
  \\copy stepup.audit_chain TO 'audit_chain.csv' CSV HEADER
  COMMIT;
and keep the head outside the database:
  psql -XAtc 'SELECT stepup.audit_digest()' > digest.json";

const VERIFY_AFTER: &str = "\
Output: `ok N entries` (N linked entries, all verified), followed by
`, M not yet sealed` when the log holds entries no link covers yet (their
hashes are verified; seal before exporting to cover them); or
`bad entry ID after N good entries: REASON`. Input errors go to stderr.

Exit status: 0 the export verifies; 1 it was tampered with (an edited,
deleted, reordered or forged entry or link, or a saved head the chain no
longer holds); 2 unreadable input: a missing file, not CSV, a header that is
not the table's columns, a bad number, a timestamp not in DateStyle ISO,
bytes that are not UTF-8, a digest that is not audit_digest()'s JSON; also
bad usage.";

#[derive(Args)]
struct VerifyArgs {
    /// `\copy stepup.audit_log TO 'audit_log.csv' CSV HEADER`
    #[arg(long, value_name = "AUDIT_LOG_CSV")]
    log: std::path::PathBuf,

    /// `\copy stepup.audit_chain TO 'audit_chain.csv' CSV HEADER`
    #[arg(long, value_name = "AUDIT_CHAIN_CSV")]
    chain: std::path::PathBuf,

    /// What `SELECT stepup.audit_digest()` returned, saved as JSON.
    #[arg(long, value_name = "DIGEST_JSON")]
    digest: Option<std::path::PathBuf>,
}

const SYNC_ABOUT: &str = "\
Import an OpenID issuer's signing keys (its JWKS) into the database.

Fetches URL/.well-known/openid-configuration (one trailing slash of URL
removed first), checks that its \"issuer\" equals URL exactly, fetches its
\"jwks_uri\" (https) and calls, in one transaction,
stepup.add_jwks(URL, JWKS): new kids are added, unchanged ones kept, this
issuer's kids missing from the JWKS retired. The database makes no network
calls itself; run this beside it (cron, a sidecar). Needs a superuser.";

const SYNC_AFTER: &str = "\
Output: one line per key, `ACTION ALG KID [REASON]` (ACTION: added, kept,
retired, skipped, refused), then `URL: N added, N kept, N retired, N skipped,
N refused (from JWKS_URI)`. With --every every line starts with a UTC
timestamp. Errors go to stderr, database errors with their SQLSTATE.

Exit status: 0 the sync succeeded; 1 it failed (network, TLS, HTTP status
other than 200, a body over 1 MiB, not JSON, issuer mismatch, database
error) or the database refused a key: a kid it already holds with different
key material, a possible key substitution (the other keys' changes are
committed, everything is printed first); 2 bad usage.

HTTPS trusts the system's CA store (/etc/ssl/certs); SSL_CERT_FILE or
SSL_CERT_DIR replace it. Timeouts: 10 s to connect, 30 s per request;
redirects to plain http are refused.";

#[derive(Args)]
struct SyncArgs {
    /// The issuer identifier, exactly as its tokens' `iss` and its discovery
    /// document's `issuer` spell it (https, no query or fragment).
    #[arg(long, value_name = "URL")]
    issuer: String,

    /// libpq-style connection string: `host=/run/postgresql dbname=app
    /// user=postgres` or `postgresql://user@host:5432/app?sslmode=require`.
    /// host may be a Unix-socket directory. sslmode: disable, prefer
    /// (default) or require; prefer and require verify the server
    /// certificate and host name against the trust store (a failed check
    /// is an error, never plain text). Without a password in it, PGPASSWORD
    /// is used; without a user, PGUSER, then USER.
    #[arg(long, value_name = "CONNINFO")]
    db: String,

    /// Run one sync and exit (the default).
    #[arg(long, conflicts_with = "every")]
    once: bool,

    /// Sync now and then every DURATION (30s, 10m, 1h; at least 30s) until
    /// SIGTERM or SIGINT. A failed round is printed to stderr and retried at
    /// the next interval.
    #[arg(long, value_name = "DURATION")]
    every: Option<String>,

    /// For local development only: accept plain http for an issuer and a
    /// jwks_uri on 127.0.0.1, ::1 or localhost (no redirects are followed).
    #[arg(long)]
    allow_http_loopback: bool,

    /// Tests only: lowers the --every minimum to 1s.
    #[arg(long, hide = true)]
    test_short_interval: bool,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and --version exit 0, usage errors 2.
        Err(e) => e.exit(),
    };
    let code = match cli.command {
        Command::SyncJwks(args) => sync(args),
        Command::Verify(args) => verify::main(&verify::Options {
            log: args.log,
            chain: args.chain,
            digest: args.digest,
        }),
    };
    std::process::exit(code);
}

fn sync(args: SyncArgs) -> i32 {
    match prepare(&args) {
        Ok((opts, None)) => sync_jwks::once(&opts),
        Ok((opts, Some(interval))) => sync_jwks::every(&opts, interval),
        Err(e) => {
            eprintln!("stepup sync-jwks: {e}");
            e.exit_code()
        }
    }
}

/// Everything that can be judged before the first request.
fn prepare(args: &SyncArgs) -> Result<(sync_jwks::Options, Option<Duration>), Error> {
    let policy = UrlPolicy {
        allow_http_loopback: args.allow_http_loopback,
    };
    discovery::check_issuer(&args.issuer, policy)?;
    let mut db = db::parse_conninfo(&args.db)?;
    if db.get_password().is_none() {
        if let Ok(p) = std::env::var("PGPASSWORD") {
            db.password(p);
        }
    }
    let minimum = if args.test_short_interval {
        Duration::from_secs(1)
    } else {
        interval::MIN_INTERVAL
    };
    let every = match &args.every {
        Some(text) => Some(
            interval::parse_with_minimum(text, minimum)
                .map_err(|e| Error::Usage(format!("--every {e}")))?,
        ),
        None => None,
    };
    Ok((
        sync_jwks::Options {
            issuer: args.issuer.clone(),
            db,
            policy,
        },
        every,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verify_needs_log_and_chain() {
        assert!(Cli::try_parse_from(["stepup", "verify", "--log", "l.csv"]).is_err());
        let ok = Cli::try_parse_from(["stepup", "verify", "--log", "l", "--chain", "c"]);
        assert!(matches!(
            ok.map(|c| c.command),
            Ok(Command::Verify(VerifyArgs { digest: None, .. }))
        ));
    }

    #[test]
    fn once_and_every_conflict() {
        let r = Cli::try_parse_from([
            "stepup",
            "sync-jwks",
            "--issuer",
            "https://i",
            "--db",
            "host=h",
            "--once",
            "--every",
            "1m",
        ]);
        assert!(r.is_err());
    }
}
