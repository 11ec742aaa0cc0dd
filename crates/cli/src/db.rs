//! The database side: connect (conninfo as libpq writes it), call
//! stepup.add_jwks in one transaction.

use std::sync::Arc;
use std::time::Duration;

use postgres::config::SslMode;
use postgres::{Client, Config};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The call, exactly: the JWKS goes as text and becomes jsonb in the
/// database, so its bytes are what the issuer served.
pub const ADD_JWKS: &str =
    "SELECT kid, alg, action FROM stepup.add_jwks($1::text, $2::text::jsonb)";

/// One row of add_jwks' result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub kid: Option<String>,
    pub alg: Option<String>,
    pub action: String,
}

/// Parses `--db`: `key=value ...` or a `postgresql://` URL. Unset user
/// falls back to PGUSER, then USER (libpq's default); connect_timeout to 10 s.
pub fn parse_conninfo(conninfo: &str) -> Result<Config, Error> {
    let mut config: Config = conninfo.parse().map_err(|e: postgres::Error| {
        let mut message = format!("--db: {}", error_chain(&e));
        if message.contains("sslmode") {
            message.push_str(
                " (accepted: sslmode=disable, prefer or require; prefer and require verify the \
                 server certificate and host name against the system trust store or SSL_CERT_FILE)",
            );
        } else if message.contains("sslrootcert") || message.contains("sslcert") {
            message
                .push_str(" (set SSL_CERT_FILE to the CA file the server's certificate chains to)");
        }
        Error::Usage(message)
    })?;
    if config.get_hosts().is_empty() {
        return Err(Error::Usage(
            "--db: no host (host=/path/to/socket/dir or host=name)".into(),
        ));
    }
    if config.get_user().is_none() {
        match std::env::var("PGUSER").or_else(|_| std::env::var("USER")) {
            Ok(u) if !u.is_empty() => {
                config.user(&u);
            }
            _ => {
                return Err(Error::Usage(
                    "--db: no user, and neither PGUSER nor USER is set".into(),
                ))
            }
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("stepup sync-jwks");
    }
    Ok(config)
}

/// Connects. TLS (sslmode prefer, the default, and require) verifies the
/// server's certificate chain and host name; a failed verification is an
/// error, never a fallback to plain text. Unix sockets carry no TLS
/// (PostgreSQL answers the TLS request with no): prefer goes on, require fails.
pub fn connect(config: &Config, roots: &[CertificateDer<'static>]) -> Result<Client, Error> {
    let result = if config.get_ssl_mode() == SslMode::Disable {
        config.connect(postgres::NoTls)
    } else {
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(roots.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::TrustStore(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
        config.connect(MakeRustlsConnect::new(tls))
    };
    result.map_err(|e| db_error(&e))
}

/// add_jwks in a transaction of its own, committed when it returns.
pub fn add_jwks(client: &mut Client, issuer: &str, jwks: &str) -> Result<Vec<Outcome>, Error> {
    let mut tx = client.transaction().map_err(|e| db_error(&e))?;
    let rows = tx
        .query(ADD_JWKS, &[&issuer, &jwks])
        .map_err(|e| db_error(&e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(Outcome {
            kid: row.try_get(0).map_err(|e| db_error(&e))?,
            alg: row.try_get(1).map_err(|e| db_error(&e))?,
            action: row
                .try_get::<_, Option<String>>(2)
                .map_err(|e| db_error(&e))?
                .unwrap_or_default(),
        });
    }
    tx.commit().map_err(|e| db_error(&e))?;
    Ok(out)
}

fn db_error(e: &postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::Database {
            sqlstate: Some(db.code().code().to_string()),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
            hint: db
                .hint()
                .map(str::to_string)
                .or_else(|| missing_hint(db.code().code())),
        },
        None => Error::Database {
            sqlstate: None,
            message: error_chain(e),
            detail: None,
            hint: None,
        },
    }
}

/// The extension absent, or older than add_jwks.
fn missing_hint(sqlstate: &str) -> Option<String> {
    matches!(sqlstate, "3F000" | "42883").then(|| {
        "is pg_stepup installed in this database (CREATE EXTENSION pg_stepup), \
         at a version with stepup.add_jwks?"
            .to_string()
    })
}

/// An error and its sources on one line ("error connecting to server: ...").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_forms() {
        let c = parse_conninfo("host=/tmp/x/sock port=5 user=u dbname=d").unwrap();
        assert_eq!(c.get_user(), Some("u"));
        assert_eq!(c.get_ports(), &[5]);
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        let c = parse_conninfo("postgresql://u@localhost:6543/d?sslmode=require").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        let c = parse_conninfo("host=h user=u sslmode=disable connect_timeout=3").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        let e = parse_conninfo("host=h user=u sslmode=verify-full").unwrap_err();
        assert!(matches!(e, Error::Usage(_)));
        assert!(
            e.to_string().contains("sslmode=disable, prefer or require"),
            "{e}"
        );
        assert!(parse_conninfo("host=h user=u sslrootcert=/x").is_err());
        assert!(parse_conninfo("user=u dbname=d").is_err());
        assert!(parse_conninfo("host='unterminated").is_err());
    }
}
