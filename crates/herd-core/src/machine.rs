//! What a machine reports about itself: facts (at hello) and metrics (with heartbeats).

/// A machine's facts, as its agent reports them when it connects.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Facts {
    pub machine_id: String,
    pub hostname: String,
    /// Distribution id, e.g. `debian`.
    pub os: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel: String,
    pub arch: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disks: Vec<Disk>,
    pub ips: Vec<String>,
    pub macs: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Disk {
    pub mount: String,
    pub fs: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl Facts {
    /// The facts selectors can match (`os=debian`, `cpus=4`): every scalar fact, by name.
    pub fn attrs(&self) -> [(&'static str, String); 9] {
        [
            ("machine_id", self.machine_id.clone()),
            ("hostname", self.hostname.clone()),
            ("os", self.os.clone()),
            ("os_name", self.os_name.clone()),
            ("os_version", self.os_version.clone()),
            ("kernel", self.kernel.clone()),
            ("arch", self.arch.clone()),
            ("cpus", self.cpus.to_string()),
            ("memory_bytes", self.memory_bytes.to_string()),
        ]
    }
}

/// A machine's latest load, sent with its heartbeats.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Metrics {
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
}
