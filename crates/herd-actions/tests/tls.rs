//! herd-actions over TLS, against servers with a certificate of a CA made here (herd-tls's
//! generated CA): HTTPS (h2 negotiated) and SMTP with STARTTLS (aiosmtpd). Trusted through
//! `ActionsConfig::extra_ca_pem`; without it the handshake is refused.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use herd_actions::{Actions, ActionsConfig};
use herd_core::actions::{Email, HttpCall, Notify, Smtp, SmtpTls};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

fn actions(ca: Option<String>) -> Actions {
    Actions::new(ActionsConfig {
        extra_ca_pem: ca,
        breaker_cooldown: Duration::from_secs(30),
        ..ActionsConfig::default()
    })
}

/// An HTTPS server on 127.0.0.1 with herd-tls's generated material (ALPN h2, http/1.1).
async fn https(config: Arc<rustls::ServerConfig>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let app = Router::new().route("/v1", get(|| async { r#"{"secure": true}"# }));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    format!("https://127.0.0.1:{}", addr.port())
}

#[tokio::test]
async fn https_with_an_extra_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = herd_tls::server_tls_generated(dir.path(), &[]).unwrap();
    let base = https(tls.config.clone()).await;
    let mut call = HttpCall::get(format!("{base}/v1"));
    call.extract = [("secure".to_string(), "$.secure".to_string())].into();

    let r = actions(tls.ca_pem.clone()).http(&call).await;
    assert!(r.ok, "{r:?}");
    assert!(r.output.starts_with("HTTP/2.0 200 OK\n"), "{}", r.output);
    assert_eq!(r.outputs["secure"], "true");

    // Not trusted: refused in the handshake, with the reason on one line.
    let r = actions(None).http(&call).await;
    assert!(!r.ok);
    let err = r.error.unwrap();
    assert!(err.contains("certificate"), "{err}");
    assert!(!err.contains('\n'));
}

#[tokio::test]
async fn email_over_starttls_with_an_extra_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = herd_tls::server_tls_generated(dir.path(), &[]).unwrap();
    let smtp = herd_testkit::SmtpServer::start_tls(
        dir.path(),
        &dir.path().join("server.pem"),
        &dir.path().join("server.key"),
    )
    .unwrap();
    let email = |tls: Option<SmtpTls>| {
        Notify::Email(Email {
            to: vec!["ops@example.com".to_string()],
            subject: "over TLS".to_string(),
            text: "sealed in transit".to_string(),
            from: "herd@example.com".to_string(),
            smtp: Smtp {
                host: "127.0.0.1".to_string(),
                port: smtp.addr.port(),
                tls,
                username: None,
                password: None,
            },
        })
    };
    let r = actions(tls.ca_pem.clone())
        .notify(&email(Some(SmtpTls::Starttls)))
        .await;
    assert!(r.ok, "{r:?}");
    let got = smtp.messages();
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("Subject: over TLS"), "{}", got[0]);

    // Without the CA, STARTTLS fails and nothing is sent.
    let r = actions(None).notify(&email(Some(SmtpTls::Starttls))).await;
    assert!(!r.ok, "{r:?}");
    assert_eq!(smtp.messages().len(), 1);
}
