//! Variables and secrets: `GET /api/v1/vars`, `GET|PUT|DELETE /api/v1/vars/{key}`. A secret's
//! value is written, never answered.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A variable. The answer of every vars call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Var {
    /// Its name: 1 to 128 letters, digits, `_`, `.` or `-`.
    pub key: String,
    /// Where it applies: `global`, or a job's or workflow's own (`workflow:NAME`).
    pub scope: String,
    /// The value; null for a secret (never answered).
    #[schema(required = true)]
    pub value: Option<String>,
    /// Whether it is a secret (encrypted at rest, shown as `***`).
    pub secret: bool,
    /// When it was last set.
    pub updated_at: i64,
    /// Who last set it (`key:<name>`).
    pub updated_by: String,
}

/// The query of `GET /api/v1/vars`.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, utoipa::IntoParams,
)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct VarsQuery {
    /// Whose variables: `global` (the default), or a job's or workflow's own
    /// (`job:NAME`, `workflow:NAME`: what its steps set with `herd helper var set`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[param(pattern = r"^(global|(job|workflow):[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$")]
    pub scope: Option<String>,
}

/// The body of `PUT /api/v1/vars/{key}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetVar {
    /// The value, at most 64 KiB.
    pub value: String,
    /// Keep it as a secret: encrypted at rest, never answered.
    #[serde(default)]
    pub secret: bool,
}

impl SetVar {
    /// The longest value, in bytes.
    pub const MAX_VALUE: usize = 64 * 1024;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::check;

    #[test]
    fn vars_match_the_server() {
        check(
            r#"{"key":"db_pw","scope":"global","secret":true,"updated_at":1,"updated_by":"key:admin","value":null}"#,
            &Var {
                key: "db_pw".into(),
                scope: "global".into(),
                value: None,
                secret: true,
                updated_at: 1,
                updated_by: "key:admin".into(),
            },
        );
        check(
            r#"{"secret":false,"value":"eu"}"#,
            &SetVar {
                value: "eu".into(),
                secret: false,
            },
        );
        let plain: SetVar = serde_json::from_str(r#"{"value":"eu"}"#).unwrap();
        assert!(!plain.secret);
    }
}
