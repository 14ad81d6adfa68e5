//! The calls herd makes to other systems, as data: an HTTP request ([`HttpCall`]) and a
//! notification ([`Notify`]: Slack, Discord, a generic webhook or an email), with their retry
//! ([`Retry`]) and rate ([`Rate`]) settings. `herd-actions` performs them; a workflow's `http`
//! and `notify` steps hold them. Each type's `check` tells in one line what is wrong with a
//! value that parsed (a URL's scheme, a method, an empty recipient, a JSONPath that does not
//! compile, …), so a definition is refused before anything is sent.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest request body herd sends (its JSON text or string).
pub const MAX_BODY: usize = 1024 * 1024;
/// Most headers a call may set.
pub const MAX_HEADERS: usize = 64;
/// Longest header value a call may set.
pub const MAX_HEADER_VALUE: usize = 8 * 1024;
/// Longest timeout a call may ask for (10 minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Most retries a call may ask for.
pub const MAX_RETRIES: u32 = 20;
/// Longest wait between two attempts (10 minutes).
pub const MAX_BACKOFF_MS: u64 = 600_000;
/// Most JSONPath extractions of one call.
pub const MAX_EXTRACT: usize = 64;
/// Longest notification text (a Discord message is 2 000 characters at most, and is
/// checked against that).
pub const MAX_TEXT: usize = 64 * 1024;
/// Longest Discord message, in characters.
pub const MAX_DISCORD_TEXT: usize = 2000;
/// Most recipients of one email.
pub const MAX_RECIPIENTS: usize = 100;

/// The methods an [`HttpCall`] may use.
pub const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// One HTTP request: `http: {url: …}` in a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCall {
    /// `GET` unless given (any case; one of [`METHODS`]).
    #[serde(default = "default_method")]
    pub method: String,
    /// `http://` or `https://`, with a host, without credentials (put those in a header).
    pub url: String,
    /// Request headers, sent as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A string is sent as is; anything else as JSON, with `content-type: application/json`
    /// unless `headers` sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// The statuses that count as success: one status or a list; absent: any 2xx.
    #[serde(default, skip_serializing_if = "Expect::is_default")]
    pub expect: Expect,
    /// The whole call's budget, retries and their waits included (default 30 s).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Output key → RFC 9535 JSONPath over the JSON response body. A path that selects one
    /// value gives it (a string as is, anything else as JSON text), several give a JSON
    /// array, none gives an empty string.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extract: BTreeMap<String, String>,
    /// Retries on connection errors, timeouts, 429 and 5xx; absent: one attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retry>,
    /// The rate of calls to this call's host; absent: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

fn default_method() -> String {
    "GET".to_string()
}

fn default_timeout_ms() -> u64 {
    HttpCall::DEFAULT_TIMEOUT_MS
}

impl HttpCall {
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

    /// A GET of `url` with every default.
    pub fn get(url: impl Into<String>) -> HttpCall {
        HttpCall {
            method: default_method(),
            url: url.into(),
            headers: BTreeMap::new(),
            body: None,
            expect: Expect::default(),
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
            extract: BTreeMap::new(),
            retries: None,
            rate: None,
        }
    }

    /// The method in upper case.
    pub fn method_upper(&self) -> String {
        self.method.to_ascii_uppercase()
    }

    /// What is wrong with this call, in one line.
    pub fn check(&self) -> Result<(), String> {
        let method = self.method_upper();
        if !METHODS.contains(&method.as_str()) {
            return Err(format!(
                "method {:?} is not one of {}",
                self.method,
                METHODS.join(", ")
            ));
        }
        check_url("url", &self.url)?;
        if self.headers.len() > MAX_HEADERS {
            return Err(format!(
                "{} headers: at most {MAX_HEADERS}",
                self.headers.len()
            ));
        }
        for (name, value) in &self.headers {
            check_header(name, value)?;
        }
        if let Some(body) = &self.body {
            let len = match body {
                serde_json::Value::String(s) => s.len(),
                other => serde_json::to_string(other).map(|s| s.len()).unwrap_or(0),
            };
            if len > MAX_BODY {
                return Err(format!("body of {len} bytes: at most {MAX_BODY}"));
            }
            if matches!(method.as_str(), "GET" | "HEAD") {
                return Err(format!("a {method} request has no body"));
            }
        }
        self.expect.check()?;
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!(
                "timeout_ms {}: from 1 to {MAX_TIMEOUT_MS}",
                self.timeout_ms
            ));
        }
        if self.extract.len() > MAX_EXTRACT {
            return Err(format!(
                "{} extracted keys: at most {MAX_EXTRACT}",
                self.extract.len()
            ));
        }
        for (key, path) in &self.extract {
            check_output_key(key)?;
            serde_json_path::JsonPath::parse(path)
                .map_err(|e| format!("extract {key}: JSONPath {path:?}: {}", one_line(&e)))?;
        }
        if let Some(r) = &self.retries {
            r.check()?;
        }
        if let Some(r) = &self.rate {
            r.check()?;
        }
        Ok(())
    }
}

