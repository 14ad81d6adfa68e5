//! Live metrics for heartbeats: whole-machine CPU usage, memory, usage of the
//! root filesystem (or another one, `with_disk`) and load averages. Built to be sampled every few seconds by an
//! idle agent: only CPU times and RAM are refreshed through sysinfo; the load
//! average and `/` usage are read directly.

use std::path::PathBuf;

use herd_proto::v1::Metrics;
use sysinfo::{MemoryRefreshKind, System};

use crate::disks::fs_usage;

/// Keeps the state needed between samples: CPU usage is the difference of two
/// readings of the CPU time counters.
pub struct MetricsSampler {
    /// `None` if sysinfo could not initialise; CPU and memory then read as 0.
    sys: Option<System>,
    /// A directory on the filesystem whose usage is reported (`/` by default).
    disk: PathBuf,
}

impl Default for MetricsSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MetricsSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSampler")
            .field("available", &self.sys.is_some())
            .finish()
    }
}

impl MetricsSampler {
    /// Takes the first CPU reading; the first [`sample`](Self::sample) reports
    /// usage since this call.
    pub fn new() -> Self {
        let mut sys = System::new().ok();
        if let Some(s) = sys.as_mut() {
            s.refresh_cpu_usage();
        }
        MetricsSampler {
            sys,
            disk: PathBuf::from("/"),
        }
    }

    /// Reports the usage of the filesystem `dir` is on instead of `/`.
    pub fn with_disk(mut self, dir: impl Into<PathBuf>) -> Self {
        self.disk = dir.into();
        self
    }

    /// Current metrics. CPU usage covers the time since the previous call (or
    /// since [`new`](Self::new)) and is within `0..=100`.
    pub fn sample(&mut self) -> Metrics {
        let mut m = Metrics::default();
        if let Some(s) = self.sys.as_mut() {
            s.refresh_cpu_usage();
            s.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
            m.cpu_percent = clamp_percent(f64::from(s.global_cpu_usage()));
            m.memory_total_bytes = s.total_memory();
            m.memory_used_bytes = s.used_memory().min(m.memory_total_bytes);
        }
        if let Some(u) = fs_usage(&self.disk) {
            m.disk_total_bytes = u.total;
            m.disk_used_bytes = u.used;
        }
        if let Some((l1, l5, l15)) = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .as_deref()
            .and_then(parse_loadavg)
        {
            m.load1 = l1;
            m.load5 = l5;
            m.load15 = l15;
        }
        m
    }
}

fn clamp_percent(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// The 1, 5 and 15 minute load averages from `/proc/loadavg` text.
pub(crate) fn parse_loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    let l1 = it.next()?.ok()?;
    let l5 = it.next()?.ok()?;
    let l15 = it.next()?.ok()?;
    [l1, l5, l15]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
        .then_some((l1, l5, l15))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Load = Option<(f64, f64, f64)>;

    #[test]
    fn loadavg_table() {
        let cases: &[(&str, Load)] = &[
            ("0.52 0.58 0.59 1/467 12345\n", Some((0.52, 0.58, 0.59))),
            ("12.00 3.5 0", Some((12.0, 3.5, 0.0))),
            ("", None),
            ("0.1 0.2", None),
            ("a b c", None),
            ("-1 0 0", None),
            ("NaN 0 0", None),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_loadavg(text), want, "{text:?}");
        }
    }

    #[test]
    fn clamp_table() {
        for (v, want) in [
            (-1.0, 0.0),
            (0.0, 0.0),
            (42.5, 42.5),
            (100.0, 100.0),
            (100.7, 100.0),
            (f64::NAN, 0.0),
            (f64::INFINITY, 0.0),
        ] {
            assert_eq!(clamp_percent(v), want, "{v}");
        }
    }

    #[test]
    fn two_samples_are_sane() {
        let mut s = MetricsSampler::new();
        let first = s.sample();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let second = s.sample();
        for m in [&first, &second] {
            assert!(m.memory_total_bytes > 0, "{m:?}");
            assert!(m.memory_used_bytes <= m.memory_total_bytes, "{m:?}");
            assert!((0.0..=100.0).contains(&m.cpu_percent), "{m:?}");
            assert!(m.disk_total_bytes > 0, "{m:?}");
            assert!(m.disk_used_bytes <= m.disk_total_bytes, "{m:?}");
            assert!(m.load1 >= 0.0 && m.load5 >= 0.0 && m.load15 >= 0.0, "{m:?}");
        }
    }
}
