//! The opening handshake: `Sec-WebSocket-Accept` and the checks of an upgrade request.

use herd_ws::{UpgradeError, accept_for, accept_key};
use http::{HeaderMap, HeaderName, HeaderValue};

#[test]
fn accept_of_the_rfc_example() {
    assert_eq!(
        accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

type Headers = Vec<(&'static str, &'static str)>;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

#[test]
fn upgrade_request_headers() {
    const KEY: (&str, &str) = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    const V13: (&str, &str) = ("sec-websocket-version", "13");
    let ok = Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_string());
    let cases: Vec<(Headers, Result<String, UpgradeError>)> = vec![
        (
            vec![
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                V13,
                KEY,
            ],
            ok.clone(),
        ),
        // Tokens are case-insensitive and may sit in lists (browsers send `keep-alive, Upgrade`).
        (
            vec![
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket"),
                V13,
                KEY,
            ],
            ok.clone(),
        ),
        (
            vec![
                ("connection", "keep-alive"),
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                V13,
                KEY,
            ],
            ok,
        ),
        (vec![V13, KEY], Err(UpgradeError::NotWebSocket)),
        (
            vec![
                ("connection", "keep-alive"),
                ("upgrade", "websocket"),
                V13,
                KEY,
            ],
            Err(UpgradeError::NotWebSocket),
        ),
        (
            vec![("connection", "upgrade"), ("upgrade", "h2c"), V13, KEY],
            Err(UpgradeError::NotWebSocket),
        ),
        (
            vec![("connection", "upgrade"), ("upgrade", "websocket"), KEY],
            Err(UpgradeError::Version),
        ),
        (
            vec![
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "8"),
                KEY,
            ],
            Err(UpgradeError::Version),
        ),
        (
            vec![("connection", "upgrade"), ("upgrade", "websocket"), V13],
            Err(UpgradeError::MissingKey),
        ),
    ];
    for (pairs, want) in cases {
        assert_eq!(accept_key(&headers(&pairs)), want, "{pairs:?}");
    }
}
