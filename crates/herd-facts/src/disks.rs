//! Filesystems of the machine: which mounts count as real disks (parsed from
//! `/proc/self/mountinfo`) and their size via `statvfs(3)`.

use std::path::Path;

use herd_proto::v1::Disk;

/// Filesystem types that never hold user data (kernel interfaces, memory-backed
/// or image filesystems, helper FUSE mounts).
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fuse.snapfuse",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nfsd",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Union filesystems that only count when they are the root (containers).
const UNION_FS: &[&str] = &["overlay", "aufs"];

/// One line of `/proc/self/mountinfo`, reduced to what is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// `major:minor` of the device; identical for bind mounts and subvolumes.
    pub dev: String,
    pub mount_point: String,
    pub fs_type: String,
}

/// Parses mountinfo text; malformed lines are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let dev = fields.nth(2)?;
            let mount_point = fields.nth(1)?;
            // Skip mount options and optional fields up to the "-" separator.
            let fs_type = fields.skip_while(|f| *f != "-").nth(1)?;
            Some(Mount {
                dev: dev.to_string(),
                mount_point: unescape_octal(mount_point),
                fs_type: fs_type.to_string(),
            })
        })
        .collect()
}

/// Undoes the kernel's `\ooo` escaping of space, tab, newline and backslash.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a mount is a real filesystem worth reporting.
pub(crate) fn is_real(m: &Mount) -> bool {
    if UNION_FS.contains(&m.fs_type.as_str()) {
        return m.mount_point == "/";
    }
    !PSEUDO_FS.contains(&m.fs_type.as_str())
}

/// Real filesystems, each device once (at its shortest mount point, so `/` wins
/// over bind mounts and btrfs subvolumes of the same device), sorted by mount point.
pub(crate) fn select_mounts(mounts: Vec<Mount>) -> Vec<Mount> {
    let mut best: Vec<Mount> = Vec::new();
    for m in mounts.into_iter().filter(is_real) {
        match best.iter_mut().find(|b| b.dev == m.dev) {
            Some(b) if m.mount_point.len() < b.mount_point.len() => *b = m,
            Some(_) => {}
            None => best.push(m),
        }
    }
    best.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    best
}

/// Size of the filesystem holding `path`, from `statvfs(3)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FsUsage {
    pub total: u64,
    pub available: u64,
    pub used: u64,
}

/// `statvfs(3)` of `path`, or `None` if it cannot be queried.
pub(crate) fn fs_usage(path: &Path) -> Option<FsUsage> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    // The field widths differ between targets; widen everything to u64.
    #[allow(clippy::unnecessary_cast)]
    let (frsize, blocks, bfree, bavail) = (
        st.fragment_size() as u64,
        st.blocks() as u64,
        st.blocks_free() as u64,
        st.blocks_available() as u64,
    );
    Some(FsUsage {
        total: blocks.saturating_mul(frsize),
        available: bavail.saturating_mul(frsize),
        used: blocks.saturating_sub(bfree).saturating_mul(frsize),
    })
}

/// The machine's real filesystems with their sizes.
pub(crate) fn collect_disks() -> Vec<Disk> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    select_mounts(parse_mountinfo(&text))
        .into_iter()
        .filter(|m| Path::new(&m.mount_point).is_dir())
        .filter_map(|m| {
            let usage = fs_usage(Path::new(&m.mount_point))?;
            (usage.total > 0).then_some(Disk {
                mount: m.mount_point,
                fs: m.fs_type,
                total_bytes: usage.total,
                available_bytes: usage.available,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 27 259:2 / /boot/efi rw shared:5 master:2 - vfat /dev/nvme0n1p1 rw
51 27 0:45 /@home /home rw - btrfs /dev/nvme0n1p3 rw
52 27 0:45 /@data /srv/my\\040data rw - btrfs /dev/nvme0n1p3 rw
53 27 254:0 /var/lib/x /mnt/bind rw - ext4 /dev/vda rw
54 27 7:3 / /snap/core/1 ro - squashfs /dev/loop3 ro
55 27 0:50 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
56 27 0:51 / /mnt/nfs rw - nfs4 server:/export rw
garbage line
";

    #[test]
    fn parses_mountinfo() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 14);
        assert_eq!(
            mounts[4],
            Mount {
                dev: "254:0".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into()
            }
        );
        assert_eq!(mounts[7].fs_type, "vfat");
        assert_eq!(mounts[9].mount_point, "/srv/my data");
    }

    #[test]
    fn selects_real_filesystems_once_per_device() {
        let got: Vec<(String, String)> = select_mounts(parse_mountinfo(SAMPLE))
            .into_iter()
            .map(|m| (m.mount_point, m.fs_type))
            .collect();
        let want = [
            ("/", "ext4"),
            ("/boot/efi", "vfat"),
            ("/home", "btrfs"),
            ("/mnt/nfs", "nfs4"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn overlay_counts_only_as_root() {
        let text = "1 0 0:40 / / rw - overlay overlay rw\n\
                    2 1 0:41 / /x rw - overlay overlay rw\n";
        let got = select_mounts(parse_mountinfo(text));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].mount_point, "/");
    }

    #[test]
    fn unescapes_octal() {
        let cases = [
            ("/plain", "/plain"),
            ("/a\\040b", "/a b"),
            ("/tab\\011x", "/tab\tx"),
            ("/back\\134slash", "/back\\slash"),
            ("/short\\04", "/short\\04"),
            ("/notoct\\089", "/notoct\\089"),
            ("\\", "\\"),
        ];
        for (input, want) in cases {
            assert_eq!(unescape_octal(input), want, "{input:?}");
        }
    }

    #[test]
    fn root_usage_is_sane() {
        let u = fs_usage(Path::new("/")).unwrap();
        assert!(u.total > 0);
        assert!(u.available <= u.total);
        assert!(u.used <= u.total);
        assert!(fs_usage(Path::new("/definitely/not/here")).is_none());
    }
}
