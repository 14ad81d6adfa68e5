//! One HTTP call: breaker, rate, attempt, retry; the response read within its caps.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use herd_core::actions::{HttpCall, Retry};
use herd_core::format_duration;
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::{ActionResult, Actions, ActionsConfig, Outcome};

/// Most response headers shown in the output, and the longest value shown.
const MAX_SHOWN_HEADERS: usize = 64;
const MAX_SHOWN_HEADER_VALUE: usize = 1024;

/// The client every call shares: rustls with the ring provider passed explicitly, the
/// system's CA certificates and the configured extra ones; redirects are not followed (a 3xx
/// is the answer).
pub(crate) fn client(config: &ActionsConfig) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    for cert in extra_roots(config)? {
        roots
            .add(cert)
            .map_err(|e| format!("the extra CA certificate is not usable: {e}"))?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(config.user_agent.clone())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))
}

pub(crate) fn extra_roots(
    config: &ActionsConfig,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let Some(pem) = &config.extra_ca_pem else {
        return Ok(Vec::new());
    };
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_bytes()).collect();
    let certs = certs.map_err(|e| format!("the extra CA PEM does not parse: {e}"))?;
    if certs.is_empty() {
        return Err("the extra CA PEM holds no certificate".to_string());
    }
    Ok(certs)
}

/// An error and its causes on one line (`a: b: c`), each cause once.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let line = s.to_string();
        if !out.contains(&line) {
            out.push_str(": ");
            out.push_str(&line);
        }
        source = s.source();
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A webhook's URL as shown: scheme and host, the rest (which is its credential: Slack's and
/// Discord's tokens are in the path) left out.
pub(crate) fn webhook_shown(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => format!("{}://{}/…", u.scheme(), host_key(&u)),
        Err(_) => "the webhook".to_string(),
    }
}

