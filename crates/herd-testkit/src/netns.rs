//! A network namespace joined to the host by a veth pair, to cut a machine off (link down)
//! and bring it back. Removed on drop.

use std::process::Command;

use crate::error::{Error, Result};

pub struct NetNs {
    pub name: String,
    /// The host's end of the veth pair.
    pub host_if: String,
    /// The host's address on the pair; the namespace reaches the host there.
    pub host_ip: String,
}

/// Runs `ip ARGS`; its stderr is the error.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(crate::error::spawn("ip (install iproute2)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Unexpected(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

impl NetNs {
    /// `Ok(None)` (after saying so on stderr) when this process may not create namespaces
    /// (not root).
    pub fn create() -> Result<Option<NetNs>> {
        let pid = std::process::id();
        let name = format!("herd-it-{pid}");
        if let Err(e) = ip(&["netns", "add", &name]) {
            eprintln!("SKIPPED: cannot create a network namespace (need root): {e}");
            return Ok(None);
        }
        // Another test run may be using the same subnet or interface names: pick free ones.
        let addrs = ip_output(&["-br", "addr"]);
        let links = ip_output(&["-br", "link"]);
        let free_net = (0..200)
            .map(|i| (pid + i) % 200 + 20)
            .find(|x| !addrs.contains(&format!("10.213.{x}.")));
        let free_if = (0..10000)
            .map(|i| (pid + i) % 10000)
            .find(|i| !links.contains(&format!("hv{i}@")) && !links.contains(&format!("hv{i} ")));
        let (Some(x), Some(idx)) = (free_net, free_if) else {
            let _ = ip(&["netns", "del", &name]);
            return Err(Error::Unexpected(
                "no free 10.213.X.0/30 subnet or veth name for a test namespace".into(),
            ));
        };
        // From here on, dropping `ns` removes whatever was set up.
        let ns = NetNs {
            name,
            host_if: format!("hv{idx}"),
            host_ip: format!("10.213.{x}.1"),
        };
        let ns_if = format!("nv{idx}");
        let ns_ip = format!("10.213.{x}.2/30");
        let host_cidr = format!("{}/30", ns.host_ip);
        let n = ns.name.as_str();
        let steps: [&[&str]; 7] = [
            &[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
            ],
            &["link", "set", &ns_if, "netns", n],
            &["addr", "add", &host_cidr, "dev", &ns.host_if],
            &["link", "set", &ns.host_if, "up"],
            &["-n", n, "addr", "add", &ns_ip, "dev", &ns_if],
            &["-n", n, "link", "set", &ns_if, "up"],
            &["-n", n, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(step)?;
        }
        Ok(Some(ns))
    }

    /// Brings the host's end of the link up or down (down: the namespace is cut off).
    pub fn set_link(&self, up: bool) -> Result<()> {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
