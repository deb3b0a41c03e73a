//! Byte classes of SQL's lexical structure shared by the scanner and the rules.

/// The bytes PostgreSQL's lexer takes as whitespace (with `\n`, which ends a line).
pub(super) const SPACES: [u8; 5] = *b" \t\r\x0b\x0c";

/// Whitespace other than `\n`.
pub(super) fn is_space(b: u8) -> bool {
    SPACES.contains(&b)
}

/// A byte that continues an identifier, so that an `E` or `$` after it is not a quote opener.
pub(super) fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// A byte of a dollar-quote tag; digits may not start one (`$1` is a parameter).
pub(super) fn is_tag_byte(b: u8, first: bool) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 || (!first && b.is_ascii_digit())
}
