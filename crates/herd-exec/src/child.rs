//! What a task's process gets between fork and exec, whatever the agent inherited: default
//! signal dispositions and an empty signal mask (an agent started with SIGINT ignored must not
//! pass that on), and, for a task run as another user, that user's groups, gid and uid.
//!
//! Owns resolving a user name into what the child needs ([`RunAs`], in the parent: reading
//! the user and group databases is not async-signal-safe) and the child-side calls themselves
//! (only async-signal-safe syscalls).

use std::ffi::CString;

use nix::unistd::{Gid, Uid, User, getgrouplist};

/// Who a task runs as, resolved before the fork.
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub(crate) name: String,
    pub(crate) uid: Uid,
    pub(crate) gid: Gid,
    /// Every group the user belongs to (primary and supplementary).
    pub(crate) groups: Vec<Gid>,
    pub(crate) home: std::path::PathBuf,
    pub(crate) shell: std::path::PathBuf,
}

/// Resolves `name` for a task. The error is the one-line `FailedToStart` detail.
pub(crate) fn resolve_user(name: &str) -> Result<RunAs, String> {
    let me = Uid::effective();
    if !me.is_root() {
        return Err(format!(
            "cannot run as user {name}: the agent runs as uid {me}, not root — start the agent as root to use --user"
        ));
    }
    let user = match User::from_name(name) {
        Ok(Some(u)) => u,
        Ok(None) => {
            return Err(format!(
                "cannot run as user {name}: no such user on this machine"
            ));
        }
        Err(e) => {
            return Err(format!(
                "cannot run as user {name}: looking the user up failed: {e}"
            ));
        }
    };
    let cname = CString::new(name)
        .map_err(|_| format!("cannot run as user {name:?}: the name holds a NUL byte"))?;
    let groups = getgrouplist(&cname, user.gid)
        .map_err(|e| format!("cannot run as user {name}: reading its groups failed: {e}"))?;
    Ok(RunAs {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
        groups,
        home: user.dir,
        shell: user.shell,
    })
}

/// The child's side, between fork and exec: signals back to their defaults, then the user.
/// Only async-signal-safe syscalls (sigaction, sigprocmask, setgroups, setgid, setuid).
pub(crate) fn setup(run_as: Option<&RunAs>) -> std::io::Result<()> {
    reset_signals();
    if let Some(u) = run_as {
        nix::unistd::setgroups(&u.groups)?;
        nix::unistd::setgid(u.gid)?;
        nix::unistd::setuid(u.uid)?;
    }
    Ok(())
}

/// Every catchable signal (real-time ones, and those the C library keeps for itself, too) to
/// SIG_DFL, and an empty mask. Handlers are reset by exec anyway, but an ignored signal and
/// the mask would be inherited.
fn reset_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow};
    // The kernel's `struct sigaction` all zero is SIG_DFL, no flags, an empty mask, whatever
    // the field order. The raw call, because the C library refuses the signals it reserves.
    let dfl = [0u64; 4];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads one kernel `sigaction` (32 bytes, all zero) through the
        // pointer, which is live for the call; the old action is not asked for (null).
        #[allow(unsafe_code)]
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null::<u64>(),
                8usize,
            );
        }
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
