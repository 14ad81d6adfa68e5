//! Join tokens, with which new machines join the fleet: `POST /api/v1/tokens` creates one,
//! `GET /api/v1/tokens` lists them without their secrets.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CreateToken {
    /// How long the token stays valid, in seconds (at most ten years); default 3600.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub ttl_secs: Option<u64>,
    /// How many machines may join with it, 1 to 1,000,000; default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub uses: Option<i64>,
    /// The labels machines joining with it may hold (`{"role": "db"}`; a value `*` allows any
    /// value of its key). A label a machine declares beyond them is shown as a claim and
    /// matched by no selector until an operator sets it. Without `labels` and `any_labels`,
    /// a machine holds none of the labels it declares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// Machines joining with it hold whatever labels they declare (for fleets where every
    /// machine is trusted with its own targeting). Not with `labels`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub any_labels: Option<bool>,
}

impl CreateToken {
    /// The longest life of a join token, in seconds.
    pub const MAX_TTL_SECS: u64 = 315_360_000;
    /// The most machines one join token admits.
    pub const MAX_USES: i64 = 1_000_000;
}

/// A new join token, with its secret: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The secret to give `herd agent` (in `HERD_JOIN_TOKEN`, `--token-file` or `--token`).
    pub token: String,
    /// The token's id (listed by `GET /api/v1/tokens`).
    pub id: String,
    /// When the token stops being accepted.
    pub expires_at: i64,
    /// How many machines may join with it.
    pub uses: i64,
    /// The URL agents dial to reach this server.
    pub server: String,
    /// SHA-256 fingerprint of the CA the server generated for its TLS, for agents to pin;
    /// null when the server serves plain HTTP or a certificate of the operator's.
    #[schema(required = true)]
    pub ca_sha256: Option<String>,
    /// The labels machines joining with it may hold; null: any.
    #[schema(required = true)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    /// The `herd agent` command that joins a new machine (its `NAME` to fill in).
    pub join_command: String,
}

/// A join token as listed: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinToken {
    /// The token's id.
    pub id: String,
    /// When it was created.
    pub created_at: i64,
    /// Who created it: `key:<name>` of the API key, or the server itself for a token it
    /// made for its own agent (`herd up`).
    pub created_by: String,
    /// When it stops being accepted.
    pub expires_at: i64,
    /// How many more machines may join with it.
    pub uses_left: i64,
    /// Whether a machine can still join with it: uses left and not expired.
    pub usable: bool,
    /// The labels machines joining with it may hold; null: any.
    #[serde(default)]
    #[schema(required = true)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::check;

    #[test]
    fn create_token_matches_the_server() {
        check(
            r#"{"ttl_secs":60,"uses":3}"#,
            &CreateToken {
                ttl_secs: Some(60),
                uses: Some(3),
                ..Default::default()
            },
        );
        // Both are optional: the server defaults them.
        check("{}", &CreateToken::default());
        let nulls: CreateToken = serde_json::from_str(r#"{"ttl_secs":null,"uses":null}"#).unwrap();
        assert_eq!(nulls, CreateToken::default());
    }

    #[test]
    fn created_token_matches_the_server() {
        let t = CreatedToken {
            token: "hj_01_s3cret".into(),
            id: "01".into(),
            expires_at: 1_700_003_600_000,
            uses: 2,
            server: "https://10.0.0.1:7700".into(),
            ca_sha256: Some("ab12".into()),
            labels: None,
            join_command: "HERD_JOIN_TOKEN=hj_01_s3cret herd agent --server https://10.0.0.1:7700 --ca-sha256 ab12 --name NAME --state-dir /var/lib/herd-agent".into(),
        };
        check(
            concat!(
                r#"{"ca_sha256":"ab12","expires_at":1700003600000,"id":"01","#,
                r#""join_command":"HERD_JOIN_TOKEN=hj_01_s3cret herd agent --server https://10.0.0.1:7700 --ca-sha256 ab12 --name NAME --state-dir /var/lib/herd-agent","#,
                r#""labels":null,"server":"https://10.0.0.1:7700","token":"hj_01_s3cret","uses":2}"#
            ),
            &t,
        );
        let plain = CreatedToken {
            ca_sha256: None,
            ..t
        };
        assert!(crate::golden::canonical(&plain).contains(r#""ca_sha256":null"#));
    }

    #[test]
    fn join_token_matches_the_server() {
        check(
            concat!(
                r#"{"created_at":1700000000000,"created_by":"key:admin","#,
                r#""expires_at":1700003600000,"id":"01","labels":{"role":"db"},"usable":true,"uses_left":1}"#
            ),
            &JoinToken {
                id: "01".into(),
                created_at: 1_700_000_000_000,
                created_by: "key:admin".into(),
                expires_at: 1_700_003_600_000,
                uses_left: 1,
                usable: true,
                labels: Some([("role".to_string(), "db".to_string())].into()),
            },
        );
    }
}
