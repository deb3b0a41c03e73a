//! How a rejected option is reported: [`OptsError`] names the element of `opts` (for the
//! `$.opts[i]` path) and says why, quoting the caller's text safely.

use std::fmt;

/// Why `opts` was rejected: `index` is the position in `opts` of the offending element (for `$.opts[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptsError {
    pub index: usize,
    pub message: String,
}

impl fmt::Display for OptsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OptsError {}

/// Quotes caller text for a message, escaped, and cut short so a huge element stays out of it.
pub(super) fn quote(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.chars().nth(SHOWN).is_none() {
        return format!("{text:?}");
    }
    let start: String = text.chars().take(SHOWN).collect();
    format!("{start:?}...")
}

pub(super) fn error(index: usize, message: String) -> OptsError {
    OptsError { index, message }
}
