//! What a machine reports about itself: facts (at hello) and metrics (with heartbeats).

/// A machine's facts, as its agent reports them when it connects.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Facts {
    /// The OS's machine id (`/etc/machine-id`); empty when the machine has none.
    pub machine_id: String,
    /// The machine's host name.
    pub hostname: String,
    /// Distribution id, e.g. `debian`.
    pub os: String,
    /// Distribution name as people read it, e.g. `Debian GNU/Linux`.
    pub os_name: String,
    /// Distribution version, e.g. `12`.
    pub os_version: String,
    /// Kernel release, e.g. `6.1.0-18-amd64`.
    pub kernel: String,
    /// CPU architecture, e.g. `x86_64`.
    pub arch: String,
    /// Logical CPUs.
    pub cpus: u32,
    /// Physical memory.
    pub memory_bytes: u64,
    /// Mounted file systems.
    pub disks: Vec<Disk>,
    /// Addresses of the machine's interfaces, IPv4 first; without loopback and IPv6
    /// link-local ones.
    pub ips: Vec<String>,
    /// MAC addresses of the machine's interfaces.
    pub macs: Vec<String>,
}

/// One mounted file system of a machine.
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Disk {
    /// Mount point, e.g. `/`.
    pub mount: String,
    /// File system type, e.g. `ext4`.
    pub fs: String,
    /// Size of the file system.
    pub total_bytes: u64,
    /// Space available to unprivileged users.
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
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// CPU busy across all CPUs, 0 to 100.
    pub cpu_percent: f64,
    /// Memory in use.
    pub memory_used_bytes: u64,
    /// Physical memory.
    pub memory_total_bytes: u64,
    /// Used space of the root file system.
    pub disk_used_bytes: u64,
    /// Size of the root file system.
    pub disk_total_bytes: u64,
    /// Load average over 1 minute.
    pub load1: f64,
    /// Load average over 5 minutes.
    pub load5: f64,
    /// Load average over 15 minutes.
    pub load15: f64,
}
