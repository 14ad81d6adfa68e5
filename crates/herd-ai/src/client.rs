//! `Llm`: one OpenAI-compatible endpoint, `POST {base}/chat/completions`.
//!
//! Structured output is asked for with `response_format: json_schema` (strict); a server that
//! refuses it (a 400 or 422 naming `response_format`/`json_schema` — llama.cpp and others —, or a
//! 500 with a validation error naming it — llama-cpp-python) is asked
//! again with `json_object`, then with no `response_format`, and the client remembers what
//! worked. Connection errors, 429 and 5xx are retried with jittered exponential backoff (a
//! `Retry-After` is waited out), all within the config's timeout. Answers are read up to
//! `MAX_BODY`. Tokens are counted per client and per UTC day; past the day's budget a call is
//! refused before anything is sent.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{LlmConfig, not_configured_help};
use crate::extract::preview;

/// The largest response body read; a longer one is refused (the rest is not read).
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// The most of an error body shown.
const MAX_ERROR_BODY: usize = 64 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

const MODE_SCHEMA: u8 = 0;
const MODE_OBJECT: u8 = 1;
const MODE_NONE: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Message {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Message {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A JSON Schema the answer should follow, with the name `response_format` gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseSchema {
    pub name: String,
    pub schema: Value,
}

/// Tokens as the server reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
    fn add(&mut self, other: Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
    }
}

/// A model's answer: `content` is the text of the first choice, not yet trusted (parse it with
/// `parse_plan` and friends); `raw` the whole response body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub content: String,
    pub usage: Usage,
    pub model: String,
    pub raw: Value,
}

/// What went wrong with a call; each displays as one line saying what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmError {
    NotConfigured,
    /// The HTTP client could not be built (TLS set-up).
    Client(String),
    Unreachable {
        url: String,
        why: String,
    },
    Timeout {
        url: String,
        after: Duration,
    },
    Unauthorized {
        url: String,
        status: u16,
        text: String,
    },
    Status {
        url: String,
        status: u16,
        text: String,
        attempts: u32,
    },
    BadAnswer {
        url: String,
        why: String,
    },
    Budget {
        used: u64,
        limit: u64,
    },
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmError::NotConfigured => write!(f, "{}", not_configured_help()),
            LlmError::Client(why) => write!(f, "cannot set up the LLM client: {why}"),
            LlmError::Unreachable { url, why } => write!(
                f,
                "cannot reach the LLM at {url}: {why} — is the server running, and is HERD_LLM_URL right?"
            ),
            LlmError::Timeout { url, after } => write!(
                f,
                "the LLM at {url} did not answer within {}s — try again, use a faster model, or raise the timeout (HERD_LLM_TIMEOUT)",
                after.as_secs_f64().ceil()
            ),
            LlmError::Unauthorized { url, status, text } => write!(
                f,
                "the LLM at {url} refused the key ({status}: {text}) — check HERD_LLM_API_KEY"
            ),
            LlmError::Status {
                url,
                status,
                text,
                attempts,
            } => {
                let tries = if *attempts > 1 {
                    format!(" after {attempts} attempts")
                } else {
                    String::new()
                };
                write!(
                    f,
                    "the LLM at {url} answered {status}{tries}: {text} — check HERD_LLM_MODEL and the server's log"
                )
            }
            LlmError::BadAnswer { url, why } => write!(
                f,
                "the LLM at {url} gave an answer herd cannot use: {why} — try again or another model"
            ),
            LlmError::Budget { used, limit } => write!(
                f,
                "the LLM token budget for today is spent ({used} of {limit} tokens, UTC day) — wait for tomorrow or raise HERD_LLM_MAX_TOKENS_PER_DAY"
            ),
        }
    }
}

impl std::error::Error for LlmError {}

/// The client of one endpoint. Cheap to share behind an `Arc`; calls may run concurrently.
pub struct Llm {
    config: LlmConfig,
    url: String,
    http: reqwest::Client,
    /// The `response_format` this server accepts: `MODE_SCHEMA`, `MODE_OBJECT`, `MODE_NONE`.
    mode: AtomicU8,
    usage: Mutex<Usage>,
    /// (UTC day number, tokens used that day).
    day: Mutex<(u64, u64)>,
}

impl fmt::Debug for Llm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Llm").field("config", &self.config).finish()
    }
}

