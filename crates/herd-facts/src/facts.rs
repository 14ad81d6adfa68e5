//! Static facts about the machine, collected once when the agent registers:
//! identity (machine id, hostname), OS release, kernel, architecture, CPU count,
//! memory, real filesystems, IP addresses and MAC addresses.

use std::net::IpAddr;

use herd_proto::v1::Facts;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, Networks, System};

use crate::disks::collect_disks;

/// Collects the facts of the local machine. Never fails: anything that cannot be
/// read is left empty (or zero).
pub fn collect_facts() -> Facts {
    let os = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_os_release(&t))
        .unwrap_or_default();
    let (cpus, memory_bytes) = cpus_and_memory();
    Facts {
        machine_id: machine_id(),
        hostname: hostname(),
        os_id: os.id,
        os_name: os.name,
        os_version: os.version_id,
        kernel: kernel(),
        arch: std::env::consts::ARCH.to_string(),
        cpus,
        memory_bytes,
        disks: collect_disks(),
        ips: ips(),
        macs: macs(),
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn machine_id() -> String {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|p| read_trimmed(p))
        .find(|id| id != "uninitialized")
        .unwrap_or_default()
}

fn hostname() -> String {
    System::host_name()
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| read_trimmed("/proc/sys/kernel/hostname"))
        .or_else(|| read_trimmed("/etc/hostname"))
        .unwrap_or_default()
}

/// The kernel release, as `uname -r` prints it.
fn kernel() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
        .or_else(|| System::kernel_version().ok())
        .unwrap_or_default()
}

fn cpus_and_memory() -> (u32, u64) {
    let (mut cpus, mut memory) = (0usize, 0u64);
    if let Ok(mut sys) = System::new() {
        sys.refresh_cpu_list(CpuRefreshKind::nothing());
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        cpus = sys.cpus().len();
        memory = sys.total_memory();
    }
    if cpus == 0 {
        cpus = std::thread::available_parallelism().map_or(0, usize::from);
    }
    (u32::try_from(cpus).unwrap_or(u32::MAX), memory)
}

/// The `ID`, `NAME` and `VERSION_ID` of an os-release file.
#[derive(Debug, Default, PartialEq, Eq)]
struct OsRelease {
    id: String,
    name: String,
    version_id: String,
}

/// Parses os-release(5) text: `KEY=value` lines, values optionally in single or
/// double quotes (with backslash escapes inside double quotes), `#` comments.
fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let field = match key.trim() {
            "ID" => &mut os.id,
            "NAME" => &mut os.name,
            "VERSION_ID" => &mut os.version_id,
            _ => continue,
        };
        *field = unquote(raw.trim());
    }
    os
}

fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return inner.to_string();
    }
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Non-loopback addresses of all interfaces, IPv4 first, sorted, deduplicated.
/// IPv6 link-local addresses (fe80::/10) are left out: they exist on every
/// interface and are unusable without a zone.
fn ips() -> Vec<String> {
    let Ok(nets) = Networks::new_with_refreshed_list() else {
        return Vec::new();
    };
    let mut addrs: Vec<IpAddr> = nets
        .values()
        .flat_map(|data| data.ip_networks().iter().map(|n| n.addr))
        .filter(|a| is_reportable_ip(*a))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs.iter().map(IpAddr::to_string).collect()
}

fn is_reportable_ip(a: IpAddr) -> bool {
    if a.is_loopback() || a.is_unspecified() {
        return false;
    }
    match a {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80,
    }
}

/// Non-zero MAC addresses of all interfaces, lowercase, sorted, deduplicated.
fn macs() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut macs: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
        .filter_map(|a| normalize_mac(&a))
        .collect();
    macs.sort();
    macs.dedup();
    macs
}

/// A MAC address (colon-separated hex octets) in lowercase, or `None` if it is
/// malformed or all zeros.
fn normalize_mac(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let octets: Vec<&str> = s.split(':').collect();
    let well_formed = octets.len() >= 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    let zero = octets.iter().all(|o| *o == "00");
    (well_formed && !zero).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_this_machine() {
        let f = collect_facts();
        assert!(!f.hostname.is_empty(), "{f:?}");
        assert!(!f.kernel.is_empty(), "{f:?}");
        assert!(!f.kernel.contains('\n'), "{f:?}");
        assert_eq!(f.arch, std::env::consts::ARCH);
        assert!(f.cpus > 0, "{f:?}");
        assert!(f.memory_bytes > 0, "{f:?}");
        assert!(!f.machine_id.contains('\n'), "{f:?}");
        for d in &f.disks {
            assert!(d.mount.starts_with('/'), "{d:?}");
            assert!(
                d.total_bytes > 0 && d.available_bytes <= d.total_bytes,
                "{d:?}"
            );
        }
        for ip in &f.ips {
            let a: IpAddr = ip.parse().unwrap();
            assert!(is_reportable_ip(a), "{ip}");
        }
        for m in &f.macs {
            assert_eq!(normalize_mac(m).as_deref(), Some(m.as_str()));
        }
    }

    #[test]
    fn os_release_table() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\
                      NAME=\"Debian GNU/Linux\"\n\
                      VERSION_ID=\"12\"\n\
                      ID=debian\n";
        let cases: &[(&str, (&str, &str, &str))] = &[
            (debian, ("debian", "Debian GNU/Linux", "12")),
            (
                "# comment\nID='alpine'\nNAME=\"Alpine \\\"Linux\\\"\"\nVERSION_ID=3.20.1\n",
                ("alpine", "Alpine \"Linux\"", "3.20.1"),
            ),
            ("ID=arch\nNAME=Arch Linux\n", ("arch", "Arch Linux", "")),
            ("", ("", "", "")),
            ("garbage\nID\n=x\n", ("", "", "")),
            ("ID=\"\"\n", ("", "", "")),
        ];
        for &(text, (id, name, version)) in cases {
            assert_eq!(
                parse_os_release(text),
                OsRelease {
                    id: id.into(),
                    name: name.into(),
                    version_id: version.into()
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn mac_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("52:54:00:12:34:56\n", Some("52:54:00:12:34:56")),
            ("AA:BB:CC:DD:EE:FF", Some("aa:bb:cc:dd:ee:ff")),
            ("00:00:00:00:00:00\n", None),
            ("00:00:00:00", None),
            ("", None),
            ("zz:zz:zz:zz:zz:zz", None),
            ("0:1:2:3:4:5", None),
            (
                "80:00:02:08:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:01",
                Some("80:00:02:08:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:01"),
            ),
        ];
        for &(input, want) in cases {
            assert_eq!(normalize_mac(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn ip_filter_table() {
        let cases = [
            ("10.0.0.5", true),
            ("192.168.1.1", true),
            ("169.254.1.1", true),
            ("127.0.0.1", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("::", false),
            ("fe80::1", false),
            ("febf::1", false),
            ("fec0::1", true),
            ("2001:db8::1", true),
            ("fd00::1", true),
        ];
        for (s, want) in cases {
            assert_eq!(is_reportable_ip(s.parse().unwrap()), want, "{s}");
        }
    }
}
