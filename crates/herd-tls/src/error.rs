//! The crate's single error type, `TlsError`: one variant per failure a caller
//! can act on, each message saying what failed and what to do about it.

use std::path::PathBuf;

/// Everything that can go wrong loading, generating or configuring TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read (missing, permissions, ...).
    #[error("cannot read {what} {}: {source} — {hint}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A file (or the directory holding it) could not be written.
    #[error("cannot write {what} {}: {source} — check that the directory exists and is writable by the herd user", path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The input holds no PEM `CERTIFICATE` block, or one that is malformed.
    #[error(
        "no usable certificate in {origin}: {detail} — expected a PEM file with a '-----BEGIN CERTIFICATE-----' block"
    )]
    NoCertificate { origin: String, detail: String },

    /// The input holds no private key, or a malformed one.
    #[error(
        "no usable private key in {origin}: {detail} — expected a PEM PKCS#8 ('BEGIN PRIVATE KEY'), PKCS#1 ('BEGIN RSA PRIVATE KEY') or SEC1 ('BEGIN EC PRIVATE KEY') key"
    )]
    NoPrivateKey { origin: String, detail: String },

    /// Certificate and key were read but rustls refuses them (key does not
    /// match the certificate, unsupported key type, ...).
    #[error("certificate {} and key {} cannot be used together: {source} — check that the key belongs to the first certificate in the chain", cert.display(), key.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },

    /// Only part of the generated CA is on disk (e.g. `ca.pem` without `ca.key`).
    #[error("incomplete herd CA in {}: found {} but not {} — restore the missing file from a backup, or remove both to generate a new CA (every agent must then re-join with the new --ca-sha256)", dir.display(), present.display(), missing.display())]
    IncompleteCa {
        dir: PathBuf,
        present: PathBuf,
        missing: PathBuf,
    },

    /// The generated CA files exist but cannot be used to sign.
    #[error("cannot use the herd CA in {}: {detail} — restore ca.pem/ca.key from a backup, or remove both to generate a new CA (every agent must then re-join with the new --ca-sha256)", dir.display())]
    BadCa { dir: PathBuf, detail: String },

    /// Certificate or key generation failed.
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },

    /// A pinned CA fingerprint is not a SHA-256 hex digest.
    #[error(
        "invalid CA fingerprint {pin:?}: expected 64 hex characters (a SHA-256), optionally with ':' separators or a 'sha256:' prefix — copy it from the join command's --ca-sha256"
    )]
    BadPin { pin: String },

    /// A TLS connection was requested without anything to trust.
    #[error(
        "TLS needs a trusted CA but none was given — pass --ca-sha256 <hex> (printed by the server / join command) or --ca-file <PEM>"
    )]
    NoTrust,

    /// rustls refused to build a configuration.
    #[error("cannot build TLS configuration: {source}")]
    Config {
        #[source]
        source: rustls::Error,
    },
}
