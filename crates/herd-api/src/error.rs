//! The body of every failed call: any 4xx or 5xx status answers `{"error": "..."}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What went wrong, in one line that says what failed and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The message, e.g. `no agent named "web-9" — see `herd agents``.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_matches_the_server() {
        crate::golden::check(
            r#"{"error":"run 42 not found — see `herd runs ls`"}"#,
            &ErrorBody {
                error: "run 42 not found — see `herd runs ls`".into(),
            },
        );
    }
}
