//! The CA certificates both connections trust.

use rustls::pki_types::CertificateDer;

use crate::error::Error;

/// The system store as rustls-native-certs reads it: Debian's
/// /etc/ssl/certs, or SSL_CERT_FILE / SSL_CERT_DIR in its place, as with
/// OpenSSL. Fails when nothing at all could be loaded.
pub fn load() -> Result<Vec<CertificateDer<'static>>, Error> {
    let loaded = rustls_native_certs::load_native_certs();
    if loaded.certs.is_empty() {
        let why: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        return Err(Error::TrustStore(format!(
            "no CA certificates found in the system store or SSL_CERT_FILE/SSL_CERT_DIR{}{}",
            if why.is_empty() { "" } else { ": " },
            why.join("; ")
        )));
    }
    Ok(loaded.certs)
}
