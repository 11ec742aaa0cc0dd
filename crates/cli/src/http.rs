//! HTTPS GET with the system's trust store, bounded in time and size.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

use crate::error::Error;

/// Largest body accepted: discovery documents and JWKS are a few kB.
pub const MAX_BODY: u64 = 1 << 20;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Fetcher {
    agent: Agent,
}

impl Fetcher {
    /// `roots`: see roots::load. `allow_http` only turns off the https-only
    /// rule, which also governs redirects; with it no redirect is followed
    /// at all, so http never stands in for https.
    pub fn new(roots: &[CertificateDer<'static>], allow_http: bool) -> Fetcher {
        let roots: Vec<Certificate<'static>> = roots
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let agent: Agent = Agent::config_builder()
            .tls_config(tls)
            .https_only(!allow_http)
            .max_redirects(if allow_http { 0 } else { 5 })
            .max_redirects_will_error(true)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .user_agent(concat!("stepup-sync-jwks/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Fetcher { agent }
    }

    /// The body of a 200 response to GET `url`, at most MAX_BODY bytes.
    pub fn get(&self, url: &str) -> Result<Vec<u8>, Error> {
        let mut resp = self
            .agent
            .get(url)
            .header("Accept", "application/json")
            .call()
            .map_err(|e| fetch_error(url, e))?;
        let status = resp.status();
        if status.as_u16() != 200 {
            return Err(Error::Response {
                url: url.into(),
                reason: format!("HTTP status {status} (expected 200)"),
            });
        }
        resp.body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Error::Response {
                    url: url.into(),
                    reason: format!("body larger than {} bytes (1 MiB)", MAX_BODY),
                },
                other => fetch_error(url, other),
            })
    }
}

fn fetch_error(url: &str, e: ureq::Error) -> Error {
    let tls = is_tls(&e);
    let reason = match &e {
        ureq::Error::RedirectFailed | ureq::Error::TooManyRedirects => {
            format!("redirect not followed: {e}")
        }
        ureq::Error::RequireHttpsOnly(_) => format!("{e} (a redirect to plain http is refused)"),
        // A handshake failure arrives wrapped in io: name the TLS reason.
        ureq::Error::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(inner) => inner.to_string(),
            None => e.to_string(),
        },
        _ => e.to_string(),
    };
    Error::Fetch {
        url: url.into(),
        tls,
        reason,
    }
}

fn is_tls(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
        ureq::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}