fn one_line(e: &dyn fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// An output key: letters, digits, `_`, `-`, `.`; `status` is the response status's.
fn check_output_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 128 {
        return Err(format!("extract key {key:?}: 1 to 128 characters"));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "extract key {key:?}: only letters, digits, '_', '-' and '.'"
        ));
    }
    if key == "status" {
        return Err("extract key \"status\" is the response status's own".to_string());
    }
    Ok(())
}

/// A header name is an HTTP token; a value has no control characters (no CR/LF smuggling).
fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!(
            "header name {name:?} is not a valid HTTP header name"
        ));
    }
    if value.len() > MAX_HEADER_VALUE {
        return Err(format!(
            "header {name}: value of {} bytes, at most {MAX_HEADER_VALUE}",
            value.len()
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("header {name}: value has control characters"));
    }
    Ok(())
}

/// An `http(s)://` URL with a host and no credentials.
pub fn check_url(what: &str, raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{what} {raw:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{what} {raw:?}: scheme {:?}, only http and https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{what} {raw:?}: no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{what}: carries credentials — put them in a header instead"
        ));
    }
    Ok(())
}

/// The statuses an [`HttpCall`] expects: `expect: 204`, `expect: [200, 404]`; absent or
/// `"2xx"`: any 2xx.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Expect {
    #[default]
    Success,
    Statuses(Vec<u16>),
}

impl Expect {
    pub fn is_default(&self) -> bool {
        *self == Expect::Success
    }

    /// Whether `status` is what the call expects.
    pub fn matches(&self, status: u16) -> bool {
        match self {
            Expect::Success => (200..300).contains(&status),
            Expect::Statuses(list) => list.contains(&status),
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if let Expect::Statuses(list) = self {
            if list.is_empty() {
                return Err("expect: an empty list of statuses".to_string());
            }
            if let Some(bad) = list.iter().find(|s| !(100..=599).contains(*s)) {
                return Err(format!("expect: {bad} is not an HTTP status (100 to 599)"));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Success => f.write_str("2xx"),
            Expect::Statuses(list) => {
                let list: Vec<String> = list.iter().map(u16::to_string).collect();
                f.write_str(&list.join(" or "))
            }
        }
    }
}

impl Serialize for Expect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expect::Success => s.serialize_str("2xx"),
            Expect::Statuses(list) if list.len() == 1 => s.serialize_u16(list[0]),
            Expect::Statuses(list) => list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(u16),
            List(Vec<u16>),
            Class(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expect: a status, a list of statuses or \"2xx\"")
        })? {
            Raw::One(s) => Ok(Expect::Statuses(vec![s])),
            Raw::List(list) => Ok(Expect::Statuses(list)),
            Raw::Class(c) if c.eq_ignore_ascii_case("2xx") => Ok(Expect::Success),
            Raw::Class(c) => Err(serde::de::Error::custom(format!(
                "expect: {c:?} is not a status, a list of statuses or \"2xx\""
            ))),
        }
    }
}

/// Retries of a call: exponential backoff with full jitter (a wait drawn between 0 and
/// `backoff_ms · 2^(attempt-1)`, at most `max_backoff_ms`), a server's `Retry-After` honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first attempt (default 3).
    #[serde(default = "default_retry_count")]
    pub count: u32,
    /// The first wait's ceiling (default 500 ms).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// No wait is longer (default 30 s), `Retry-After` included.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_retry_count() -> u32 {
    3
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            count: default_retry_count(),
            backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

