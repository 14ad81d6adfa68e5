//! Order statistics of a sample, and CPU/memory readings from /proc.

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// min, p10, p50, p90, p99, max (linear interpolation between closest ranks) and the mean.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = p.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

pub fn summarize(samples: &[f64]) -> Summary {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let mean = if s.is_empty() {
        f64::NAN
    } else {
        s.iter().sum::<f64>() / s.len() as f64
    };
    Summary {
        n: s.len(),
        min: s.first().copied().unwrap_or(f64::NAN),
        p10: percentile(&s, 0.10),
        p50: percentile(&s, 0.50),
        p90: percentile(&s, 0.90),
        p99: percentile(&s, 0.99),
        max: s.last().copied().unwrap_or(f64::NAN),
        mean,
    }
}

/// CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Clock ticks per second for /proc times (100 where the system does not say).
pub fn clk_tck() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// Fields of /proc/PID/stat after the command name (field 3 onwards, index 0 = state).
fn stat_fields(path: &str) -> Result<Vec<String>> {
    let s = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let Some(close) = s.rfind(')') else {
        bail!("unexpected format of {path}");
    };
    Ok(s[close + 1..]
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

fn field(f: &[String], stat_no: usize, path: &str) -> Result<f64> {
    // stat field numbers are 1-based; f[0] is field 3.
    f.get(stat_no - 3)
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no field {stat_no} in {path}"))
}

/// utime+stime of a process, in seconds.
pub fn proc_cpu_secs(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let f = stat_fields(&path)?;
    Ok((field(&f, 14, &path)? + field(&f, 15, &path)?) / clk_tck())
}

/// cutime+cstime of this process (CPU of children it has waited for), in seconds.
pub fn children_cpu_secs() -> Result<f64> {
    let path = "/proc/self/stat";
    let f = stat_fields(path)?;
    Ok((field(&f, 16, path)? + field(&f, 17, path)?) / clk_tck())
}

/// cutime+cstime of a process (CPU of the children it has waited for), in seconds.
pub fn proc_children_cpu_secs(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let f = stat_fields(&path)?;
    Ok((field(&f, 16, &path)? + field(&f, 17, &path)?) / clk_tck())
}

/// A `VmXXX:` line of /proc/PID/status, in bytes.
pub fn proc_status_bytes(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let kb: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("bad {key} line in {path}: {line:?}"))?;
            return Ok(kb * 1024);
        }
    }
    bail!("no {key} in {path}")
}

/// Busy and total ticks of the whole machine (first line of /proc/stat).
pub fn machine_ticks() -> Result<(f64, f64)> {
    let s = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let line = s.lines().next().context("empty /proc/stat")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        bail!("unexpected /proc/stat: {line:?}");
    }
    let total: f64 = v.iter().sum();
    // idle + iowait
    let idle = v[3] + v[4];
    Ok((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.p50, 3.0);
        assert_eq!(s.max, 5.0);
        assert!((s.p10 - 1.4).abs() < 1e-9);
        assert!((s.p90 - 4.6).abs() < 1e-9);
        let one = summarize(&[7.0]);
        assert_eq!(one.p10, 7.0);
        assert_eq!(one.p90, 7.0);
    }
}
