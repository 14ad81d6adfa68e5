//! `--group`: each machine's output kept whole until the end, then every distinct output
//! printed once under a header that lists the machines that printed it (as `dshbak -c`
//! does), so a thousand identical answers read as one.

use std::collections::BTreeMap;

/// The machines' outputs (stdout and stderr as they came), by machine name.
#[derive(Default)]
pub struct Grouped {
    outputs: BTreeMap<String, Vec<u8>>,
}

impl Grouped {
    /// A machine that may print nothing still gets a group (of no output).
    pub fn machine(&mut self, name: &str) {
        self.outputs.entry(name.to_string()).or_default();
    }

    pub fn add(&mut self, name: &str, data: &[u8]) {
        self.outputs
            .entry(name.to_string())
            .or_default()
            .extend_from_slice(data);
    }

    /// Every distinct output once, under a header naming its machines; groups in the order
    /// of their first machine's name.
    pub fn render(&self) -> Vec<u8> {
        let mut groups: Vec<(Vec<&str>, &[u8])> = Vec::new();
        let mut by_output: BTreeMap<&[u8], usize> = BTreeMap::new();
        for (name, out) in &self.outputs {
            match by_output.get(out.as_slice()) {
                Some(&i) => groups[i].0.push(name),
                None => {
                    by_output.insert(out, groups.len());
                    groups.push((vec![name], out));
                }
            }
        }
        let mut text = Vec::new();
        for (names, out) in groups {
            let header = names.join(", ");
            let rule = "-".repeat(header.chars().count().clamp(16, 79));
            text.extend_from_slice(format!("{rule}\n{header}\n{rule}\n").as_bytes());
            if out.is_empty() {
                text.extend_from_slice(b"(no output)\n");
            } else {
                text.extend_from_slice(out);
                if !out.ends_with(b"\n") {
                    text.push(b'\n');
                }
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_outputs_are_printed_once_with_their_machines() {
        let mut g = Grouped::default();
        for m in ["web-2", "web-1", "db-1", "web-3"] {
            g.machine(m);
        }
        g.add("web-2", b"hello\n");
        g.add("web-1", b"hel");
        g.add("web-1", b"lo\n");
        g.add("db-1", b"other");
        let want = "\
----------------
db-1
----------------
other
----------------
web-1, web-2
----------------
hello
----------------
web-3
----------------
(no output)
";
        assert_eq!(String::from_utf8_lossy(&g.render()), want);
        assert!(Grouped::default().render().is_empty());
    }
}
