//! The person's side of an interactive run (`-i`): this terminal's stdin read in chunks for
//! the tasks, the terminal put in raw mode under `--tty` (restored however the run ends), and
//! the terminal's size.

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// A chunk of stdin, or `None` once it has ended.
pub type Chunk = Option<Vec<u8>>;

/// Reads stdin in chunks of up to 32 KiB into the returned channel, then `None` at its end.
/// Without `interactive` nothing is read and the channel is closed at once.
pub fn read_stdin(interactive: bool) -> mpsc::Receiver<Chunk> {
    let (tx, rx) = mpsc::channel::<Chunk>(16);
    if !interactive {
        return rx;
    }
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None).await;
                    return;
                }
                Ok(n) => {
                    if tx.send(Some(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// This terminal's size (rows, columns), from stdout, else stdin; `None` when neither is a
/// terminal.
pub fn window_size() -> Option<herd_api::WindowSize> {
    use std::os::fd::AsRawFd;
    let out = std::io::stdout();
    let inp = std::io::stdin();
    [out.as_raw_fd(), inp.as_raw_fd()]
        .into_iter()
        .find_map(|fd| {
            let mut ws = libc::winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points to a
            // live value for the duration of the call; the fd is this process's own.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws as *mut libc::winsize) };
            (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(herd_api::WindowSize {
                rows: ws.ws_row,
                cols: ws.ws_col,
            })
        })
}

/// Restores the terminal mode on drop.
pub struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    pub fn enable() -> RawMode {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let Ok(orig) = tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(&stdin, SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                orig,
            );
        }
    }
}
