//! Where the model is: `LlmConfig` from the environment (`HERD_LLM_*`) or from the settings a
//! server's config file fills (`LlmSettings`).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// The whole-call time limit when none is configured (waits and retries included).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Retries after the first attempt when none is configured.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// Token limits: `max_tokens_per_request` is sent as the request's `max_tokens`; once the
/// tokens used this UTC day (prompt + completion, as the server reports them) reach
/// `max_tokens_per_day`, calls are refused until the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max_tokens_per_request: u32,
    pub max_tokens_per_day: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_tokens_per_request: 4096,
            max_tokens_per_day: 2_000_000,
        }
    }
}

/// An OpenAI-compatible endpoint: `base_url` is the part before `/chat/completions`
/// (`http://127.0.0.1:8080/v1`, `https://api.openai.com/v1`,
/// `https://generativelanguage.googleapis.com/v1beta/openai`).
#[derive(Clone, PartialEq, Eq)]
pub struct LlmConfig {
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    /// The whole call: every attempt and every wait between them.
    pub timeout: Duration,
    /// Retries after the first attempt (connection errors, 429, 5xx).
    pub max_retries: u32,
    pub budget: Budget,
}

// The key is never printed.
impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("budget", &self.budget)
            .finish()
    }
}

/// The one-line instructions shown when no model is configured.
pub fn not_configured_help() -> &'static str {
    "no LLM is configured — set HERD_LLM_URL to an OpenAI-compatible endpoint (e.g. \
     http://127.0.0.1:8080/v1; OpenAI, Gemini's OpenAI-compatible endpoint, Ollama, vLLM and \
     llama.cpp's server all work), HERD_LLM_MODEL to the model's name, and HERD_LLM_API_KEY if \
     the endpoint wants a key"
}

/// What a config file (or the environment) says; every field optional. `into_config` checks it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    pub url: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub timeout_secs: Option<u64>,
    pub max_retries: Option<u32>,
    pub max_tokens_per_request: Option<u32>,
    pub max_tokens_per_day: Option<u64>,
}

impl LlmSettings {
    /// The settings from `HERD_LLM_URL`, `HERD_LLM_MODEL`, `HERD_LLM_API_KEY` and the optional
    /// `HERD_LLM_TIMEOUT` (seconds), `HERD_LLM_MAX_RETRIES`, `HERD_LLM_MAX_TOKENS`,
    /// `HERD_LLM_MAX_TOKENS_PER_DAY`, read through `get` (the environment in `from_env`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<LlmSettings, String> {
        let text = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        fn number<T: std::str::FromStr>(
            name: &str,
            v: Option<String>,
        ) -> Result<Option<T>, String> {
            match v {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    format!("{name}={v:?} is not a whole number — set it to one or unset it")
                }),
            }
        }
        Ok(LlmSettings {
            url: text("HERD_LLM_URL"),
            model: text("HERD_LLM_MODEL"),
            api_key: text("HERD_LLM_API_KEY"),
            timeout_secs: number("HERD_LLM_TIMEOUT", text("HERD_LLM_TIMEOUT"))?,
            max_retries: number("HERD_LLM_MAX_RETRIES", text("HERD_LLM_MAX_RETRIES"))?,
            max_tokens_per_request: number("HERD_LLM_MAX_TOKENS", text("HERD_LLM_MAX_TOKENS"))?,
            max_tokens_per_day: number(
                "HERD_LLM_MAX_TOKENS_PER_DAY",
                text("HERD_LLM_MAX_TOKENS_PER_DAY"),
            )?,
        })
    }

    /// `Ok(None)` when neither a URL nor a model is given (no LLM configured); an error naming
    /// what is wrong when only one is, or a value is unusable.
    pub fn into_config(self) -> Result<Option<LlmConfig>, String> {
        let (url, model) = match (self.url, self.model) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(
                    "HERD_LLM_URL is set but HERD_LLM_MODEL is not — set it to the \
                            model's name (e.g. gpt-4o-mini, qwen2.5:7b)"
                        .to_string(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "HERD_LLM_MODEL is set but HERD_LLM_URL is not — set it to the \
                            endpoint (e.g. http://127.0.0.1:8080/v1)"
                        .to_string(),
                );
            }
            (Some(url), Some(model)) => (url.trim().to_string(), model.trim().to_string()),
        };
        let parsed = url::Url::parse(&url).map_err(|e| {
            format!("HERD_LLM_URL {url:?} is not a URL ({e}) — e.g. http://127.0.0.1:8080/v1")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "HERD_LLM_URL {url:?} is not an http(s) URL — e.g. http://127.0.0.1:8080/v1"
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!(
                "HERD_LLM_URL {url:?} has a query or fragment — give the base only, e.g. \
                 http://127.0.0.1:8080/v1"
            ));
        }
        let base_url = url.trim_end_matches('/').to_string();
        let base_url = base_url
            .strip_suffix("/chat/completions")
            .map(str::to_string)
            .unwrap_or(base_url);
        let defaults = Budget::default();
        let budget = Budget {
            max_tokens_per_request: self
                .max_tokens_per_request
                .unwrap_or(defaults.max_tokens_per_request),
            max_tokens_per_day: self
                .max_tokens_per_day
                .unwrap_or(defaults.max_tokens_per_day),
        };
        if budget.max_tokens_per_request == 0 {
            return Err("the LLM's max tokens per request is 0 — give at least 1".to_string());
        }
        let timeout = match self.timeout_secs {
            None => DEFAULT_TIMEOUT,
            Some(0) => return Err("the LLM's timeout is 0 seconds — give at least 1".to_string()),
            Some(s) => Duration::from_secs(s),
        };
        Ok(Some(LlmConfig {
            base_url,
            model,
            api_key: self.api_key.filter(|k| !k.trim().is_empty()),
            timeout,
            max_retries: self.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            budget,
        }))
    }
}