impl Retry {
    pub fn check(&self) -> Result<(), String> {
        if self.count > MAX_RETRIES {
            return Err(format!(
                "retries.count {}: at most {MAX_RETRIES}",
                self.count
            ));
        }
        if self.max_backoff_ms > MAX_BACKOFF_MS {
            return Err(format!(
                "retries.max_backoff_ms {}: at most {MAX_BACKOFF_MS}",
                self.max_backoff_ms
            ));
        }
        if self.backoff_ms > self.max_backoff_ms {
            return Err(format!(
                "retries.backoff_ms {} is above max_backoff_ms {}",
                self.backoff_ms, self.max_backoff_ms
            ));
        }
        Ok(())
    }

    /// The ceiling of the wait before retry number `retry` (1 for the first retry): the
    /// caller draws the wait uniformly below it (full jitter).
    pub fn ceiling_ms(&self, retry: u32) -> u64 {
        let shift = retry.saturating_sub(1).min(32);
        self.backoff_ms
            .saturating_mul(1u64 << shift)
            .min(self.max_backoff_ms)
    }
}

/// A token bucket: `per_second` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    pub fn check(&self) -> Result<(), String> {
        if !self.per_second.is_finite() || self.per_second <= 0.0 || self.per_second > 10_000.0 {
            return Err(format!(
                "rate.per_second {}: above 0, at most 10000",
                self.per_second
            ));
        }
        if self.burst == 0 || self.burst > 10_000 {
            return Err(format!("rate.burst {}: from 1 to 10000", self.burst));
        }
        Ok(())
    }
}

/// A notification: exactly one of `slack: {webhook, text}`, `discord: {webhook, text}`,
/// `webhook: URL` with `text` (a JSON POST of `{"text": …}`), or `email: {…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NotifyFields", into = "NotifyFields")]
pub enum Notify {
    /// A Slack incoming webhook: `{"text": …}`.
    Slack(Chat),
    /// A Discord webhook: `{"content": …}`.
    Discord(Chat),
    /// Any webhook: a POST of `{"text": …}`.
    Webhook {
        url: String,
        text: String,
    },
    Email(Email),
}

/// How a [`Notify`] is written: exactly one of the kinds is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slack: Option<Chat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discord: Option<Chat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<Email>,
}

impl TryFrom<NotifyFields> for Notify {
    type Error = String;

    fn try_from(f: NotifyFields) -> Result<Self, String> {
        let kinds = [
            f.slack.is_some(),
            f.discord.is_some(),
            f.webhook.is_some(),
            f.email.is_some(),
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if kinds != 1 {
            return Err(
                "notify: exactly one of slack, discord, webhook (with text) or email".to_string(),
            );
        }
        if f.webhook.is_none() && f.text.is_some() {
            return Err(
                "notify: text beside slack, discord or email belongs inside it".to_string(),
            );
        }
        if let Some(c) = f.slack {
            return Ok(Notify::Slack(c));
        }
        if let Some(c) = f.discord {
            return Ok(Notify::Discord(c));
        }
        if let Some(url) = f.webhook {
            let text = f
                .text
                .ok_or_else(|| "notify: webhook needs a text".to_string())?;
            return Ok(Notify::Webhook { url, text });
        }
        f.email
            .map(Notify::Email)
            .ok_or_else(|| "notify: exactly one of slack, discord, webhook or email".to_string())
    }
}

impl From<Notify> for NotifyFields {
    fn from(n: Notify) -> Self {
        match n {
            Notify::Slack(c) => NotifyFields {
                slack: Some(c),
                ..Default::default()
            },
            Notify::Discord(c) => NotifyFields {
                discord: Some(c),
                ..Default::default()
            },
            Notify::Webhook { url, text } => NotifyFields {
                webhook: Some(url),
                text: Some(text),
                ..Default::default()
            },
            Notify::Email(e) => NotifyFields {
                email: Some(e),
                ..Default::default()
            },
        }
    }
}

impl Notify {
    /// `slack`, `discord`, `webhook` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            Notify::Slack(_) => "slack",
            Notify::Discord(_) => "discord",
            Notify::Webhook { .. } => "webhook",
            Notify::Email(_) => "email",
        }
    }

    pub fn check(&self) -> Result<(), String> {
        match self {
            Notify::Slack(c) => c.check("slack", MAX_TEXT),
            Notify::Discord(c) => c.check("discord", MAX_DISCORD_TEXT),
            Notify::Webhook { url, text } => {
                check_url("notify.webhook", url)?;
                check_text("notify.text", text, MAX_TEXT)
            }
            Notify::Email(e) => e.check(),
        }
    }
}