impl Llm {
    pub fn new(config: LlmConfig) -> Result<Llm, LlmError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LlmError::Client(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Client(chain(&e)))?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Llm {
            config,
            url,
            http,
            mode: AtomicU8::new(MODE_SCHEMA),
            usage: Mutex::new(Usage::default()),
            day: Mutex::new((0, 0)),
        })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Tokens used by this client's calls so far.
    pub fn usage(&self) -> Usage {
        *self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tokens used today (UTC) by this client.
    pub fn used_today(&self) -> u64 {
        let day = self.day.lock().unwrap_or_else(|p| p.into_inner());
        if day.0 == today() { day.1 } else { 0 }
    }

    /// One chat completion. With a schema, the answer is asked to follow it (see the module
    /// comment for servers that cannot); the content is still untrusted text.
    pub async fn chat(
        &self,
        messages: &[Message],
        schema: Option<&ResponseSchema>,
    ) -> Result<Reply, LlmError> {
        let limit = self.config.budget.max_tokens_per_day;
        let used = self.used_today();
        if used >= limit {
            return Err(LlmError::Budget { used, limit });
        }
        let deadline = Instant::now() + self.config.timeout;
        let mut mode = match schema {
            Some(_) => self.mode.load(Ordering::Relaxed),
            None => MODE_NONE,
        };
        loop {
            let body = self.body(messages, schema, mode);
            let (status, bytes, attempts) = self.send(&body, deadline).await?;
            if mode < MODE_NONE && format_refused(status, &bytes) {
                mode += 1;
                self.mode.store(mode, Ordering::Relaxed);
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(LlmError::Unauthorized {
                    url: self.url.clone(),
                    status: status.as_u16(),
                    text: error_text(&bytes),
                });
            }
            if !status.is_success() {
                return Err(LlmError::Status {
                    url: self.url.clone(),
                    status: status.as_u16(),
                    text: error_text(&bytes),
                    attempts,
                });
            }
            let prompt_bytes = messages.iter().map(|m| m.content.len()).sum();
            let reply = self.reply(&bytes, prompt_bytes)?;
            self.count(reply.usage);
            return Ok(reply);
        }
    }

    fn body(&self, messages: &[Message], schema: Option<&ResponseSchema>, mode: u8) -> Value {
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "max_tokens": self.config.budget.max_tokens_per_request,
            "stream": false,
        });
        if let Some(schema) = schema {
            let format = match mode {
                MODE_SCHEMA => Some(json!({
                    "type": "json_schema",
                    "json_schema": {"name": schema.name, "schema": schema.schema, "strict": true},
                })),
                MODE_OBJECT => Some(json!({"type": "json_object"})),
                _ => None,
            };
            if let (Some(format), Some(o)) = (format, body.as_object_mut()) {
                o.insert("response_format".to_string(), format);
            }
        }
        body
    }

    /// Sends `body` until an answer that is not retried, or the retries or the time run out.
    /// Returns the last status, its body and the number of attempts.
    async fn send(
        &self,
        body: &Value,
        deadline: Instant,
    ) -> Result<(StatusCode, Vec<u8>, u32), LlmError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.timeout());
            }
            let mut req = self.http.post(&self.url).json(body).timeout(remaining);
            if let Some(key) = &self.config.api_key {
                req = req.bearer_auth(key);
            }
            let last = attempt > self.config.max_retries;
            let (retry_after, failure) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(resp.headers());
                    let cap = if status.is_success() {
                        MAX_BODY
                    } else {
                        MAX_ERROR_BODY
                    };
                    let (bytes, truncated) = match read_capped(resp, cap).await {
                        Ok(read) => read,
                        Err(e) if e.is_timeout() => return Err(self.timeout()),
                        Err(e) => {
                            return Err(LlmError::Unreachable {
                                url: self.url.clone(),
                                why: format!("the answer broke off: {}", chain(&e)),
                            });
                        }
                    };
                    if truncated && status.is_success() {
                        return Err(LlmError::BadAnswer {
                            url: self.url.clone(),
                            why: format!("the response is larger than {} MiB", MAX_BODY >> 20),
                        });
                    }
                    // A server error that is a refusal of `response_format` (llama-cpp-python
                    // answers 500 with its validation error) would come back the same.
                    let retried = status == StatusCode::TOO_MANY_REQUESTS
                        || (status.is_server_error() && !format_refused(status, &bytes));
                    if !retried || last {
                        return Ok((status, bytes, attempt));
                    }
                    (retry_after, Err((status, bytes)))
                }
                Err(e) if e.is_timeout() => return Err(self.timeout()),
                Err(e) => {
                    let failure = LlmError::Unreachable {
                        url: self.url.clone(),
                        why: chain(&e),
                    };
                    if last {
                        return Err(failure);
                    }
                    (None, Ok(failure))
                }
            };
            let wait = retry_after.unwrap_or_else(|| backoff(attempt));
            let remaining = deadline.saturating_duration_since(Instant::now());
            if wait >= remaining {
                // No time left to wait: the last answer is the result (never a retry sent
                // before the server's `Retry-After`).
                return match failure {
                    Ok(unreachable) => Err(unreachable),
                    Err((status, bytes)) => Ok((status, bytes, attempt)),
                };
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn timeout(&self) -> LlmError {
        LlmError::Timeout {
            url: self.url.clone(),
            after: self.config.timeout,
        }
    }

    /// The reply in a 2xx body. A server that reports no `usage` is counted at an estimated
    /// 4 bytes a token, so the day's budget still holds.
    fn reply(&self, bytes: &[u8], prompt_bytes: usize) -> Result<Reply, LlmError> {
        let bad = |why: String| LlmError::BadAnswer {
            url: self.url.clone(),
            why,
        };
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| {
            bad(format!(
                "the response is not JSON ({e}; it begins {:?})",
                preview(&String::from_utf8_lossy(&bytes[..bytes.len().min(200)]), 80)
            ))
        })?;
        let message = raw
            .get("choices")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("message"))
            .ok_or_else(|| bad("choices[0].message: missing".to_string()))?;
        let content = match message.get("content") {
            Some(Value::String(s)) => s.clone(),
            // Some servers answer in parts: [{"type":"text","text":"…"}].
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
            _ => {
                let refusal = message.get("refusal").and_then(Value::as_str);
                return Err(bad(match refusal {
                    Some(r) => format!("the model refused: {}", one_line(r, 200)),
                    None => "choices[0].message.content: not text".to_string(),
                }));
            }
        };
        let number = |key: &str| {
            raw.get("usage")
                .and_then(|u| u.get(key))
                .and_then(Value::as_u64)
        };
        let estimate = |bytes: usize| (bytes as u64).div_ceil(4);
        let usage = Usage {
            prompt_tokens: number("prompt_tokens").unwrap_or_else(|| estimate(prompt_bytes)),
            completion_tokens: number("completion_tokens")
                .unwrap_or_else(|| estimate(content.len())),
        };
        let model = raw
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(&self.config.model)
            .to_string();
        Ok(Reply {
            content,
            usage,
            model,
            raw,
        })
    }

    fn count(&self, usage: Usage) {
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(usage);
        let mut day = self.day.lock().unwrap_or_else(|p| p.into_inner());
        let now = today();
        if day.0 != now {
            *day = (now, 0);
        }
        day.1 = day.1.saturating_add(usage.total());
    }
}

