//! Client-side trust: the `Trust` choices, `client_config`, and the verifier
//! that pins the server's CA by SHA-256 fingerprint.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::{CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::pem::parse_certs;
use crate::{TlsError, fingerprint};

/// What a client trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Pin a CA by its SHA-256 fingerprint: hex, with or without ':'
    /// separators, optional "sha256:" prefix, case-insensitive.
    Pinned(String),
    /// A CA PEM file's contents.
    CaPem(String),
    /// No custom trust (the platform store is not used): `client_config`
    /// refuses it with `TlsError::NoTrust`.
    None,
}

/// See [`crate::client_config`].
pub(crate) fn client_config(trust: &Trust, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config { source })?;
    let mut config = match trust {
        Trust::Pinned(pin) => {
            let pin = normalize_pin(pin)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier { pin, provider }))
                .with_no_client_auth()
        }
        Trust::CaPem(pem) => {
            let origin = "the CA PEM";
            let mut roots = RootCertStore::empty();
            for cert in parse_certs(pem.as_bytes(), origin)? {
                roots.add(cert).map_err(|e| TlsError::NoCertificate {
                    origin: origin.to_string(),
                    detail: format!("not a usable CA certificate: {e}"),
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::None => return Err(TlsError::NoTrust),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Lower-case hex without separators or "sha256:" prefix; 64 hex digits.
pub(crate) fn normalize_pin(pin: &str) -> Result<String, TlsError> {
    let trimmed = pin.trim();
    let body = match trimmed.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &trimmed[7..],
        _ => trimmed,
    };
    let hex: String = body
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(TlsError::BadPin {
            pin: pin.to_string(),
        })
    }
}

/// Accepts a server whose presented certificates include the pinned CA and
/// whose end-entity certificate verifies against that CA alone (signatures,
/// validity, SAN). If the pin is the end-entity certificate itself (e.g. the
/// printed pin of an operator-supplied chain), the exact match plus the
/// SAN check is accepted.
struct PinnedVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for PinnedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedVerifier")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

/// The handshake error when no presented certificate matches the pin: the fingerprint of
/// the certificate the server presents as its root (the last of its chain) and the pin.
/// `Debug` is the message too: rustls renders `CertificateError::Other` with `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct PinMismatch {
    /// SHA-256 (lower-case hex) of the last certificate the server presented.
    pub presented: String,
    /// The pin, normalized.
    pub pinned: String,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server certificate fingerprint is {}, pinned {} — the server's CA changed (new data dir?) or this is another server; re-run `herd token create` and use its pin, or fix the pin",
            self.presented, self.pinned
        )
    }
}

impl fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for PinMismatch {}

/// The pin mismatch behind `err`, if a failed handshake is what `err` reports (looked for
/// through the error's sources, and inside I/O errors, which is how connectors carry it).
pub(crate) fn pin_mismatch(err: &(dyn std::error::Error + 'static)) -> Option<PinMismatch> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        // Connectors wrap the TLS error in I/O errors, sometimes one in another, and an I/O
        // error's `source` skips the error it wraps: look inside each of them.
        let mut inner = Some(e);
        while let Some(i) = inner {
            if let Some(m) = i.downcast_ref::<PinMismatch>() {
                return Some(m.clone());
            }
            if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
                i.downcast_ref::<rustls::Error>()
                && let Some(m) = other.0.downcast_ref::<PinMismatch>()
            {
                return Some(m.clone());
            }
            inner = i
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|i| i as &(dyn std::error::Error + 'static));
        }
        cur = e.source();
    }
    None
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|c| fingerprint(c) == self.pin)
        else {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch {
                    presented: intermediates
                        .last()
                        .map_or_else(|| fingerprint(end_entity), |c| fingerprint(c)),
                    pinned: self.pin.clone(),
                })),
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| {
                    rustls::Error::General(format!("cannot build verifier for the pinned CA: {e}"))
                })?;
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(verified) => Ok(verified),
            Err(err) if ca == end_entity => {
                // Pinned leaf: identity is proven by the exact match; still
                // require it to name the server.
                let parsed = ParsedCertificate::try_from(end_entity).map_err(|_| err)?;
                verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            Err(err) => Err(err),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_mismatch_is_found_inside_nested_io_errors() {
        let m = PinMismatch {
            presented: "b".repeat(64),
            pinned: "a".repeat(64),
        };
        let tls = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            m.clone(),
        ))));
        let wrapped =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert_eq!(pin_mismatch(&wrapped), Some(m));
        assert_eq!(pin_mismatch(&std::io::Error::other("no tls here")), None);
    }

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn pin_forms_normalise_to_lower_hex() {
        let colons = HEX
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        for form in [
            HEX.to_string(),
            HEX.to_uppercase(),
            colons.clone(),
            format!("sha256:{colons}"),
            format!("SHA256:{HEX}"),
            format!("  {HEX}\n"),
        ] {
            assert_eq!(normalize_pin(&form).unwrap(), HEX, "{form}");
        }
    }

    #[test]
    fn bad_pins_are_rejected() {
        for bad in [
            "",
            "sha256:",
            &HEX[..62],
            &format!("{HEX}00"),
            &HEX.replace('a', "g"),
            "sha1:00",
        ] {
            let err = normalize_pin(bad).unwrap_err();
            assert!(matches!(err, TlsError::BadPin { .. }), "{bad}");
            assert!(err.to_string().contains("64 hex"));
        }
    }
}
