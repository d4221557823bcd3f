//! Lines for the terminal that never end the process: a closed pipe (`eval | head -1`) or a
//! full device (`> /dev/full`) stops the printing, not the work, so every file is written first;
//! `main` reports what happened to standard output once the command is done.
//!
//! Every line has its control characters escaped (newlines and tabs kept): paths and names
//! from a user's folders must not drive the terminal.

use std::io::Write;
use std::sync::Mutex;

/// The first error writing standard output, if any (later lines are not attempted).
static STDOUT_FAILED: Mutex<Option<std::io::ErrorKind>> = Mutex::new(None);

/// Writes one line to standard output (see the module note).
pub fn line(args: std::fmt::Arguments<'_>) {
    let Ok(mut failed) = STDOUT_FAILED.lock() else {
        return;
    };
    if failed.is_some() {
        return;
    }
    let text = args.to_string();
    let mut bytes = crate::files::shown::terminal_safe(&text)
        .into_owned()
        .into_bytes();
    bytes.push(b'\n');
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(&bytes).and_then(|_| out.flush()) {
        *failed = Some(e.kind());
    }
}

/// Writes one line to standard error; a closed or full standard error is ignored.
pub fn note(args: std::fmt::Arguments<'_>) {
    let text = args.to_string();
    let mut bytes = crate::files::shown::terminal_safe(&text)
        .into_owned()
        .into_bytes();
    bytes.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&bytes);
}

/// What went wrong with standard output during the command, if anything.
pub fn stdout_failure() -> Option<std::io::ErrorKind> {
    STDOUT_FAILED.lock().ok().and_then(|f| *f)
}

/// `println!` for commands: see [`line`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::cli::out::line(format_args!($($arg)*)) };
}

/// `eprintln!` for commands: see [`note`].
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => { $crate::cli::out::note(format_args!($($arg)*)) };
}
