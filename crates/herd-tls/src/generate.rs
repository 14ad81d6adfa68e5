//! The herd-generated CA and server certificate kept in the server's data dir
//! (`ca.pem`, `ca.key`, `server.pem`, `server.key`): creating them on first
//! start, reusing them afterwards, and re-issuing the server certificate from
//! the same CA when it no longer covers the wanted names or is near expiry.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::pem::{parse_certs, parse_key, read_file, write_file};
use crate::server::build_server_config;
use crate::{ServerTls, TlsError, fingerprint};

const CA_CN: &str = "herd CA";
const CA_YEARS: i32 = 10;
const SERVER_YEARS: i32 = 5;
/// A server certificate expiring sooner than this is re-issued at start.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
const DATA_DIR_HINT: &str = "check that the herd data dir exists and is readable by the herd user";

/// A subject alternative name the server certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

/// See [`crate::server_tls_generated`].
pub(crate) fn server_tls_generated(
    dir: &Path,
    extra_sans: &[String],
) -> Result<ServerTls, TlsError> {
    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        what: "TLS directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_pem_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let server_pem_path = dir.join("server.pem");
    let server_key_path = dir.join("server.key");

    let (ca_pem, ca_der, ca_key) = match (ca_pem_path.exists(), ca_key_path.exists()) {
        (true, true) => load_ca(dir, &ca_pem_path, &ca_key_path)?,
        (false, false) => generate_ca(&ca_pem_path, &ca_key_path)?,
        (true, false) => return Err(incomplete(dir, ca_pem_path, ca_key_path)),
        (false, true) => return Err(incomplete(dir, ca_key_path, ca_pem_path)),
    };

    let sans = wanted_sans(extra_sans);
    let ca_roots = Arc::new(roots_of(dir, &ca_der)?);

    let (server_der, server_key) = match load_server(
        &server_pem_path,
        &server_key_path,
        &ca_roots,
        &sans,
    ) {
        Some(existing) => existing,
        None => {
            let (der, key) = issue_server(&ca_key, &sans, &server_pem_path, &server_key_path)?;
            if !covers(&ca_roots, &der, &sans) {
                return Err(TlsError::BadCa {
                    dir: dir.to_path_buf(),
                    detail: "a certificate signed with ca.key does not verify against ca.pem (the key does not belong to the certificate)".to_string(),
                });
            }
            (der, key)
        }
    };

    let config =
        build_server_config(vec![server_der, ca_der.clone()], server_key).map_err(|source| {
            TlsError::Identity {
                cert: server_pem_path.clone(),
                key: server_key_path.clone(),
                source,
            }
        })?;
    Ok(ServerTls {
        config: Arc::new(config),
        ca_fingerprint: Some(fingerprint(&ca_der)),
        ca_pem: Some(ca_pem),
    })
}

fn incomplete(dir: &Path, present: PathBuf, missing: PathBuf) -> TlsError {
    TlsError::IncompleteCa {
        dir: dir.to_path_buf(),
        present,
        missing,
    }
}

/// The CA's fixed identity. Signing needs only its name, key-id method and
/// key usages, so a re-issue rebuilds these instead of parsing `ca.pem`.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn generate_ca(
    pem_path: &Path,
    key_path: &Path,
) -> Result<(String, CertificateDer<'static>, KeyPair), TlsError> {
    let gen_err = |source| TlsError::Generate {
        what: "the herd CA",
        source,
    };
    let key = KeyPair::generate().map_err(gen_err)?;
    let mut params = ca_params();
    set_validity(&mut params, CA_YEARS);
    let cert = params.self_signed(&key).map_err(gen_err)?;
    let pem = cert.pem();
    // Key first: a crash in between leaves "key without cert", which is
    // reported instead of silently replacing a CA agents already pin.
    write_file(key_path, "herd CA key", &key.serialize_pem(), true)?;
    write_file(pem_path, "herd CA certificate", &pem, false)?;
    Ok((pem, cert.der().clone(), key))
}

fn load_ca(
    dir: &Path,
    pem_path: &Path,
    key_path: &Path,
) -> Result<(String, CertificateDer<'static>, KeyPair), TlsError> {
    let pem_bytes = read_file(pem_path, "herd CA certificate", DATA_DIR_HINT)?;
    let key_bytes = read_file(key_path, "herd CA key", DATA_DIR_HINT)?;
    let der = parse_certs(&pem_bytes, &pem_path.display().to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::NoCertificate {
            origin: pem_path.display().to_string(),
            detail: "no CERTIFICATE block found".to_string(),
        })?;
    let bad = |detail: String| TlsError::BadCa {
        dir: dir.to_path_buf(),
        detail,
    };
    let pem = String::from_utf8(pem_bytes)
        .map_err(|_| bad(format!("{} is not UTF-8 text", pem_path.display())))?;
    let key_str = std::str::from_utf8(&key_bytes)
        .map_err(|_| bad(format!("{} is not UTF-8 text", key_path.display())))?;
    let key = KeyPair::from_pem(key_str)
        .map_err(|e| bad(format!("cannot parse {}: {e}", key_path.display())))?;
    Ok((pem, der, key))
}