fn check_text(what: &str, text: &str, max_chars: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    let n = text.chars().count();
    if n > max_chars {
        return Err(format!("{what}: {n} characters, at most {max_chars}"));
    }
    Ok(())
}

/// A chat webhook (Slack, Discord) and the message to post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chat {
    pub webhook: String,
    pub text: String,
}

impl Chat {
    fn check(&self, kind: &str, max_chars: usize) -> Result<(), String> {
        check_url(&format!("notify.{kind}.webhook"), &self.webhook)?;
        check_text(&format!("notify.{kind}.text"), &self.text, max_chars)
    }
}

/// An email sent through an SMTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// One address or a list.
    #[serde(deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    pub from: String,
    pub smtp: Smtp,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("to: an address or a list of addresses"))?
        {
            Raw::One(s) => vec![s],
            Raw::Many(v) => v,
        },
    )
}

impl Email {
    pub fn check(&self) -> Result<(), String> {
        if self.to.is_empty() {
            return Err("notify.email.to: no recipient".to_string());
        }
        if self.to.len() > MAX_RECIPIENTS {
            return Err(format!(
                "notify.email.to: {} recipients, at most {MAX_RECIPIENTS}",
                self.to.len()
            ));
        }
        for to in &self.to {
            check_address("notify.email.to", to)?;
        }
        check_address("notify.email.from", &self.from)?;
        if self.subject.trim().is_empty() {
            return Err("notify.email.subject is empty".to_string());
        }
        if self.subject.chars().any(char::is_control) || self.subject.len() > 998 {
            return Err(
                "notify.email.subject: one line of at most 998 bytes, no control characters"
                    .to_string(),
            );
        }
        check_text("notify.email.text", &self.text, MAX_TEXT)?;
        self.smtp.check()
    }
}

/// A plain address `local@domain` (no display name, no spaces, no angle brackets).
fn check_address(what: &str, addr: &str) -> Result<(), String> {
    let bad = || format!("{what}: {addr:?} is not an email address (local@domain)");
    let (local, domain) = addr.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.is_empty()
        || addr.len() > 254
        || addr
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
    {
        return Err(bad());
    }
    Ok(())
}

/// The SMTP server an [`Email`] goes through.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    /// Default 25.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Absent: `none` to a loopback host (`localhost`, 127.0.0.0/8, `::1`), `starttls`
    /// to any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SmtpTls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

