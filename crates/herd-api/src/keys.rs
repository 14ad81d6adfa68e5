//! API keys, with which people and programs call the API: `POST /api/v1/keys` creates one,
//! `GET /api/v1/keys` lists them without their secrets.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /api/v1/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CreateKey {
    /// A name for the key, shown in the audit log as `key:<name>`: 1 to 64 characters, no
    /// control characters; default `unnamed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$"
    )]
    pub name: Option<String>,
    /// What the key may do (default `admin`): `operator` runs commands but manages no keys,
    /// tokens or policies; `viewer` reads only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::KeyRole>,
    /// A selector (`role=web`) every run of the key must stay within: a run that picks a
    /// machine beyond it is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$"
    )]
    pub scope: Option<String>,
}

impl CreateKey {
    /// Whether `name` may name an API key (what the schema says of `name`).
    pub fn valid_name(name: &str) -> bool {
        let n = name.chars().count();
        (1..=64).contains(&n) && !name.chars().any(char::is_control)
    }
}

/// A new API key, with its secret: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The secret, sent as `Authorization: Bearer <key>`.
    pub key: String,
    /// The key's id.
    pub id: String,
    /// The key's name.
    pub name: String,
    /// `admin | operator | viewer`.
    pub role: String,
    /// The selector its runs stay within; null: every machine.
    #[schema(required = true)]
    pub scope: Option<String>,
    /// When it was created.
    pub created_at: i64,
}

/// An API key as listed: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    /// The key's id.
    pub id: String,
    /// The key's name.
    pub name: String,
    /// What the key may do: `admin | operator | viewer`.
    pub role: String,
    /// The selector its runs stay within; null: every machine.
    #[schema(required = true)]
    pub scope: Option<String>,
    /// When it was created.
    pub created_at: i64,
    /// Who created it: `key:<name>` of the creating key, or the server itself (`server` for
    /// the first admin key, `herd up` for its own).
    pub created_by: String,
    /// When it was revoked; null while it is accepted.
    #[schema(required = true)]
    pub revoked_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::check;

    #[test]
    fn create_key_matches_the_server() {
        check(
            r#"{"name":"ci"}"#,
            &CreateKey {
                name: Some("ci".into()),
                ..CreateKey::default()
            },
        );
        check("{}", &CreateKey::default());
        let null: CreateKey = serde_json::from_str(r#"{"name":null}"#).unwrap();
        assert_eq!(null, CreateKey::default());
    }

    #[test]
    fn created_key_matches_the_server() {
        check(
            r#"{"created_at":1700000000000,"id":"07","key":"hk_07_s3cret","name":"ci","role":"operator","scope":"role=web"}"#,
            &CreatedKey {
                key: "hk_07_s3cret".into(),
                id: "07".into(),
                name: "ci".into(),
                role: "operator".into(),
                scope: Some("role=web".into()),
                created_at: 1_700_000_000_000,
            },
        );
    }

    /// The server writes the key's row without its hash.
    #[test]
    fn api_key_matches_the_server() {
        let k = ApiKey {
            id: "07".into(),
            name: "ci".into(),
            role: "admin".into(),
            scope: None,
            created_at: 1_700_000_000_000,
            created_by: "key:admin".into(),
            revoked_at: None,
        };
        check(
            concat!(
                r#"{"created_at":1700000000000,"created_by":"key:admin","id":"07","#,
                r#""name":"ci","revoked_at":null,"role":"admin","scope":null}"#
            ),
            &k,
        );
        check(
            concat!(
                r#"{"created_at":1700000000000,"created_by":"key:admin","id":"07","#,
                r#""name":"ci","revoked_at":1700000005000,"role":"admin","scope":null}"#
            ),
            &ApiKey {
                revoked_at: Some(1_700_000_005_000),
                ..k
            },
        );
    }
}

/// `GET /api/v1/me`: who the presented API key is and what it may do (the dashboard shows
/// only what the role allows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// The key's name (the audit log names it `key:<name>`).
    pub name: String,
    /// `admin | operator | viewer`.
    pub role: String,
    /// The selector its runs stay within; null: every machine.
    #[schema(required = true)]
    pub scope: Option<String>,
    /// The server's herd version.
    pub version: String,
}
