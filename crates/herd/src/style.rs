//! Color on the terminal: `--color auto|always|never` and `NO_COLOR`.

use std::io::IsTerminal;
use std::sync::OnceLock;

/// When to color machine prefixes and failed states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    Always,
    Never,
}

static WHEN: OnceLock<ColorWhen> = OnceLock::new();

/// Sets the choice for the whole process (once, from the command line).
pub fn init(when: ColorWhen) {
    let _ = WHEN.set(when);
}

fn decide(when: ColorWhen, no_color: Option<std::ffi::OsString>, terminal: bool) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => no_color.is_none_or(|v| v.is_empty()) && terminal,
    }
}

fn on(terminal: bool) -> bool {
    decide(
        WHEN.get().copied().unwrap_or_default(),
        std::env::var_os("NO_COLOR"),
        terminal,
    )
}

/// Whether what goes to stdout is colored.
pub fn stdout() -> bool {
    on(std::io::stdout().is_terminal())
}

/// Whether what goes to stderr is colored.
pub fn stderr() -> bool {
    on(std::io::stderr().is_terminal())
}

/// `text` in red when `color`.
pub fn red(text: &str, color: bool) -> String {
    if color {
        format!("\x1b[31m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices() {
        use ColorWhen::*;
        let set = || Some(std::ffi::OsString::from("1"));
        let cases = [
            (Auto, None, true, true),
            (Auto, None, false, false),
            (Auto, set(), true, false),
            (Auto, Some(std::ffi::OsString::new()), true, true),
            (Always, set(), false, true),
            (Never, None, true, false),
        ];
        for (when, no_color, terminal, want) in cases {
            assert_eq!(
                decide(when, no_color.clone(), terminal),
                want,
                "{when:?} {no_color:?} {terminal}"
            );
        }
    }
}
