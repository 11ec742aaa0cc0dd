//! `stepup sync-jwks`: discovery document -> jwks_uri -> stepup.add_jwks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::db::{self, Outcome};
use crate::discovery::{self, UrlPolicy};
use crate::error::Error;
use crate::http::Fetcher;
use crate::roots;

/// What a sync needs, checked before the first round.
pub struct Options {
    pub issuer: String,
    pub db: postgres::Config,
    pub policy: UrlPolicy,
}

/// The result of one successful round.
pub struct Report {
    pub jwks_uri: String,
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn refused(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| status(&o.action).0 == "refused")
            .count()
    }
}

/// One sync: fetch, check, import. Nothing reaches the database unless
/// both documents passed their checks.
pub fn run_once(opts: &Options) -> Result<Report, Error> {
    let roots = roots::load()?;
    let fetcher = Fetcher::new(&roots, opts.policy.allow_http_loopback);

    let url = discovery::discovery_url(&opts.issuer);
    let body = fetcher.get(&url)?;
    let doc = discovery::parse_json(&url, &body)?;
    let jwks_uri = discovery::jwks_uri(&url, &doc, &opts.issuer, opts.policy)?;

    let body = fetcher.get(&jwks_uri)?;
    let jwks = discovery::parse_json(&jwks_uri, &body)?;
    discovery::check_jwks(&jwks_uri, &jwks)?;
    // parse_json proved it UTF-8; the database parses the same bytes.
    let text = String::from_utf8_lossy(&body);

    let mut client = db::connect(&opts.db, &roots)?;
    let outcomes = db::add_jwks(&mut client, &opts.issuer, &text)?;
    let _ = client.close();
    Ok(Report { jwks_uri, outcomes })
}

/// Splits an action into its word and its reason: `skipped: use is enc`
/// -> (`skipped`, `use is enc`).
pub fn status(action: &str) -> (&str, &str) {
    match action.split_once(':') {
        Some((word, reason)) => (word.trim(), reason.trim()),
        None => (action.trim(), ""),
    }
}

/// Text from the JWKS (kids, reasons that quote it) is printed with control
/// characters escaped, so a hostile document cannot write to the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// `added    RS256  kid-abc`, `skipped  -      kid-x  use is enc`.
pub fn format_outcome(o: &Outcome) -> String {
    let (word, reason) = status(&o.action);
    let alg = o.alg.as_deref().unwrap_or("-");
    let kid = o.kid.as_deref().unwrap_or("-");
    let line = format!(
        "{:<8} {:<6} {}",
        printable(word),
        printable(alg),
        printable(kid)
    );
    if reason.is_empty() {
        line
    } else {
        format!("{line}  {}", printable(reason))
    }
}

/// `ISSUER: 2 added, 1 kept, 0 retired, 0 skipped, 0 refused (from JWKS_URI)`.
pub fn format_summary(issuer: &str, report: &Report) -> String {
    let count = |w: &str| {
        report
            .outcomes
            .iter()
            .filter(|o| status(&o.action).0 == w)
            .count()
    };
    format!(
        "{}: {} added, {} kept, {} retired, {} skipped, {} refused (from {})",
        printable(issuer),
        count("added"),
        count("kept"),
        count("retired"),
        count("skipped"),
        count("refused"),
        printable(&report.jwks_uri)
    )
}

/// Prints a round's rows and summary, each line after `prefix`; a round
/// with refused kids is a failure, reported after everything is printed.
fn print_report(prefix: &str, issuer: &str, report: &Report) -> Result<(), Error> {
    for o in &report.outcomes {
        println!("{prefix}{}", format_outcome(o));
    }
    println!("{prefix}{}", format_summary(issuer, report));
    match report.refused() {
        0 => Ok(()),
        count => Err(Error::Refused { count }),
    }
}

/// `--once`: exit 0 when the sync succeeded and nothing was refused.
pub fn once(opts: &Options) -> i32 {
    match run_once(opts).and_then(|r| print_report("", &opts.issuer, &r)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("stepup sync-jwks: {e}");
            e.exit_code()
        }
    }
}

/// `--every`: a round per interval, counted from each round's start; a
/// failed round is reported on stderr and the next one tries again.
/// SIGTERM/SIGINT end it between rounds (exit 0); a second signal ends it
/// at once, even in the middle of a round.
pub fn every(opts: &Options, interval: Duration) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // Order matters: the conditional exit sees the flag as the first
        // signal left it.
        let registered =
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))
                .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)));
        if let Err(e) = registered {
            eprintln!("stepup sync-jwks: cannot install signal handlers: {e}");
            return 1;
        }
    }
    let mut round: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let started = Instant::now();
        let prefix = format!("{} ", rfc3339(SystemTime::now()));
        match run_once(opts).and_then(|r| print_report(&prefix, &opts.issuer, &r)) {
            Ok(()) => {}
            Err(e) => eprintln!("{prefix}stepup sync-jwks: round {round} failed: {e}"),
        }
        let next = started + interval;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(200)));
        }
    }
    println!(
        "{} stopping after {round} round(s)",
        rfc3339(SystemTime::now())
    );
    0
}

/// UTC, seconds: `2026-01-31T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(kid: Option<&str>, alg: Option<&str>, action: &str) -> Outcome {
        Outcome {
            kid: kid.map(Into::into),
            alg: alg.map(Into::into),
            action: action.into(),
        }
    }

    #[test]
    fn outcome_lines() {
        assert_eq!(
            format_outcome(&o(Some("kid-abc"), Some("RS256"), "added")),
            "added    RS256  kid-abc"
        );
        assert_eq!(
            format_outcome(&o(Some("k"), Some("ES256"), "retired")),
            "retired  ES256  k"
        );
        assert_eq!(
            format_outcome(&o(None, None, "skipped: no kid")),
            "skipped  -      -  no kid"
        );
        assert_eq!(
            format_outcome(&o(
                Some("k1"),
                Some("RS256"),
                "refused: kid already names other key material"
            )),
            "refused  RS256  k1  kid already names other key material"
        );
        assert_eq!(
            format_outcome(&o(Some("a\u{1b}[2Jb\n"), Some("RS256"), "kept")),
            "kept     RS256  a\\u{1b}[2Jb\\n"
        );
    }

    #[test]
    fn summary_counts() {
        let r = Report {
            jwks_uri: "https://i/jwks".into(),
            outcomes: vec![
                o(Some("a"), Some("RS256"), "added"),
                o(Some("b"), Some("ES256"), "added"),
                o(Some("c"), Some("ES256"), "kept"),
                o(Some("d"), Some("RS256"), "retired"),
                o(None, None, "skipped: no kid"),
                o(Some("e"), Some("RS256"), "refused: reused kid"),
            ],
        };
        assert_eq!(
            format_summary("https://i", &r),
            "https://i: 2 added, 1 kept, 1 retired, 1 skipped, 1 refused (from https://i/jwks)"
        );
        assert_eq!(r.refused(), 1);
        assert!(matches!(
            print_report("", "https://i", &r),
            Err(Error::Refused { count: 1 })
        ));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T01:01:01Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_599);
        assert_eq!(rfc3339(t), "2025-12-31T23:59:59Z");
    }
}
