//! herd-tls: TLS for herd. Owns the server's TLS material (a CA generated in
//! the data dir, or operator-supplied PEM files), the ALPN the server offers
//! (h2, http/1.1), and client configs that trust the server either by a CA
//! PEM or by pinning the CA's SHA-256 fingerprint (no public PKI involved).
//! Every config uses rustls' ring provider explicitly; no process-default
//! provider is needed.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod client;
mod error;
mod generate;
mod pem;
mod server;

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use client::{PinMismatch, Trust};
pub use error::TlsError;

/// ALPN id for HTTP/2 (gRPC and REST).
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id for HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Material the server serves with.
pub struct ServerTls {
    /// Ready-to-use config; ALPN offers h2 then http/1.1.
    pub config: Arc<rustls::ServerConfig>,
    /// Hex SHA-256 of the CA certificate DER, when herd generated the CA.
    pub ca_fingerprint: Option<String>,
    /// The CA certificate PEM, when herd generated the CA.
    pub ca_pem: Option<String>,
}

/// Loads `dir/ca.pem`, `dir/ca.key`, `dir/server.pem`, `dir/server.key`,
/// generating them on first use (CA "herd CA", 10 years; server certificate
/// signed by the CA with SANs localhost, 127.0.0.1, ::1, the hostname and
/// every name/IP in `extra_sans`; keys written 0600). The server certificate
/// is re-issued from the same CA when it lacks one of those SANs, does not
/// chain to the CA, or expires within 30 days. The server presents the chain
/// [server cert, CA cert]; ALPN h2 + http/1.1.
pub fn server_tls_generated(dir: &Path, extra_sans: &[String]) -> Result<ServerTls, TlsError> {
    generate::server_tls_generated(dir, extra_sans)
}

/// Operator-supplied PEM certificate chain (leaf first) and private key
/// (PKCS#8, PKCS#1 or SEC1). `ca_fingerprint` and `ca_pem` are `None`.
pub fn server_tls_from_files(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
    server::from_files(cert, key)
}

/// Hex lowercase SHA-256 of DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A client config for `trust`, offering the `alpn` protocols in order.
///
/// `Trust::Pinned` accepts a server if one of the certificates it presents
/// (end entity or intermediates) has the pinned SHA-256 and the end-entity
/// certificate verifies against that certificate as the only root (so
/// signatures, validity and the hostname/IP SAN are checked). Otherwise the
/// handshake fails with a [`PinMismatch`] ("server certificate fingerprint is
/// <presented>, pinned <pin> — …"; [`pin_mismatch`] finds it in the error a
/// connector reports). `Trust::None` gives `TlsError::NoTrust`.
pub fn client_config(trust: &Trust, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client::client_config(trust, alpn)
}

/// The pin mismatch a failed connection reports, looked for through `err`'s sources (and
/// inside the I/O errors connectors wrap it in): both fingerprints, for the one-line error.
pub fn pin_mismatch(err: &(dyn std::error::Error + 'static)) -> Option<PinMismatch> {
    client::pin_mismatch(err)
}

/// Fingerprint of the first certificate in `pem` (used to print the pin for
/// operator-supplied certificates).
pub fn pem_fingerprint(pem: &str) -> Result<String, TlsError> {
    let certs = pem::parse_certs(pem.as_bytes(), "the PEM text")?;
    certs
        .first()
        .map(|c| fingerprint(c))
        .ok_or_else(|| TlsError::NoCertificate {
            origin: "the PEM text".to_string(),
            detail: "no CERTIFICATE block found".to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_lower_hex_sha256() {
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn pem_fingerprint_without_certificate_fails() {
        let err = pem_fingerprint("hello").unwrap_err();
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
    }
}
