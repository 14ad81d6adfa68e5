//! Observability: `/metrics` is answered from memory, so a flood of scrapes does not stand in
//! a run's way, and the figures reflect what the server did.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::harness::*;

/// The value of the sample named exactly `name` (with its labels) in a scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn scrape(s: &Server) -> String {
    let (status, body) = http_get(&s.url, "/metrics", None).unwrap();
    let text = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 200, "{text}");
    text
}

#[test]
fn metrics_under_a_flood_of_scrapes_while_a_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(HERD, dir.path()).unwrap();
    let _a = s.agent("m", &[]).unwrap();
    s.wait_online(&["m"]).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let scrapers: Vec<_> = (0..32)
        .map(|_| {
            let (stop, served, url) = (stop.clone(), served.clone(), s.url.clone());
            std::thread::spawn(move || -> Result<(), String> {
                while !stop.load(Ordering::Relaxed) {
                    match http_get(&url, "/metrics", None) {
                        Ok((200, body)) if body.starts_with(b"# HELP") => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((status, body)) => {
                            return Err(format!(
                                "scrape answered {status}: {}",
                                String::from_utf8_lossy(&body)
                            ));
                        }
                        Err(e) => return Err(format!("scrape failed: {e}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    // The flood is on before the run starts.
    wait_for(Duration::from_secs(60), "64 scrapes served", || {
        (served.load(Ordering::Relaxed) >= 64).then_some(())
    });

    let out = s.run(&["run", "-t", "m", "--", "true"]);
    let still_flooding = !scrapers.iter().any(|t| t.is_finished());
    stop.store(true, Ordering::Relaxed);
    for t in scrapers {
        t.join().unwrap().unwrap();
    }
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(still_flooding, "a scraper gave up during the run");

    // The task's end is counted as it happens; the count by state catches up within its
    // interval.
    let text = scrape(&s);
    assert_eq!(
        sample(&text, "herd_tasks_ended_total{state=\"succeeded\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "herd_tasks_ended_total{state=\"failed\"}"),
        Some(0.0),
        "{text}"
    );
    wait_for(
        Duration::from_secs(60),
        "the succeeded task counted",
        || {
            let text = scrape(&s);
            (sample(&text, "herd_tasks{state=\"succeeded\"}") == Some(1.0)).then_some(())
        },
    );
}

#[test]
fn metrics_auth_needs_an_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(HERD, dir.path(), "127.0.0.1:0", &["--metrics-auth"]).unwrap();
    let other = s.json(&["keys", "create", "--name", "prometheus", "--json"]);
    let other = other["key"].as_str().unwrap().to_string();

    for key in [None, Some("hk_nope_nope")] {
        let (status, body) = http_get(&s.url, "/metrics", key).unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 401, "{body}");
        assert!(!body.contains("herd_"), "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        let msg = v["error"].as_str().expect("error string");
        assert!(!msg.is_empty() && !msg.contains('\n'), "{msg}");
    }
    // A key in the URL is refused here too.
    let (status, _) = http_get(&s.url, &format!("/metrics?api_key={other}"), None).unwrap();
    assert_eq!(status, 401);
    for key in [s.key.as_str(), other.as_str()] {
        let (status, body) = http_get(&s.url, "/metrics", Some(key)).unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("herd_agents_connected "), "{body}");
    }
    // A revoked key no longer scrapes.
    let out = s.run(&["keys", "revoke", "prometheus"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, _) = http_get(&s.url, "/metrics", Some(&other)).unwrap();
    assert_eq!(status, 401);

    // This server's document says so.
    let (_, body) = http_get(&s.url, "/api/v1/openapi.json", None).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        doc["paths"]["/metrics"]["get"]["security"],
        serde_json::json!([{"bearer": []}]),
        "{doc:#}"
    );

    // Without the flag, /metrics stays open.
    let dir = tempfile::tempdir().unwrap();
    let open = Server::start(HERD, dir.path()).unwrap();
    let (status, _) = http_get(&open.url, "/metrics", None).unwrap();
    assert_eq!(status, 200);
}

#[test]
fn no_tls_beyond_loopback_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let out = herd()
        .args(["server", "--no-tls", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("refused"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("herd: --no-tls on 0.0.0.0:0 sends API keys")
            && lines[0].contains("listen on 127.0.0.1")
            && lines[0].contains("--allow-plaintext-network"),
        "{err}"
    );
    // Nothing was set up for a server that did not start.
    assert!(!dir.path().join("refused").exists());

    // On loopback, --no-tls needs nothing more; forced, it serves plain HTTP beyond.
    let lo = tempfile::tempdir().unwrap();
    let s = Server::start_with(HERD, lo.path(), "127.0.0.1:0", &["--no-tls"]).unwrap();
    assert!(s.url.starts_with("http://127.0.0.1:"), "{}", s.url);
    let s = Server::start_with(
        HERD,
        dir.path(),
        "0.0.0.0:0",
        &["--no-tls", "--allow-plaintext-network"],
    )
    .unwrap();
    assert!(s.url.starts_with("http://"), "{}", s.url);
    let (status, _) = http_get(&s.url, "/healthz", None).unwrap();
    assert_eq!(status, 200);
    assert!(s.log().contains("--allow-plaintext-network"), "{}", s.log());
}

/// An IPv4 address of this machine beyond loopback, if it has one.
fn network_address() -> Option<String> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
        .map(|a| a.to_string())
}

const PLAINTEXT_WARNING: &str = "is plain HTTP to another machine";

/// How many of `text`'s lines are the plain-HTTP warning (each one line, naming `url`).
fn warnings(text: &str, url: &str) -> usize {
    text.lines()
        .filter(|l| l.contains(PLAINTEXT_WARNING))
        .inspect(|l| {
            assert!(
                l.starts_with(&format!("herd: warning: {url} is plain HTTP")),
                "{l}"
            )
        })
        .count()
}

#[test]
fn the_cli_and_the_agent_warn_once_about_plain_http_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(
        HERD,
        dir.path(),
        "0.0.0.0:0",
        &["--no-tls", "--allow-plaintext-network"],
    )
    .unwrap();
    let loopback_url = s.url.clone();
    let port = loopback_url.rsplit(':').next().unwrap().to_string();

    // On loopback: no warning.
    let out = s.run(&["agents"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        warnings(&stderr(&out), &loopback_url),
        0,
        "{}",
        stderr(&out)
    );

    let Some(ip) = network_address() else {
        // No address beyond loopback here: the warning still comes first, before the
        // unreachable address fails the call.
        s.url = format!("http://203.0.113.1:{port}");
        let out = s
            .cli()
            .env("HERD_TIMEOUT", "1s")
            .arg("agents")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
        assert_eq!(warnings(&stderr(&out), &s.url), 1, "{}", stderr(&out));
        return;
    };
    s.url = format!("http://{ip}:{port}");
    let url = s.url.clone();

    // The agent joins over the network address and warns in its log, once.
    let a = s.agent("m", &[]).unwrap();
    s.wait_online(&["m"]).unwrap();
    assert_eq!(warnings(&a.log(), &url), 1, "{}", a.log());

    // Every CLI process warns once, however many calls it makes, and works.
    let out = s.run(&["agents"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(warnings(&stderr(&out), &url), 1, "{}", stderr(&out));
    let out = s.run(&["run", "-t", "m", "--", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n");
    assert_eq!(warnings(&stderr(&out), &url), 1, "{}", stderr(&out));
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let out = s.run(&["cp", file.to_str().unwrap(), "-t", "m:/tmp/"]);
    assert_eq!(warnings(&stderr(&out), &url), 1, "{}", stderr(&out));
}