impl LlmConfig {
    /// A config with the defaults for everything but the endpoint and the model.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> LlmConfig {
        LlmConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            model: model.into(),
            api_key: None,
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            budget: Budget::default(),
        }
    }

    /// The config from the `HERD_LLM_*` environment variables; `Ok(None)` when they are not
    /// set (show `not_configured_help`).
    pub fn from_env() -> Result<Option<LlmConfig>, String> {
        LlmSettings::from_lookup(|name| std::env::var(name).ok())?.into_config()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Option<LlmConfig>, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LlmSettings::from_lookup(|k| map.get(k).cloned())?.into_config()
    }

    #[test]
    fn nothing_set_is_not_configured() {
        assert_eq!(from(&[]).unwrap(), None);
        assert_eq!(from(&[("HERD_LLM_URL", " ")]).unwrap(), None);
        assert!(not_configured_help().contains("HERD_LLM_URL"));
        assert!(not_configured_help().contains("HERD_LLM_MODEL"));
        assert!(!not_configured_help().contains('\n'));
    }

    #[test]
    fn a_full_config() {
        let c = from(&[
            ("HERD_LLM_URL", "http://127.0.0.1:8080/v1/"),
            ("HERD_LLM_MODEL", "qwen"),
            ("HERD_LLM_API_KEY", "sk-secret"),
            ("HERD_LLM_TIMEOUT", "30"),
            ("HERD_LLM_MAX_TOKENS_PER_DAY", "1000"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:8080/v1");
        assert_eq!(c.model, "qwen");
        assert_eq!(c.api_key.as_deref(), Some("sk-secret"));
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.budget.max_tokens_per_day, 1000);
        assert!(!format!("{c:?}").contains("sk-secret"));
        let c = from(&[
            (
                "HERD_LLM_URL",
                "https://api.example.com/v1/chat/completions",
            ),
            ("HERD_LLM_MODEL", "m"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.base_url, "https://api.example.com/v1");
    }

    #[test]
    fn half_or_bad_configs_say_what_to_set() {
        for (vars, needle) in [
            (vec![("HERD_LLM_URL", "http://x/v1")], "HERD_LLM_MODEL"),
            (vec![("HERD_LLM_MODEL", "m")], "HERD_LLM_URL"),
            (
                vec![("HERD_LLM_URL", "ftp://x"), ("HERD_LLM_MODEL", "m")],
                "http(s)",
            ),
            (
                vec![("HERD_LLM_URL", "not a url"), ("HERD_LLM_MODEL", "m")],
                "not a URL",
            ),
            (
                vec![
                    ("HERD_LLM_URL", "http://x"),
                    ("HERD_LLM_MODEL", "m"),
                    ("HERD_LLM_TIMEOUT", "soon"),
                ],
                "HERD_LLM_TIMEOUT",
            ),
        ] {
            let e = from(&vars).unwrap_err();
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains('\n'));
        }
    }
}
