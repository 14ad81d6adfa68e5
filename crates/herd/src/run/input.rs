//! The person's side of an interactive run (`-i`): this terminal's stdin read in chunks for
//! the tasks, and the terminal put in raw mode under `--tty` (restored however the run ends).

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