/// `host:port` of a URL (the port its scheme implies when absent).
pub(crate) fn host_key(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The wait before retry number `retry`: drawn uniformly up to the backoff's ceiling.
pub(crate) fn jittered(retry: &Retry, n: u32) -> Duration {
    let ceiling = retry.ceiling_ms(n);
    Duration::from_millis(rand::rng().random_range(0..=ceiling))
}

/// `Retry-After`: delay-seconds or an HTTP date (a date in the past: no wait).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
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

/// What went wrong with one attempt, and whether trying again may help.
struct AttemptError {
    line: String,
    retry_after: Option<Duration>,
}

/// `call`, named `what` in its error line (a webhook's URL is its credential and is not shown
/// whole).
pub(crate) async fn perform(actions: &Actions, call: &HttpCall, what: String) -> ActionResult {
    let config = actions.config();
    let method_name = call.method_upper();
    let url = match url::Url::parse(&call.url) {
        Ok(u) => u,
        Err(e) => return ActionResult::failed(format!("{what}: bad url: {e}")),
    };
    let method = match reqwest::Method::from_bytes(method_name.as_bytes()) {
        Ok(m) => m,
        Err(e) => return ActionResult::failed(format!("{what}: bad method: {e}")),
    };
    let client = match actions.client() {
        Ok(c) => c,
        Err(e) => return ActionResult::failed(format!("{what}: {e}")),
    };
    let host = host_key(&url);
    let rate = call.rate.unwrap_or(config.default_rate);
    let retry = call.retries.unwrap_or(Retry {
        count: 0,
        ..Retry::default()
    });
    let deadline = Instant::now() + Duration::from_millis(call.timeout_ms);
    let mut result = ActionResult::default();
    let mut log = String::new();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let fail = |result: ActionResult, log: String, line: String| ActionResult {
            output: format!("{log}{line}\n"),
            error: Some(format!("{what}: {line}")),
            ok: false,
            ..result
        };
        let permit = match actions.admit(&host) {
            Ok(p) => p,
            Err(line) => return fail(result, log, line),
        };
        if let Err(line) = actions.take_token(&host, rate, remaining).await {
            permit.release();
            return fail(result, log, line);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            permit.release();
            let line = format!(
                "timed out: no time left of {}",
                format_duration(Duration::from_millis(call.timeout_ms))
            );
            return fail(result, log, line);
        }
        result.attempts += 1;
        let attempt = attempt(
            &client,
            config,
            call,
            method.clone(),
            url.clone(),
            remaining,
        )
        .await;
        let error = match attempt {
            Err(e) => {
                permit.report(Outcome::Failed);
                AttemptError {
                    line: e,
                    retry_after: None,
                }
            }
            Ok(resp) => {
                let transient = resp.status == 429 || resp.status >= 500;
                permit.report(if transient {
                    Outcome::Failed
                } else {
                    Outcome::Healthy
                });
                result.status = Some(resp.status);
                result
                    .outputs
                    .insert("status".to_string(), resp.status.to_string());
                if call.expect.matches(resp.status) {
                    return finish(result, log, &what, call, resp);
                }
                let line = format!("{} (expected {})", resp.status_text(), call.expect);
                if !transient {
                    result.output = format!("{log}{}", resp.shown());
                    result.error = Some(format!("{what}: {line}"));
                    return result;
                }
                result.output = resp.shown();
                AttemptError {
                    line,
                    retry_after: resp.retry_after,
                }
            }
        };
        // A transient failure: retry when allowed and there is time for it.
        let n = result.attempts;
        let last_shown = std::mem::take(&mut result.output);
        let give_up = |result: ActionResult, log: String, why: String| {
            let line = if why.is_empty() {
                error.line.clone()
            } else {
                format!("{} — {why}", error.line)
            };
            let attempts = if n > 1 {
                format!(" after {n} attempts")
            } else {
                String::new()
            };
            ActionResult {
                output: format!("{log}{last_shown}{}{line}{attempts}\n", sep(&last_shown)),
                error: Some(format!("{what}: {line}{attempts}")),
                ok: false,
                ..result
            }
        };
        if n > retry.count {
            return give_up(result, log, String::new());
        }
        let max = Duration::from_millis(retry.max_backoff_ms);
        let wait = match error.retry_after {
            Some(asked) if asked > max => {
                let why = format!(
                    "the server asked to retry after {} (Retry-After), beyond max_backoff_ms {}",
                    format_duration(asked),
                    retry.max_backoff_ms
                );
                return give_up(result, log, why);
            }
            Some(asked) => asked,
            None => jittered(&retry, n),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if wait >= remaining {
            let why = format!(
                "no time left to retry in {} (timeout_ms {})",
                format_duration(wait),
                call.timeout_ms
            );
            return give_up(result, log, why);
        }
        let _ = writeln!(
            log,
            "attempt {n}: {} — retrying in {}",
            error.line,
            format_duration(wait)
        );
        tokio::time::sleep(wait).await;
    }
}

fn sep(shown: &str) -> &'static str {
    if shown.is_empty() || shown.ends_with('\n') {
        ""
    } else {
        "\n"
    }
}

/// A response as read: status, headers shown, body up to the cap.
struct Response {
    status: u16,
    reason: &'static str,
    version: String,
    headers: String,
    body: Vec<u8>,
    truncated: bool,
    retry_after: Option<Duration>,
}

impl Response {
    fn status_text(&self) -> String {
        format!("{} {}", self.status, self.reason)
            .trim_end()
            .to_string()
    }

