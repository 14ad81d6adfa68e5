//! Server-side rustls configuration: the ring provider, ALPN (h2 then
//! http/1.1) and loading operator-supplied PEM certificate chains and keys.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::pem::{parse_certs, parse_key, read_file};
use crate::{ALPN_H2, ALPN_HTTP11, ServerTls, TlsError};

/// A `ServerConfig` on the ring provider, serving `chain` with `key`,
/// advertising h2 and http/1.1 (h2 preferred).
pub(crate) fn build_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(config)
}

/// See [`crate::server_tls_from_files`].
pub(crate) fn from_files(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
    let cert_pem = read_file(
        cert,
        "TLS certificate",
        "pass --tls-cert with a PEM certificate chain file",
    )?;
    let key_pem = read_file(
        key,
        "TLS private key",
        "pass --tls-key with a PEM private key file",
    )?;
    let chain = parse_certs(&cert_pem, &cert.display().to_string())?;
    let key_der = parse_key(&key_pem, &key.display().to_string())?;
    let config = build_server_config(chain, key_der).map_err(|source| TlsError::Identity {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    })?;
    Ok(ServerTls {
        config: Arc::new(config),
        ca_fingerprint: None,
        ca_pem: None,
    })
}
