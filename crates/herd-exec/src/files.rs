//! A task's runtime files: a private directory holding `input.json` (named by `HERD_INPUT`),
//! an empty `output` (named by `HERD_OUTPUT`) and `bin/herd` (the agent's own executable,
//! put first on the task's `PATH`, so scripts can call `herd helper …` where herd is not
//! installed), and reading back what the task wrote to `output`.
//!
//! Owns the layout and the limit on outputs; the caller picks the directory and removes it.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::mask::Masker;

/// The environment variable naming the task's input file.
pub const INPUT_ENV: &str = "HERD_INPUT";
/// The environment variable naming the task's output file.
pub const OUTPUT_ENV: &str = "HERD_OUTPUT";
/// The most of a task's output file that is kept.
pub const MAX_OUTPUTS: usize = 1 << 20;

/// What a task's runtime directory is made of.
#[derive(Debug, Clone, Default)]
pub struct TaskFiles {
    /// The directory to create for the task (0700; its parent must exist). Removing it after
    /// the task is the caller's.
    pub dir: PathBuf,
    /// JSON text of the task's input; empty: `{}`.
    pub input: Bytes,
    /// Linked as `bin/herd`, and `bin` put first on `PATH`; `None`: no `bin`.
    pub herd: Option<PathBuf>,
}

/// The made files, as the task's environment names them.
pub(crate) struct Made {
    pub(crate) input: PathBuf,
    pub(crate) output: PathBuf,
    pub(crate) bin: Option<PathBuf>,
    /// The task's script as a file of its own (interpreters such as node resolve the path of
    /// the program they run, which an in-memory file does not have).
    pub(crate) script: Option<PathBuf>,
    /// The directory as it was made: `output` is read through it, whatever the task does to
    /// the directory's path meanwhile.
    pub(crate) dir: OwnedFd,
}

/// Makes the directory and its files. For a task run as another user (`owner`), the
/// directory is made under the system's temporary directory (`herd-task-XXXXXX`, which that
/// user can reach; the agent's state dir is its own only), given to the user once its files
/// are in place, and `files.dir` becomes a symbolic link to it, so [`remove`] finds it. The
/// error is the one-line `FailedToStart` detail.
pub(crate) fn make(
    files: &TaskFiles,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
    script: Option<&[u8]>,
) -> Result<Made, String> {
    let fail = |what: &Path, e: io::Error| {
        format!(
            "cannot prepare the task's files: {}: {e} — check the agent's state dir",
            what.display()
        )
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    // A directory of an earlier start of the same task (a restarted agent cleans these).
    if std::fs::symlink_metadata(&files.dir).is_ok() {
        remove(&files.dir).map_err(|e| fail(&files.dir, e))?;
    }
    let dir = match owner {
        None => {
            match builder.create(&files.dir) {
                Ok(()) => {}
                // Its parent is gone (removed by hand while the agent runs): made again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    builder.recursive(true);
                    builder
                        .create(&files.dir)
                        .map_err(|e| fail(&files.dir, e))?;
                    builder.recursive(false);
                }
                Err(e) => return Err(fail(&files.dir, e)),
            }
            files.dir.clone()
        }
        Some(_) => {
            let template = std::env::temp_dir().join("herd-task-XXXXXX");
            let made = nix::unistd::mkdtemp(&template).map_err(|e| fail(&template, e.into()))?;
            if let Some(parent) = files.dir.parent() {
                builder.recursive(true);
                builder.create(parent).map_err(|e| fail(parent, e))?;
                builder.recursive(false);
            }
            std::os::unix::fs::symlink(&made, &files.dir).map_err(|e| fail(&files.dir, e))?;
            made
        }
    };
    let dir_fd = nix::fcntl::open(
        &dir,
        nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| fail(&dir, e.into()))?;
    let input = dir.join("input.json");
    let output = dir.join("output");
    let body: &[u8] = if files.input.is_empty() {
        b"{}"
    } else {
        &files.input
    };
    let open = |path: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    open(&input)
        .and_then(|mut f| f.write_all(body))
        .map_err(|e| fail(&input, e))?;
    open(&output).map_err(|e| fail(&output, e))?;
    let bin = match (&files.herd, owner) {
        // The agent's own user: one `bin` beside the tasks' directories, made once.
        (Some(exe), None) => Some(shared_bin(&files.dir, exe).map_err(|(p, e)| fail(&p, e))?),
        // Another user cannot reach the agent's state dir: a `bin` of the task's own.
        (Some(exe), Some(_)) => {
            let bin = dir.join("bin");
            builder.create(&bin).map_err(|e| fail(&bin, e))?;
            let link = bin.join("herd");
            std::os::unix::fs::symlink(exe, &link).map_err(|e| fail(&link, e))?;
            Some(bin)
        }
        (None, _) => None,
    };
    let script = match script {
        Some(body) => {
            let path = dir.join("script");
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o700)
                .open(&path)
                .and_then(|mut f| f.write_all(body))
                .map_err(|e| fail(&path, e))?;
            Some(path)
        }
        None => None,
    };
    if let Some((uid, gid)) = owner {
        // The directory last: until then the user cannot touch what is inside.
        let mut paths = vec![input.clone(), output.clone()];
        paths.extend(bin.iter().filter(|b| b.starts_with(&dir)).cloned());
        paths.extend(script.clone());
        paths.push(dir.clone());
        for p in &paths {
            nix::unistd::chown(p, Some(uid), Some(gid)).map_err(|e| fail(p, e.into()))?;
        }
    }
    Ok(Made {
        input,
        output,
        bin,
        script,
        dir: dir_fd,
    })
}

