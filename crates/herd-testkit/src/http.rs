//! A minimal HTTP/1.1 client over a plain TCP socket, to check what a plain-http server answers
//! (status and body) and to drive one (a JSON body, headers) without an HTTP client library.

use std::io::{Read, Write};

use crate::error::{Error, Result, io};

/// GET `base` + `path` (`base` is `http://host:port`), with a bearer `key` if given: the
/// status and the body (de-chunked).
pub fn http_get(base: &str, path: &str, key: Option<&str>) -> Result<(u16, Vec<u8>)> {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    http_request(base, "GET", path, &headers, None)
}

/// One HTTP/1.1 request to `base` + `path` (`base` is `http://host:port`, a path after it is
/// ignored) with these headers and a JSON body if given, on a connection of its own that the
/// server closes: the status and the body (de-chunked). Waits at most 120 s for the answer.
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    json: Option<&[u8]>,
) -> Result<(u16, Vec<u8>)> {
    let rest = base.trim_start_matches("http://");
    let hostport = rest.split('/').next().unwrap_or(rest);
    let mut s = std::net::TcpStream::connect(hostport)
        .map_err(io(format!("cannot connect to {hostport}")))?;
    let what = format!("{method} {path}");
    s.set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .map_err(io(format!("{what}: cannot set a read timeout")))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = json {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(json.unwrap_or_default()))
        .map_err(io(format!("{what}: cannot send")))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(io(format!("{what}: cannot read the answer")))?;
    let bad = |why: &str| Error::Unexpected(format!("{what}: {why} in the answer"));
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?
        + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut body = buf[head_end..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body).ok_or_else(|| bad("a malformed chunk"))?;
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).ok()?;
        if size == 0 {
            break;
        }
        let data = b.get(nl + 2..nl + 2 + size)?;
        out.extend_from_slice(data);
        b = b.get(nl + 2 + size + 2..)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_are_joined_and_bad_ones_refused() {
        assert_eq!(
            super::dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(super::dechunk(b"9\r\nabc\r\n"), None);
        assert_eq!(super::dechunk(b"zz\r\nabc\r\n"), None);
    }
}
