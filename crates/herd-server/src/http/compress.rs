//! gzip for large JSON answers (a fleet's machine list is ~750 bytes a machine: 7.5 MB for
//! 10,000, about a tenth of that compressed) when the client accepts it. Only whole JSON
//! bodies of known size are compressed, on the blocking pool; streams (WebSocket upgrades,
//! output, events) pass as they are.

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

/// Bodies smaller than this go as they are: compressing them saves little.
const MIN: u64 = 64 << 10;
/// Bodies larger than this go as they are (never expected of a JSON answer).
const MAX: u64 = 256 << 20;

/// Whether a request's `Accept-Encoding` takes gzip.
pub(crate) fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")))
}

/// `data` gzipped at `level` (blocking: call it off the async workers).
pub(crate) fn gzip(data: &[u8], level: flate2::Compression) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 8), level);
    enc.write_all(data).ok()?;
    enc.finish().ok()
}

pub async fn gzip_json(req: Request, next: Next) -> Response {
    let accepts = accepts_gzip(req.headers());
    let res = next.run(req).await;
    if !accepts || res.headers().contains_key(header::CONTENT_ENCODING) {
        return res;
    }
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let size = res.body().size_hint().exact();
    if !json || !size.is_some_and(|n| (MIN..=MAX).contains(&n)) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, Body::empty());
    };
    let bytes = collected.to_bytes();
    let plain = bytes.clone();
    let gz = tokio::task::spawn_blocking(move || gzip(&plain, flate2::Compression::fast()))
        .await
        .ok()
        .flatten();
    match gz {
        Some(gz) => {
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
            Response::from_parts(parts, Body::from(gz))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route(
                "/big",
                get(|| async { axum::Json(vec!["machine-00001"; 20_000]) }),
            )
            .route("/small", get(|| async { axum::Json(vec![1, 2, 3]) }))
            .route("/text", get(|| async { "x".repeat(200_000) }))
            .layer(axum::middleware::from_fn(gzip_json))
    }

    async fn call(path: &str, gzip: bool) -> (Option<String>, Vec<u8>) {
        let mut req = Request::builder().uri(path);
        if gzip {
            req = req.header(header::ACCEPT_ENCODING, "br, gzip");
        }
        let res = app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let enc = res
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap().to_string());
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        (enc, body)
    }

    #[tokio::test]
    async fn large_json_is_gzipped_for_clients_that_accept_it() {
        let (enc, plain) = call("/big", false).await;
        assert_eq!(enc, None);
        let (enc, gz) = call("/big", true).await;
        assert_eq!(enc.as_deref(), Some("gzip"));
        assert!(
            gz.len() * 10 < plain.len(),
            "{} vs {}",
            gz.len(),
            plain.len()
        );
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, plain);
        // Small JSON and anything not JSON pass as they are.
        assert_eq!(call("/small", true).await.0, None);
        assert_eq!(call("/text", true).await.0, None);
    }
}