fn default_smtp_port() -> u16 {
    25
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// How the connection to an SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text.
    None,
    /// Plain text upgraded with STARTTLS, which must succeed.
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

impl Smtp {
    /// Whether `host` names this machine (`localhost`, 127.0.0.0/8, `::1`).
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The protection used: the one given, else `none` on loopback and `starttls` elsewhere.
    pub fn effective_tls(&self) -> SmtpTls {
        self.tls.unwrap_or(if self.is_loopback() {
            SmtpTls::None
        } else {
            SmtpTls::Starttls
        })
    }

    pub fn check(&self) -> Result<(), String> {
        if self.host.is_empty()
            || self
                .host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '@')
        {
            return Err(format!(
                "notify.email.smtp.host {:?} is not a host",
                self.host
            ));
        }
        if self.port == 0 {
            return Err("notify.email.smtp.port 0".to_string());
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("notify.email.smtp: username and password go together".to_string());
        }
        if self.password.is_some() && self.effective_tls() == SmtpTls::None && !self.is_loopback() {
            return Err(format!(
                "notify.email.smtp: a password to {} without TLS would cross the network in clear — use tls: starttls or tls",
                self.host
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(json: &str) -> Result<HttpCall, String> {
        let call: HttpCall = serde_json::from_str(json).map_err(|e| e.to_string())?;
        call.check()?;
        Ok(call)
    }

    fn notify(json: &str) -> Result<Notify, String> {
        let n: Notify = serde_json::from_str(json).map_err(|e| e.to_string())?;
        n.check()?;
        Ok(n)
    }

    #[test]
    fn http_defaults() {
        let call = http(r#"{"url": "http://127.0.0.1:8080/x"}"#).unwrap();
        assert_eq!(call, HttpCall::get("http://127.0.0.1:8080/x"));
        assert_eq!(call.timeout_ms, 30_000);
        assert!(call.expect.matches(204));
        assert!(!call.expect.matches(301));
        assert_eq!(
            serde_json::to_string(&call).unwrap(),
            r#"{"method":"GET","url":"http://127.0.0.1:8080/x","timeout_ms":30000}"#
        );
    }

    #[test]
    fn http_full_round_trip() {
        let call = http(
            r#"{"method": "post", "url": "https://api.example.com/v1", "headers": {"X-Key": "k"},
                "body": {"a": 1}, "expect": [200, 409], "timeout_ms": 5000,
                "extract": {"id": "$.items[0].id"}, "retries": {"count": 2},
                "rate": {"per_second": 2.5, "burst": 5}}"#,
        )
        .unwrap();
        assert_eq!(call.method_upper(), "POST");
        assert_eq!(call.expect, Expect::Statuses(vec![200, 409]));
        assert_eq!(
            call.retries,
            Some(Retry {
                count: 2,
                backoff_ms: 500,
                max_backoff_ms: 30_000
            })
        );
        let again: HttpCall = serde_json::from_str(&serde_json::to_string(&call).unwrap()).unwrap();
        assert_eq!(again, call);
        let one = http(r#"{"url": "http://h/", "expect": 204}"#).unwrap();
        assert_eq!(one.expect, Expect::Statuses(vec![204]));
        assert_eq!(serde_json::to_value(&one.expect).unwrap(), 204);
        let class = http(r#"{"url": "http://h/", "expect": "2xx"}"#).unwrap();
        assert_eq!(class.expect, Expect::Success);
    }

    #[test]
    fn http_refusals() {
        let cases = [
            (r#"{"url": "ftp://h/x"}"#, "scheme \"ftp\""),
            (r#"{"url": "not a url"}"#, "url \"not a url\""),
            (r#"{"url": "http://u:p@h/"}"#, "credentials"),
            (
                r#"{"url": "http://h/", "method": "FETCH"}"#,
                "method \"FETCH\"",
            ),
            (
                r#"{"url": "http://h/", "body": "x"}"#,
                "GET request has no body",
            ),
            (
                r#"{"url": "http://h/", "headers": {"a b": "x"}}"#,
                "header name",
            ),
            (
                r#"{"url": "http://h/", "headers": {"a": "x\r\nB: y"}}"#,
                "control",
            ),
            (r#"{"url": "http://h/", "expect": []}"#, "empty list"),
            (
                r#"{"url": "http://h/", "expect": 99}"#,
                "not an HTTP status",
            ),
            (r#"{"url": "http://h/", "expect": "3xx"}"#, "expect"),
            (r#"{"url": "http://h/", "timeout_ms": 0}"#, "timeout_ms 0"),
            (
                r#"{"url": "http://h/", "extract": {"a": "$[?"}}"#,
                "extract a: JSONPath",
            ),
            (
                r#"{"url": "http://h/", "extract": {"status": "$.a"}}"#,
                "status",
            ),
            (
                r#"{"url": "http://h/", "retries": {"count": 99}}"#,
                "retries.count 99",
            ),
            (
                r#"{"url": "http://h/", "retries": {"backoff_ms": 9, "max_backoff_ms": 1}}"#,
                "above max_backoff_ms",
            ),
            (
                r#"{"url": "http://h/", "rate": {"per_second": 0, "burst": 1}}"#,
                "per_second",
            ),
            (
                r#"{"url": "http://h/", "rate": {"per_second": 1, "burst": 0}}"#,
                "burst",
            ),
            (
                r#"{"url": "http://h/", "bogus": 1}"#,
                "unknown field `bogus`",
            ),
        ];
        for (json, want) in cases {
            let err = http(json).expect_err(json);
            assert!(err.contains(want), "{json}: {err:?} lacks {want:?}");
            assert!(!err.contains('\n'), "{json}: {err:?}");
        }
    }

    #[test]
    fn notify_kinds() {
        let n = notify(r#"{"webhook": "http://127.0.0.1:9/hook", "text": "hi"}"#).unwrap();
        assert_eq!(
            n,
            Notify::Webhook {
                url: "http://127.0.0.1:9/hook".into(),
                text: "hi".into()
            }
        );
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"webhook":"http://127.0.0.1:9/hook","text":"hi"}"#
        );
        let n =
            notify(r#"{"slack": {"webhook": "https://hooks.slack.com/x", "text": "hi"}}"#).unwrap();
        assert_eq!(n.kind(), "slack");
        let n =
            notify(r#"{"discord": {"webhook": "https://discord.com/x", "text": "hi"}}"#).unwrap();
        assert_eq!(n.kind(), "discord");
        let n = notify(
            r#"{"email": {"to": "ops@example.com", "subject": "s", "text": "t",
                "from": "herd@example.com", "smtp": {"host": "127.0.0.1", "port": 2525}}}"#,
        )
        .unwrap();
        let Notify::Email(e) = &n else {
            panic!("{n:?}")
        };
        assert_eq!(e.to, vec!["ops@example.com"]);
        assert_eq!(e.smtp.effective_tls(), SmtpTls::None);
        let again: Notify = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(again, n);
    }

    #[test]
    fn notify_refusals() {
        let email = |extra: &str| {
            format!(
                r#"{{"email": {{"to": ["a@b.c"], "subject": "s", "text": "t", "from": "h@b.c",
                    "smtp": {{"host": "mail.example.com"{extra}}}}}}}"#
            )
        };
        let cases = [
            (r#"{}"#.to_string(), "exactly one"),
            (
                r#"{"webhook": "http://h/", "text": "x", "slack": {"webhook": "http://h/", "text": "x"}}"#.into(),
                "exactly one",
            ),
            (r#"{"webhook": "http://h/"}"#.into(), "needs a text"),
            (r#"{"webhook": "file:///etc/passwd", "text": "x"}"#.into(), "scheme"),
            (r#"{"webhook": "http://h/", "text": "  "}"#.into(), "text is empty"),
            (
                r#"{"slack": {"webhook": "http://h/", "text": "x"}, "text": "y"}"#.into(),
                "belongs inside",
            ),
            (
                format!(
                    r#"{{"discord": {{"webhook": "http://h/", "text": "{}"}}}}"#,
                    "x".repeat(2001)
                ),
                "at most 2000",
            ),
            (
                r#"{"email": {"to": [], "subject": "s", "text": "t", "from": "h@b.c", "smtp": {"host": "h"}}}"#.into(),
                "no recipient",
            ),
            (
                r#"{"email": {"to": "nobody", "subject": "s", "text": "t", "from": "h@b.c", "smtp": {"host": "h"}}}"#.into(),
                "not an email address",
            ),
            (email(r#", "username": "u""#), "go together"),
            (
                email(r#", "username": "u", "password": "p", "tls": "none""#),
                "in clear",
            ),
            (email(r#", "tls": "ssl""#), "unknown variant"),
            (r#"{"webhook": "http://h/", "text": "x", "smtp": 1}"#.into(), "unknown field `smtp`"),
        ];
        for (json, want) in cases {
            let err = notify(&json).expect_err(&json);
            assert!(err.contains(want), "{json}: {err:?} lacks {want:?}");
        }
        // A password to a remote host over STARTTLS (the default there) is fine.
        notify(&email(r#", "username": "u", "password": "p""#)).unwrap();
    }

    #[test]
    fn smtp_password_is_not_debug_printed() {
        let smtp = Smtp {
            host: "h".into(),
            port: 25,
            tls: None,
            username: Some("u".into()),
            password: Some("hunter2".into()),
        };
        assert!(!format!("{smtp:?}").contains("hunter2"));
        assert_eq!(smtp.effective_tls(), SmtpTls::Starttls);
    }

    #[test]
    fn retry_ceilings_grow_and_cap() {
        let r = Retry {
            count: 10,
            backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        let got: Vec<u64> = (1..=6).map(|n| r.ceiling_ms(n)).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(r.ceiling_ms(200), 1000);
    }
}
