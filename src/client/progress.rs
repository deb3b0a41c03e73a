//! The progress line on stderr: bytes received, rate, elapsed time. Shown only to a person
//! watching (stderr is a terminal, the dump itself is not being printed on that terminal,
//! and no `-q`), so that scripts and logs never see it.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner line that counts bytes, or nothing.
pub(super) struct Progress(ProgressBar);

impl Progress {
    /// A visible line unless `quiet`, or stderr is not a terminal, or the dump goes to a
    /// stdout that is the terminal itself.
    pub(super) fn new(quiet: bool, to_stdout: bool) -> Progress {
        let watched =
            std::io::stderr().is_terminal() && !(to_stdout && std::io::stdout().is_terminal());
        if quiet || !watched {
            return Progress(ProgressBar::hidden());
        }
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(
                "{spinner} {msg} {bytes} ({binary_bytes_per_sec}, {elapsed})",
            )
            .expect("a valid template"),
        );
        bar.set_message("waiting for the server…");
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(bar)
    }

    /// The response has started.
    pub(super) fn receiving(&self) {
        self.0.set_message("received");
    }

    /// `bytes` more were written.
    pub(super) fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    /// Removes the line.
    pub(super) fn clear(&self) {
        self.0.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error message must not be printed over a half-drawn line.
        self.0.finish_and_clear();
    }
}
