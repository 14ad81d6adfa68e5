//! PEM and file plumbing: reading certificate chains and private keys from
//! files or strings, and writing files (keys with mode 0600) atomically.

use std::fs;
use std::io::Write;
use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// Reads a whole file, naming it and saying what to do when that fails.
pub(crate) fn read_file(
    path: &Path,
    what: &'static str,
    hint: &'static str,
) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        hint,
        source,
    })
}

/// Every `CERTIFICATE` block of `pem`, in order; at least one.
pub(crate) fn parse_certs(
    pem: &[u8],
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate {
            origin: origin.to_string(),
            detail: format!("malformed PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            origin: origin.to_string(),
            detail: "no CERTIFICATE block found".to_string(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of `pem`.
pub(crate) fn parse_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    match rustls_pemfile::private_key(&mut &pem[..]) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(TlsError::NoPrivateKey {
            origin: origin.to_string(),
            detail: "no private key block found".to_string(),
        }),
        Err(e) => Err(TlsError::NoPrivateKey {
            origin: origin.to_string(),
            detail: format!("malformed PEM: {e}"),
        }),
    }
}

/// Writes `contents` to `path` via a temporary file and a rename, so a crash
/// never leaves a half-written file. `secret` files get mode 0600.
pub(crate) fn write_file(
    path: &Path,
    what: &'static str,
    contents: &str,
    secret: bool,
) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mode = if secret { 0o600 } else { 0o644 };

    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(&tmp).map_err(err)?;
    // The file may have pre-existed with another mode: enforce ours.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)
}
