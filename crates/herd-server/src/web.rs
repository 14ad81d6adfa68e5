//! The web dashboard: the built assets of `web/` (its `dist/`, embedded in a release binary;
//! a debug build reads them from the source tree), or those of `--web-dir`, served at every
//! GET path outside `/api/`, `/healthz` and `/metrics`. A path that names no file is one of the
//! dashboard's own views and gets `index.html`, so every view has a URL. Serving is
//! synchronous (file reads, gzip): the HTTP fallback calls it on the blocking pool.
//!
//! Invariant: every answer carries the dashboard's Content-Security-Policy (scripts and
//! connections from this origin only, no plugins, no framing, no inline script), so output,
//! names and model text that reach a page can never run as script; no answer sets a cookie
//! (the dashboard sends the API key as a bearer header, which makes CSRF impossible).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The dashboard's built assets (`web/dist`, rebuilt from `web/src` by `npm run build`).
#[derive(rust_embed::RustEmbed)]
#[folder = "../../web/dist"]
struct Embedded;

/// `style-src 'unsafe-inline'`: the terminal emulator (xterm.js) sizes and colours its rows
/// with style elements it writes itself; scripts stay strictly same-origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// Where the assets come from.
pub struct Web {
    dir: Option<PathBuf>,
    /// gzip of embedded assets, made on first request.
    gz: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl Web {
    /// The embedded assets, or those in `dir`.
    pub fn new(dir: Option<PathBuf>) -> Web {
        Web {
            dir,
            gz: Mutex::new(HashMap::new()),
        }
    }

    fn read(&self, path: &str) -> Option<Arc<Vec<u8>>> {
        match &self.dir {
            Some(dir) => std::fs::read(dir.join(path)).ok().map(Arc::new),
            None => Embedded::get(path).map(|f| Arc::new(f.data.into_owned())),
        }
    }

    fn gzipped(&self, path: &str, data: &[u8]) -> Option<Arc<Vec<u8>>> {
        let cache = self.dir.is_none();
        if let Some(hit) = self
            .gz
            .lock()
            .ok()
            .filter(|_| cache)
            .and_then(|gz| gz.get(path).cloned())
        {
            return Some(hit);
        }
        let out = Arc::new(crate::http::gzip(data, flate2::Compression::best())?);
        if let Some(mut gz) = self.gz.lock().ok().filter(|_| cache) {
            gz.insert(path.to_string(), out.clone());
        }
        Some(out)
    }

    /// The answer to `method path` (a path outside the API).
    pub fn serve(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response {
        if method != Method::GET && method != Method::HEAD {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "the dashboard answers GET only; the API is under /api/v1",
            );
        }
        let Some(rel) = clean(path) else {
            return plain(StatusCode::NOT_FOUND, "no such file");
        };
        let (name, data) = match self.read(&rel) {
            Some(d) if !rel.is_empty() => (rel, d),
            // Assets are named by their content: a missing one is a 404, not a page.
            _ if rel.starts_with("assets/") => {
                return plain(StatusCode::NOT_FOUND, "no such asset");
            }
            _ => match self.read("index.html") {
                Some(d) => ("index.html".to_string(), d),
                None => {
                    return plain(
                        StatusCode::NOT_FOUND,
                        "this herd was built without the dashboard — build web/ (npm run build in web/) and rebuild herd",
                    );
                }
            },
        };
        let ctype = content_type(&name);
        let immutable = name.starts_with("assets/");
        let wants_gzip = crate::http::accepts_gzip(headers);
        let compressible = ctype.starts_with("text/")
            || ctype.starts_with("application/javascript")
            || ctype.starts_with("application/json")
            || ctype.starts_with("image/svg");
        let (body, gzip) = if wants_gzip && compressible && data.len() > 512 {
            match self.gzipped(&name, &data) {
                Some(gz) => (gz, true),
                None => (data, false),
            }
        } else {
            (data, false)
        };
        let mut res = Response::new(if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(body.as_ref().clone())
        });
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        if gzip {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if immutable {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            }),
        );
        secure(h);
        res
    }
}

/// The dashboard's security headers.
pub fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn plain(status: StatusCode, msg: &'static str) -> Response {
    let mut res = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response();
    secure(res.headers_mut());
    res
}

/// The file a URL path names, relative to the assets' root; None for a path that climbs out
/// of it or names a hidden file.
fn clean(path: &str) -> Option<String> {
    let p = Path::new(path.trim_start_matches('/'));
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => {
                let s = s.to_str()?;
                if s.starts_with('.') {
                    return None;
                }
                parts.push(s);
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "application/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        assert_eq!(clean("/").as_deref(), Some(""));
        assert_eq!(clean("/assets/a.js").as_deref(), Some("assets/a.js"));
        assert_eq!(clean("/runs/r_1").as_deref(), Some("runs/r_1"));
        assert_eq!(clean("/../etc/passwd"), None);
        assert_eq!(clean("/assets/../../x"), None);
        assert_eq!(clean("/.git/config"), None);
    }

    #[test]
    fn views_get_the_page_and_missing_assets_a_404() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("index.html"), "<!doctype html>page").unwrap();
        std::fs::write(dir.path().join("assets/app-1.js"), "x".repeat(2000)).unwrap();
        let web = Web::new(Some(dir.path().to_path_buf()));
        let none = HeaderMap::new();
        let r = web.serve(&Method::GET, "/fleet/web-1", &none);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let r = web.serve(&Method::GET, "/assets/gone-2.js", &none);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let mut gz = HeaderMap::new();
        gz.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, br"),
        );
        let r = web.serve(&Method::GET, "/assets/app-1.js", &gz);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert!(
            r.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let r = web.serve(&Method::POST, "/", &none);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
