//! An email through an SMTP server (lettre, on tokio, over rustls with the ring provider —
//! herd installs no process-wide default, so lettre takes ring — and the system's CA
//! certificates plus the configured extra ones).
//!
//! The SMTP server has its breaker and bucket like any host. A temporary refusal (4xx
//! reply), a connection error or a timeout is retried and counts against the breaker; a
//! permanent refusal (5xx reply: bad recipient, relaying denied) is a failed step, as an
//! unexpected 4xx is for HTTP, and is not retried.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use herd_core::actions::{Email, SmtpTls};
use herd_core::format_duration;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::http::{chain, extra_roots, jittered};
use crate::{ActionResult, Actions, NOTIFY_RETRY, Outcome};

/// The whole send's budget, retries included.
const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn send(actions: &Actions, e: &Email) -> ActionResult {
    let host = format!("{}:{}", e.smtp.host, e.smtp.port);
    let what = format!("email to {} through {host}", e.to.join(", "));
    let message = match message(e) {
        Ok(m) => m,
        Err(line) => return ActionResult::failed(format!("{what}: {line}")),
    };
    let transport = match transport(actions, e) {
        Ok(t) => t,
        Err(line) => return ActionResult::failed(format!("{what}: {line}")),
    };
    let rate = actions.config().default_rate;
    let retry = NOTIFY_RETRY;
    let deadline = Instant::now() + TIMEOUT;
    let mut result = ActionResult::default();
    let mut log = String::new();
    loop {
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
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Err(line) = actions.take_token(&host, rate, remaining).await {
            permit.release();
            return fail(result, log, line);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        result.attempts += 1;
        let sent = tokio::time::timeout(remaining, transport.send(message.clone())).await;
        let line = match sent {
            Ok(Ok(resp)) => {
                permit.report(Outcome::Healthy);
                let code = resp.code().to_string();
                let reply: Vec<&str> = resp.message().collect();
                let _ = writeln!(log, "{code} {}", reply.join(" "));
                result.status = code.parse().ok();
                result.outputs.insert("status".to_string(), code);
                result.output = log;
                result.ok = true;
                return result;
            }
            Ok(Err(err)) if err.is_permanent() => {
                permit.report(Outcome::Healthy);
                if let Some(code) = err.status() {
                    result.status = code.to_string().parse().ok();
                    result
                        .outputs
                        .insert("status".to_string(), code.to_string());
                }
                return fail(result, log, format!("refused: {}", chain(&err)));
            }
            Ok(Err(err)) => {
                permit.report(Outcome::Failed);
                chain(&err)
            }
            Err(_) => {
                permit.report(Outcome::Failed);
                format!("timed out after {}", format_duration(remaining))
            }
        };
        let n = result.attempts;
        if n > retry.count {
            let line = if n > 1 {
                format!("{line} after {n} attempts")
            } else {
                line
            };
            return fail(result, log, line);
        }
        let wait = jittered(&retry, n);
        if wait >= deadline.saturating_duration_since(Instant::now()) {
            return fail(result, log, format!("{line} — no time left to retry"));
        }
        let _ = writeln!(
            log,
            "attempt {n}: {line} — retrying in {}",
            format_duration(wait)
        );
        tokio::time::sleep(wait).await;
    }
}

fn message(e: &Email) -> Result<Message, String> {
    let mailbox = |a: &str| -> Result<Mailbox, String> {
        a.parse::<Mailbox>()
            .map_err(|err| format!("{a:?} is not an email address: {err}"))
    };
    let mut b = Message::builder()
        .from(mailbox(&e.from)?)
        .subject(e.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    for to in &e.to {
        b = b.to(mailbox(to)?);
    }
    b.body(e.text.clone())
        .map_err(|err| format!("cannot build the message: {err}"))
}

fn transport(actions: &Actions, e: &Email) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let smtp = &e.smtp;
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
        .port(smtp.port)
        .timeout(Some(TIMEOUT));
    let tls = smtp.effective_tls();
    if tls != SmtpTls::None {
        let mut params = TlsParameters::builder(smtp.host.clone());
        for der in extra_roots(actions.config())? {
            let cert = Certificate::from_der(der.to_vec())
                .map_err(|err| format!("the extra CA certificate: {err}"))?;
            params = params.add_root_certificate(cert);
        }
        let params = params
            .build_rustls()
            .map_err(|err| format!("cannot set up TLS: {}", chain(&err)))?;
        b = b.tls(if tls == SmtpTls::Tls {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    }
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        b = b.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(b.build())
}