fn roots_of(dir: &Path, ca_der: &CertificateDer<'static>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca_der.clone()).map_err(|e| TlsError::BadCa {
        dir: dir.to_path_buf(),
        detail: format!("ca.pem is not a usable CA certificate: {e}"),
    })?;
    Ok(roots)
}

/// The existing server certificate and key, if they load, belong together,
/// chain to the CA, cover every wanted name and are not about to expire.
fn load_server(
    pem_path: &Path,
    key_path: &Path,
    roots: &Arc<RootCertStore>,
    sans: &[San],
) -> Option<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let pem = fs::read(pem_path).ok()?;
    let key_pem = fs::read(key_path).ok()?;
    let der = parse_certs(&pem, "").ok()?.into_iter().next()?;
    let key = parse_key(&key_pem, "").ok()?;
    if !covers(roots, &der, sans) {
        return None;
    }
    // Proves the key matches the certificate.
    build_server_config(vec![der.clone()], key.clone_key()).ok()?;
    Some((der, key))
}

/// Whether `cert` chains to the CA in `roots` and is valid for every SAN in
/// `sans`, both now and `RENEW_BEFORE` from now.
fn covers(roots: &Arc<RootCertStore>, cert: &CertificateDer<'static>, sans: &[San]) -> bool {
    let Ok(verifier) = WebPkiServerVerifier::builder_with_provider(
        roots.clone(),
        Arc::new(ring::default_provider()),
    )
    .build() else {
        return false;
    };
    let now = SystemTime::now();
    let times = [now, now + RENEW_BEFORE]
        .map(|t| UnixTime::since_unix_epoch(t.duration_since(UNIX_EPOCH).unwrap_or_default()));
    sans.iter().filter_map(check_name).all(|name| {
        times.iter().all(|&t| {
            verifier
                .verify_server_cert(cert, &[], &name, &[], t)
                .is_ok()
        })
    })
}

/// The name a client would use to reach `san`, for checking coverage.
/// Names a TLS client cannot use (not valid DNS) are not checked.
fn check_name(san: &San) -> Option<ServerName<'static>> {
    match san {
        San::Ip(ip) => Some(ServerName::IpAddress((*ip).into())),
        San::Dns(name) => {
            let probe = match name.strip_prefix("*.") {
                Some(rest) => format!("herd-probe.{rest}"),
                None => name.clone(),
            };
            ServerName::try_from(probe).ok()
        }
    }
}

fn issue_server(
    ca_key: &KeyPair,
    sans: &[San],
    pem_path: &Path,
    key_path: &Path,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let gen_err = |source| TlsError::Generate {
        what: "the herd server certificate",
        source,
    };
    let key = KeyPair::generate().map_err(gen_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "herd server");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, SERVER_YEARS);
    for san in sans {
        params.subject_alt_names.push(match san {
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Dns(name) => SanType::DnsName(name.clone().try_into().map_err(gen_err)?),
        });
    }
    let issuer = Issuer::new(ca_params(), ca_key);
    let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
    let key_pem = key.serialize_pem();
    write_file(key_path, "herd server key", &key_pem, true)?;
    write_file(pem_path, "herd server certificate", &cert.pem(), false)?;
    let key_der = parse_key(key_pem.as_bytes(), &key_path.display().to_string())?;
    Ok((cert.der().clone(), key_der))
}

/// localhost, 127.0.0.1, ::1, the hostname, then `extra` (normalised:
/// brackets around IPv6 dropped, DNS names lower-cased), without duplicates.
fn wanted_sans(extra: &[String]) -> Vec<San> {
    let mut sans = vec![
        San::Dns("localhost".to_string()),
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    let host = hostname();
    for raw in host.iter().chain(extra) {
        let s = raw.trim();
        let s = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if s.is_empty() {
            continue;
        }
        let san = match s.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(s.trim_end_matches('.').to_ascii_lowercase()),
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    sans
}

fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
}

/// Valid from yesterday (a day of slack for clock skew) to the same day
/// `years` later.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = i64::try_from(secs / 86_400).unwrap_or_default() - 1;
    let (y, m, d) = civil_from_days(days);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    // Day capped at 28 so that every month/year combination exists.
    params.not_after = rcgen::date_time_ymd(y + years, m, d.min(28));
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        i32::try_from(y).unwrap_or(i32::MAX),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn sans_are_normalised_and_deduplicated() {
        let sans = wanted_sans(&[
            "[::1]".to_string(),
            "Herd.Example.".to_string(),
            "10.0.0.1".to_string(),
            " ".to_string(),
            "herd.example".to_string(),
        ]);
        assert_eq!(
            sans.iter()
                .filter(|s| **s == San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)))
                .count(),
            1
        );
        assert_eq!(
            sans.iter()
                .filter(|s| **s == San::Dns("herd.example".into()))
                .count(),
            1
        );
        assert!(sans.contains(&San::Ip("10.0.0.1".parse().unwrap())));
    }
}
