//! The ways a sync fails, each with the text an operator reads.

use std::fmt;

/// What failed, and why. `exit_code` maps it onto the documented codes.
#[derive(Debug)]
pub enum Error {
    /// Bad command line or arguments that cannot work (exit 2).
    Usage(String),
    /// The trust store could not be read.
    TrustStore(String),
    /// No response: DNS, connect, TLS, timeout, redirect policy.
    Fetch {
        url: String,
        tls: bool,
        reason: String,
    },
    /// A response, but not a usable one: status, size, not JSON, wrong shape.
    Response { url: String, reason: String },
    /// The discovery document names another issuer (OIDC Discovery 4.3).
    IssuerMismatch { expected: String, found: String },
    /// Connecting to or calling the database failed.
    Database {
        sqlstate: Option<String>,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    },
    /// The sync ran, but the database refused some keys (kid reuse).
    Refused { count: usize },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "usage: {m}"),
            Error::TrustStore(m) => write!(f, "trust store: {m}"),
            Error::Fetch { url, tls, reason } => {
                if *tls {
                    write!(f, "{url}: TLS error: {reason}")
                } else {
                    write!(f, "{url}: {reason}")
                }
            }
            Error::Response { url, reason } => write!(f, "{url}: {reason}"),
            Error::IssuerMismatch { expected, found } => write!(
                f,
                "issuer mismatch: the discovery document names issuer {found:?}, not {expected:?} \
                 (OpenID Connect Discovery 4.3; refusing its keys)"
            ),
            Error::Database {
                sqlstate,
                message,
                detail,
                hint,
            } => {
                match sqlstate {
                    Some(code) => write!(f, "database error {code}: {message}")?,
                    None => write!(f, "database: {message}")?,
                }
                if let Some(d) = detail {
                    write!(f, "\n  DETAIL: {d}")?;
                }
                if let Some(h) = hint {
                    write!(f, "\n  HINT: {h}")?;
                }
                Ok(())
            }
            Error::Refused { count } => write!(
                f,
                "{count} key(s) refused: a kid the database already holds with different key \
                 material (kids are never reused; possible key substitution)"
            ),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
        assert_eq!(Error::Refused { count: 1 }.exit_code(), 1);
        let db = Error::Database {
            sqlstate: Some("42501".into()),
            message: "permission denied".into(),
            detail: None,
            hint: Some("ask".into()),
        };
        assert_eq!(db.exit_code(), 1);
        assert_eq!(
            db.to_string(),
            "database error 42501: permission denied\n  HINT: ask"
        );
    }

    #[test]
    fn tls_errors_say_tls() {
        let e = Error::Fetch {
            url: "https://h/x".into(),
            tls: true,
            reason: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert!(e.to_string().contains("TLS error"));
    }
}
