//! The warning for a server URL that sends secrets in clear: plain `http://` to a host beyond
//! loopback (a server there serves TLS unless it was started with `--no-tls
//! --allow-plaintext-network`, i.e. behind a proxy this URL bypasses, or someone pointed the
//! CLI at the wrong scheme).

use std::net::IpAddr;
use std::sync::Once;

/// Whether `url` is plain HTTP to a host that is not this machine's loopback (127.0.0.0/8,
/// ::1, `localhost`, or the unspecified address, which reaches this machine).
pub fn beyond_loopback(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    if u.scheme() != "http" {
        return false;
    }
    let Some(host) = u.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        // 0.0.0.0 and :: reach this machine too.
        Ok(ip) => {
            let ip = ip.to_canonical();
            !ip.is_loopback() && !ip.is_unspecified()
        }
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name != "localhost" && !name.ends_with(".localhost")
        }
    }
}

/// Prints one line on stderr, once per process, when `url` is plain HTTP beyond loopback;
/// `secret` names what this process sends (an API key, an agent's credential).
pub fn warn(url: &str, secret: &str) {
    static WARNED: Once = Once::new();
    if beyond_loopback(url) {
        WARNED.call_once(|| {
            eprintln!(
                "herd: warning: {url} is plain HTTP to another machine: {secret} and all else sent cross the network unencrypted — use the server's https:// URL"
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::beyond_loopback;

    #[test]
    fn plain_http_beyond_loopback_is_told_apart() {
        for (url, beyond) in [
            ("http://127.0.0.1:7700", false),
            ("http://127.3.4.5:7700/", false),
            ("http://[::1]:7700", false),
            ("http://[::ffff:127.0.0.1]:7700", false),
            ("http://localhost:7700", false),
            ("http://LocalHost.:7700", false),
            ("http://herd.localhost:7700", false),
            ("http://192.0.2.2:7700", true),
            ("http://0.0.0.0:7700", false),
            ("http://[fd00::2]:7700", true),
            ("http://herd.example:7700", true),
            ("http://localhost.example:7700", true),
            ("https://192.0.2.2:7700", false),
            ("https://herd.example", false),
            ("not a url", false),
        ] {
            assert_eq!(beyond_loopback(url), beyond, "{url}");
        }
    }
}
