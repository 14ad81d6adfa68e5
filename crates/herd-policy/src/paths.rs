//! What a path names, for the rules: a block device, a critical file, a system directory.

/// `/foo//bar/` → `/foo/bar`; `/`, `//`, `/.` → `/`. Relative paths are returned unchanged
/// but for trailing slashes.
pub fn normalize(path: &str) -> String {
    if !path.starts_with('/') {
        let t = path.trim_end_matches('/');
        return if t.is_empty() {
            path.to_string()
        } else {
            t.to_string()
        };
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Disks, partitions and raw memory: writing to them destroys data (or the running system).
pub fn is_block_device(path: &str) -> bool {
    let p = normalize(path);
    let Some(dev) = p.strip_prefix("/dev/") else {
        return false;
    };
    const EXACT: &[&str] = &["mem", "kmem", "port"];
    const PREFIXES: &[&str] = &[
        "sd", "hd", "vd", "xvd", "nvme", "mmcblk", "dm-", "md", "mapper/", "disk/", "loop", "nbd",
        "rbd", "zd", "sr",
    ];
    EXACT.contains(&dev)
        || PREFIXES
            .iter()
            .any(|pre| dev.starts_with(pre) && dev.len() > pre.len())
}

/// Files whose loss or corruption locks everyone out of the machine.
pub fn is_critical_file(path: &str) -> bool {
    let p = normalize(path);
    matches!(
        p.as_str(),
        "/etc/passwd"
            | "/etc/shadow"
            | "/etc/group"
            | "/etc/gshadow"
            | "/etc/sudoers"
            | "/etc/fstab"
            | "/etc/crypttab"
    ) || p.starts_with("/etc/sudoers.d/")
        || p.starts_with("/etc/pam.d/")
        || p == "/etc/ssh/sshd_config"
}

/// Top-level directories of the system (and `/`).
pub fn is_system_dir(path: &str) -> bool {
    const DIRS: &[&str] = &[
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/usr",
        "/var",
        "/var/lib",
        "/var/log",
        "/var/spool",
        "/var/cache",
        "/usr/local",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/usr/lib64",
        "/usr/share",
        "/snap",
    ];
    DIRS.contains(&normalize(path).as_str())
}

/// Under a tree the system needs to run (`/etc`, `/usr`, `/boot`, …): removing or overwriting
/// there is Dangerous.
pub fn is_system_tree(path: &str) -> bool {
    const TREES: &[&str] = &[
        "/etc", "/usr", "/boot", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
        "/var/lib", "/proc", "/sys", "/dev",
    ];
    let p = normalize(path);
    TREES
        .iter()
        .any(|t| p == *t || (p.starts_with(t) && p.as_bytes().get(t.len()) == Some(&b'/')))
}

/// Writing here changes how the system boots or runs, beyond configuration.
pub fn is_system_binary_tree(path: &str) -> bool {
    const TREES: &[&str] = &[
        "/usr", "/boot", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/var/lib",
    ];
    let p = normalize(path);
    TREES
        .iter()
        .any(|t| p == *t || (p.starts_with(t) && p.as_bytes().get(t.len()) == Some(&b'/')))
}

pub fn is_under_etc(path: &str) -> bool {
    let p = normalize(path);
    p.starts_with("/etc/") || p == "/etc"
}

/// The filesystem root, or every entry in it (`/*`).
pub fn is_root(path: &str) -> bool {
    let p = path.trim_end_matches('*');
    normalize(p) == "/" && path.starts_with('/')
}

/// Paths writes to which are harmless.
pub fn is_harmless_sink(path: &str) -> bool {
    let p = normalize(path);
    matches!(
        p.as_str(),
        "/dev/null" | "/dev/stdout" | "/dev/stderr" | "/dev/tty" | "/dev/zero" | "/dev/full"
    ) || p.starts_with("/dev/fd/")
        || p.starts_with("/tmp/")
        || p.starts_with("/var/tmp/")
        || p.starts_with("/dev/shm/")
}

/// The parent directory of a glob (`/var/*` → `/var`), when the glob is in the last segment.
pub fn glob_parent(path: &str) -> Option<String> {
    let first = path.find(['*', '?', '[', '{'])?;
    let slash = path[..first].rfind('/')?;
    Some(normalize(if slash == 0 { "/" } else { &path[..slash] }))
}

/// Files the system runs or trusts later: writing them is a way to run anything as root.
pub fn runs_later(path: &str) -> bool {
    let p = normalize(path);
    const PREFIXES: &[&str] = &[
        "/etc/cron",
        "/var/spool/cron",
        "/etc/systemd/",
        "/etc/init.d/",
        "/etc/rc.local",
        "/etc/profile",
        "/etc/bash.bashrc",
        "/etc/ld.so.preload",
        "/etc/environment",
        "/etc/security/",
        "/etc/udev/rules.d/",
    ];
    PREFIXES.iter().any(|pre| p.starts_with(pre))
        || p.ends_with("/.ssh/authorized_keys")
        || p.ends_with("/.ssh/authorized_keys2")
}

/// Files holding password hashes or private keys.
pub fn is_secret(path: &str) -> bool {
    let p = normalize(path);
    matches!(p.as_str(), "/etc/shadow" | "/etc/gshadow" | "/etc/sudoers")
        || (p.contains("/.ssh/id_") && !p.ends_with(".pub"))
        || p.starts_with("/etc/ssh/ssh_host_") && p.ends_with("_key")
        || p.starts_with("/etc/ssl/private/")
}
