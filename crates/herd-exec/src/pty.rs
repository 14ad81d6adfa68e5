//! Pseudo-terminal plumbing for TTY-mode tasks, done by hand on nix/libc.
//!
//! Owns: allocating the master/slave pair (close-on-exec from the start, so
//! concurrently spawned tasks never inherit another task's terminal), the
//! window size, the child-side `pre_exec` that makes the slave the
//! controlling terminal of a new session, and async I/O on the non-blocking
//! master via `AsyncFd`.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, ReadBuf};

/// A freshly allocated terminal pair.
pub(crate) struct Pty {
    pub(crate) master: OwnedFd,
    pub(crate) slave: OwnedFd,
}

/// Opens a new PTY with the given window size; the master is non-blocking.
pub(crate) fn open(cols: u16, rows: u16) -> io::Result<Pty> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let slave_path = ptsname_r(&master)?;
    // std opens with O_CLOEXEC; O_NOCTTY keeps the agent itself from ever
    // acquiring the terminal.
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&slave_path)?;
    let master = OwnedFd::from(master);
    let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
    fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    set_window_size(&master, cols, rows)?;
    Ok(Pty {
        master,
        slave: OwnedFd::from(slave),
    })
}

fn set_window_size(fd: &OwnedFd, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `winsize` through the pointer, which points
    // to a live, properly initialised value for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &ws as *const libc::winsize,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Child-side setup, run between fork and exec with the slave already on
/// fds 0/1/2: start a new session (which also makes a new process group, so
/// the task can be signalled as a group) and make the slave its controlling
/// terminal, so job control, `tty`, and ^C/^D semantics work.
///
/// Only async-signal-safe calls (setsid, ioctl) are made here.
pub(crate) fn child_setup() -> io::Result<()> {
    // SAFETY: plain syscalls without pointers into our memory.
    #[allow(unsafe_code)]
    unsafe {
        if libc::setsid() == -1 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The master side, shared by the output pump (reads) and the supervisor
/// (writes of stdin input).
#[derive(Clone)]
pub(crate) struct Master(Arc<AsyncFd<OwnedFd>>);

impl Master {
    /// Must be called inside a tokio runtime; the fd must be non-blocking.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Self> {
        // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which owns it
        // until dropped; nothing else can close or replace that descriptor.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(fd)? };
        Ok(Self(Arc::new(fd)))
    }

    /// Sets the terminal's size; the kernel sends SIGWINCH to its foreground process group.
    pub(crate) fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        set_window_size(self.0.get_ref(), cols, rows)
    }

    /// The terminal does not echo what is typed (a password prompt): on Linux a PTY
    /// master's termios are its slave's.
    pub(crate) fn echo_off(&self) -> bool {
        nix::sys::termios::tcgetattr(self.0.get_ref())
            .is_ok_and(|t| !t.local_flags.contains(nix::sys::termios::LocalFlags::ECHO))
    }

    /// Writes some of `buf`, returning how many bytes were taken.
    /// Cancel-safe: nothing is written unless it returns.
    pub(crate) async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.0.writable().await?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref().as_fd(), buf).map_err(io::Error::from))
            {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncRead for Master {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let result = guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_fd(), unfilled).map_err(io::Error::from)
            });
            match result {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Linux reports EIO on the master once every slave fd is
                // closed: that is the terminal's end of file.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}
