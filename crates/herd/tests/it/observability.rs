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
