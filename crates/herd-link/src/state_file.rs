//! The JSON state files an agent keeps its credential in: written atomically and readable
//! by the owner only; a damaged one is reported with what to do about it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{} is damaged ({why}) — {fix}", path.display())]
    Damaged {
        path: PathBuf,
        why: String,
        fix: String,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Replaces `path` atomically (temporary file beside it, fsync, rename) with `body`,
/// readable by the owner only: state files hold credentials.
pub fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Reads a JSON state file; `None` when it does not exist. A damaged one is an error that
/// says what to do (`fix`).
pub fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    fix: &str,
) -> Result<Option<T>, StateFileError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StateFileError::Damaged {
                path: path.to_path_buf(),
                why: e.to_string(),
                fix: fix.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateFileError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates `dir` (and its parents) if missing and makes it accessible to its owner only
/// (0700). Answers the mode it had when that was wider, so the caller can say it fixed it.
pub fn private_dir(dir: &Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
    Ok(Some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_privately_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(read_json::<Vec<u32>>(&path, "fix it").unwrap(), None);
        write_private(&path, b"[1,2]").unwrap();
        assert_eq!(
            read_json::<Vec<u32>>(&path, "fix it").unwrap(),
            Some(vec![1, 2])
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("state.json.tmp").exists());
        std::fs::write(&path, "nope").unwrap();
        let err = read_json::<Vec<u32>>(&path, "remove it")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is damaged") && err.ends_with("— remove it"),
            "{err}"
        );
    }
}
