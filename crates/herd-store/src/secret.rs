//! Bearer secrets (API keys, join tokens, agent credentials): `<kind>_<id>_<secret>`.
//! Only a SHA-256 of the secret part is stored; the id finds the row.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A freshly made secret: the whole token (shown once) and what is stored.
#[derive(Debug, Clone)]
pub struct Secret {
    pub id: String,
    pub token: String,
    pub hash: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("malformed {kind}: expected {prefix}_<id>_<secret>")]
pub struct SecretError {
    pub kind: &'static str,
    pub prefix: &'static str,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

impl Secret {
    /// `prefix` is the kind marker, e.g. `hk` (API key), `hj` (join token), `ha` (agent).
    pub fn generate(prefix: &str) -> Secret {
        let id = random_hex(8);
        let secret = random_hex(24);
        Secret {
            token: format!("{prefix}_{id}_{secret}"),
            hash: hash_secret(&secret),
            id,
        }
    }

    /// Splits a presented token into (id, secret part).
    pub fn parse<'a>(
        token: &'a str,
        prefix: &'static str,
        kind: &'static str,
    ) -> Result<(&'a str, &'a str), SecretError> {
        let err = SecretError { kind, prefix };
        let rest = token
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('_'))
            .ok_or(err.clone())?;
        let (id, secret) = rest.split_once('_').ok_or(err.clone())?;
        if id.is_empty() || secret.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err);
        }
        Ok((id, secret))
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn verify_secret(secret: &str, stored_hash: &str) -> bool {
    use subtle::ConstantTimeEq;
    let h = hash_secret(secret);
    h.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Secret::generate("hk");
        let (id, secret) = Secret::parse(&s.token, "hk", "API key").unwrap();
        assert_eq!(id, s.id);
        assert!(verify_secret(secret, &s.hash));
        assert!(!verify_secret("nope", &s.hash));
    }

    #[test]
    fn malformed() {
        for bad in ["", "hk", "hk_", "hk_abc", "hj_ab_cd", "hk__x", "hk_zz_x"] {
            assert!(Secret::parse(bad, "hk", "API key").is_err(), "{bad}");
        }
    }
}