    /// Status line, headers, blank line, body (lossy UTF-8), truncation marked.
    fn shown(&self) -> String {
        let mut out = format!(
            "{} {}\n{}\n",
            self.version,
            self.status_text(),
            self.headers
        );
        out.push_str(&String::from_utf8_lossy(&self.body));
        if self.truncated {
            let _ = writeln!(
                out,
                "{}[body truncated after {} bytes]",
                sep(&out),
                self.body.len()
            );
        } else if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

async fn attempt(
    client: &reqwest::Client,
    config: &ActionsConfig,
    call: &HttpCall,
    method: reqwest::Method,
    url: url::Url,
    remaining: Duration,
) -> Result<Response, String> {
    let mut req = client.request(method, url).timeout(remaining);
    let mut has_content_type = false;
    for (name, value) in &call.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name}: {e}"))?;
        let value = HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
        has_content_type |= name == CONTENT_TYPE;
        req = req.header(name, value);
    }
    match &call.body {
        None => {}
        Some(serde_json::Value::String(s)) => req = req.body(s.clone()),
        Some(v) => {
            if !has_content_type {
                req = req.header(CONTENT_TYPE, "application/json");
            }
            req = req.body(v.to_string());
        }
    }
    let resp = req.send().await.map_err(|e| describe(&e, remaining))?;
    let status = resp.status();
    let mut headers = String::new();
    for (i, (name, value)) in resp.headers().iter().enumerate() {
        if i == MAX_SHOWN_HEADERS {
            let _ = writeln!(
                headers,
                "[{} more headers not shown]",
                resp.headers().len() - i
            );
            break;
        }
        let value = String::from_utf8_lossy(value.as_bytes());
        let value: String = herd_core::escape_controls(&value)
            .chars()
            .take(MAX_SHOWN_HEADER_VALUE)
            .collect();
        let _ = writeln!(headers, "{name}: {value}");
    }
    let retry_after = retry_after(resp.headers());
    let version = format!("{:?}", resp.version());
    let (body, truncated) = read_capped(resp, config.max_body)
        .await
        .map_err(|e| describe(&e, remaining))?;
    Ok(Response {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or(""),
        version,
        headers,
        body,
        truncated,
        retry_after,
    })
}

/// The body up to `cap` bytes; the rest is not read (the connection is dropped).
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::with_capacity(
        resp.content_length()
            .map_or(0, |n| n.min(cap as u64) as usize),
    );
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

/// One line for a failed attempt.
fn describe(e: &reqwest::Error, remaining: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", format_duration(remaining));
    }
    let why = chain(e);
    if e.is_connect() {
        return format!("cannot connect: {why}");
    }
    why
}

/// The expected response: extract the outputs.
fn finish(
    mut result: ActionResult,
    log: String,
    what: &str,
    call: &HttpCall,
    resp: Response,
) -> ActionResult {
    result.output = format!("{log}{}", resp.shown());
    match extract(call, &resp) {
        Ok(values) => {
            result.outputs.extend(values);
            result.ok = true;
        }
        Err(line) => {
            let _ = writeln!(result.output, "{line}");
            result.error = Some(format!("{what}: {line}"));
        }
    }
    result
}

fn extract(call: &HttpCall, resp: &Response) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    if call.extract.is_empty() {
        return Ok(out);
    }
    if resp.truncated {
        return Err(format!(
            "cannot extract {}: the response body is over {} bytes",
            keys(call),
            resp.body.len()
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| {
        format!(
            "cannot extract {}: the response body is not JSON ({e})",
            keys(call)
        )
    })?;
    for (key, path) in &call.extract {
        let path =
            serde_json_path::JsonPath::parse(path).map_err(|e| format!("extract {key}: {e}"))?;
        let found = path.query(&json).all();
        let value = match found.as_slice() {
            [] => String::new(),
            [serde_json::Value::String(s)] => s.clone(),
            [one] => one.to_string(),
            many => {
                serde_json::Value::Array(many.iter().map(|v| (*v).clone()).collect()).to_string()
            }
        };
        out.insert(key.clone(), value);
    }
    Ok(out)
}

fn keys(call: &HttpCall) -> String {
    call.extract.keys().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let got = retry_after(&h).unwrap();
        assert!(
            got > Duration::from_secs(100) && got <= Duration::from_secs(120),
            "{got:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn jitter_stays_under_the_ceiling() {
        let r = Retry {
            count: 5,
            backoff_ms: 100,
            max_backoff_ms: 250,
        };
        for n in 1..=5 {
            for _ in 0..100 {
                assert!(jittered(&r, n) <= Duration::from_millis(r.ceiling_ms(n)));
            }
        }
    }

    #[test]
    fn host_keys_carry_the_default_port() {
        let k = |u: &str| host_key(&url::Url::parse(u).unwrap());
        assert_eq!(k("https://hooks.slack.com/x"), "hooks.slack.com:443");
        assert_eq!(k("http://127.0.0.1:8080/"), "127.0.0.1:8080");
        assert_eq!(k("http://[::1]/"), "[::1]:80");
    }
}