/// Days since the epoch, UTC.
fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// Full jitter: a random wait up to 250 ms · 2^(attempt-1), at most 10 s, at least 50 ms.
fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 5..=ms).max(50))
}

/// `Retry-After`: seconds or an HTTP date (one in the past: no wait).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// An answer refusing the request's `response_format`: a 400 or 422 about it, or a 500 whose
/// body is a validation error naming it (llama-cpp-python's server).
fn format_refused(status: StatusCode, body: &[u8]) -> bool {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => refuses_format(body),
        StatusCode::INTERNAL_SERVER_ERROR => {
            let text = String::from_utf8_lossy(body).to_ascii_lowercase();
            text.contains("response_format") && text.contains("validation")
        }
        _ => false,
    }
}

/// A 400 that is about `response_format` (the server cannot do structured output).
fn refuses_format(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    [
        "response_format",
        "json_schema",
        "json_object",
        "response format",
        "grammar",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// The server's error as one short line: `error.message` when it is JSON, else the text.
fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let message = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        let e = v.get("error")?;
        e.get("message")
            .and_then(Value::as_str)
            .or_else(|| e.as_str())
            .map(str::to_string)
    });
    let text = message.unwrap_or_else(|| text.into_owned());
    if text.trim().is_empty() {
        "no text".to_string()
    } else {
        one_line(&text, 300)
    }
}

/// `s` on one line (control characters as spaces), at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    preview(&flat, max)
}

/// The body up to `cap` bytes; whether more was there (then the rest is not read).
async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Ok((Vec::new(), true));
    }
    let mut body = Vec::with_capacity(resp.content_length().map_or(0, |n| n as usize));
    while let Some(chunk) = resp.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// An error and its causes on one line, each cause once.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    one_line(&parts.join(": "), 300)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        for attempt in 1..40 {
            let b = backoff(attempt);
            assert!(
                b >= Duration::from_millis(50) && b <= MAX_BACKOFF,
                "{attempt}: {b:?}"
            );
        }
    }

    #[test]
    fn error_texts_are_one_line() {
        assert_eq!(
            error_text(br#"{"error":{"message":"bad\nkey"}}"#),
            "bad key"
        );
        assert_eq!(error_text(br#"{"error":"nope"}"#), "nope");
        assert_eq!(error_text(b""), "no text");
        assert_eq!(error_text(b"plain\r\ntext"), "plain  text");
        assert!(refuses_format(
            br#"{"error":{"message":"'response_format' of type 'json_schema' is not supported"}}"#
        ));
        assert!(!refuses_format(b"context length exceeded"));
        let llama_cpp_python = br#"{"error":{"message":"1 validation error: {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}"}}"#;
        assert!(format_refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            llama_cpp_python
        ));
        assert!(!format_refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            b"out of memory"
        ));
        assert!(!format_refused(StatusCode::BAD_GATEWAY, llama_cpp_python));
        let e = LlmError::Budget { used: 10, limit: 5 };
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