/// The `bin` every task of the agent's own user shares, `.bin/herd` → `exe` beside the tasks'
/// directories: checked with one `readlink` per task, made (or corrected) when it is not
/// what it should be, through a rename so that a task never sees it half made.
fn shared_bin(task_dir: &Path, exe: &Path) -> Result<PathBuf, (PathBuf, io::Error)> {
    let parent = task_dir.parent().unwrap_or(Path::new("/"));
    let bin = parent.join(".bin");
    let link = bin.join("herd");
    if std::fs::read_link(&link).is_ok_and(|t| t == exe) {
        return Ok(bin);
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700).recursive(true);
    builder.create(&bin).map_err(|e| (bin.clone(), e))?;
    let name = task_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = bin.join(format!(".herd-{name}"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(exe, &tmp).map_err(|e| (tmp.clone(), e))?;
    std::fs::rename(&tmp, &link).map_err(|e| (link.clone(), e))?;
    Ok(bin)
}

/// Removes a task's runtime directory (and, when it is a link to one made for another user,
/// that one). Never follows a link inside it.
pub fn remove(dir: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(dir)?;
        // Only what `make` links to: a herd-task-* directory of the temporary directory.
        let ours = target.parent() == Some(std::env::temp_dir().as_path())
            && target
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("herd-task-"));
        if ours {
            match std::fs::remove_dir_all(&target) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        return std::fs::remove_file(dir);
    }
    std::fs::remove_dir_all(dir)
}

/// What the task wrote to its output file: at most [`MAX_OUTPUTS`] bytes (cut after its last
/// whole line within the limit), masked; and a note for the exit's detail when it was cut or
/// could not be read. Read through the directory made for the task, never following a link
/// nor waiting on anything but a regular file (the task may have replaced `output`).
pub(crate) fn read_outputs(dir: &OwnedFd, masker: Option<&Masker>) -> (Bytes, Option<String>) {
    use nix::fcntl::OFlag;
    let opened = nix::fcntl::openat(
        dir,
        "output",
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    );
    let file = match opened {
        Ok(fd) => std::fs::File::from(fd),
        Err(nix::errno::Errno::ENOENT) => {
            return (
                Bytes::new(),
                Some("the task removed its HERD_OUTPUT file; no outputs".to_string()),
            );
        }
        Err(nix::errno::Errno::ELOOP) => {
            return (
                Bytes::new(),
                Some("the task replaced its HERD_OUTPUT file with a link; no outputs".to_string()),
            );
        }
        Err(e) => {
            return (
                Bytes::new(),
                Some(format!("reading HERD_OUTPUT failed: {e}")),
            );
        }
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return (
            Bytes::new(),
            Some("HERD_OUTPUT is no longer a file; no outputs".to_string()),
        );
    }
    let mut buf = Vec::new();
    if let Err(e) = file.take(MAX_OUTPUTS as u64 + 1).read_to_end(&mut buf) {
        return (
            Bytes::new(),
            Some(format!("reading HERD_OUTPUT failed: {e}")),
        );
    }
    let mut note = None;
    if buf.len() > MAX_OUTPUTS {
        let keep = buf[..MAX_OUTPUTS]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(MAX_OUTPUTS, |i| i + 1);
        buf.truncate(keep);
        note = Some(format!(
            "HERD_OUTPUT held more than {} MiB; its outputs were cut after {keep} bytes",
            MAX_OUTPUTS >> 20
        ));
    }
    let out = match masker {
        Some(m) => m.mask_all(&buf),
        None => Bytes::from(buf),
    };
    (out, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_the_files_and_reads_outputs_back() {
        let tmp = tempfile::tempdir().unwrap();
        let files = TaskFiles {
            dir: tmp.path().join("t1"),
            input: Bytes::new(),
            herd: Some(PathBuf::from("/bin/true")),
        };
        let made = make(&files, None, Some(b"#!/bin/sh\necho hi\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(std::fs::read(&made.input).unwrap(), b"{}");
        assert_eq!(std::fs::read(&made.output).unwrap(), b"");
        let script = made.script.unwrap();
        assert_eq!(std::fs::read(&script).unwrap(), b"#!/bin/sh\necho hi\n");
        let mode = std::fs::metadata(&script).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let bin = made.bin.unwrap();
        assert_eq!(
            std::fs::read_link(bin.join("herd")).unwrap(),
            PathBuf::from("/bin/true")
        );
        std::fs::write(&made.output, b"a=1\ntok=s3cr3t\n").unwrap();
        let m = Masker::new(&[Bytes::from_static(b"s3cr3t")]).unwrap();
        let (out, note) = read_outputs(&made.dir, Some(&m));
        assert_eq!(&out[..], b"a=1\ntok=***\n");
        assert_eq!(note, None);
        // Made again over an earlier start's directory.
        let made = make(&files, None, None).unwrap();
        // A task that puts a link (or anything but a file) in place of its output gets none.
        std::fs::remove_file(&made.output).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &made.output).unwrap();
        let (out, note) = read_outputs(&made.dir, None);
        assert!(out.is_empty() && note.unwrap().contains("link"));
        std::fs::remove_file(&made.output).unwrap();
        nix::unistd::mkfifo(&made.output, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (out, note) = read_outputs(&made.dir, None);
        assert!(out.is_empty() && note.unwrap().contains("no longer a file"));
        remove(&files.dir).unwrap();
        assert!(!files.dir.exists());
    }

    #[test]
    fn another_users_directory_is_reachable_and_removed_whole() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let files = TaskFiles {
            dir: tmp.path().join("tasks/t2"),
            input: Bytes::from_static(b"{}"),
            herd: None,
        };
        let nobody = (
            nix::unistd::Uid::from_raw(65534),
            nix::unistd::Gid::from_raw(65534),
        );
        let made = make(&files, Some(nobody), Some(b"#!/bin/sh\n")).unwrap();
        let target = std::fs::read_link(&files.dir).unwrap();
        assert!(target.starts_with(std::env::temp_dir()), "{target:?}");
        use std::os::unix::fs::MetadataExt;
        for p in [&target, &made.input, &made.output] {
            assert_eq!(std::fs::metadata(p).unwrap().uid(), 65534, "{p:?}");
        }
        assert!(made.output.starts_with(&target));
        remove(&files.dir).unwrap();
        assert!(!target.exists() && std::fs::symlink_metadata(&files.dir).is_err());
    }

    #[test]
    fn outputs_beyond_the_limit_are_cut_at_a_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("output");
        let line = "k=".to_string() + &"v".repeat(1000) + "\n";
        std::fs::write(&path, line.repeat(MAX_OUTPUTS / line.len() + 5)).unwrap();
        let dir = nix::fcntl::open(
            tmp.path(),
            nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let (out, note) = read_outputs(&dir, None);
        assert!(
            out.len() <= MAX_OUTPUTS && out.ends_with(b"\n"),
            "{}",
            out.len()
        );
        assert_eq!(out.len() % line.len(), 0);
        assert!(note.unwrap().contains("cut after"));
    }
}
