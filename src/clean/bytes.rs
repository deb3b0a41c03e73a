//! Byte classes of SQL's lexical structure shared by the lexer and the rules, and the fast
//! searches the lexer runs over them: the SWAR scan of top-level code for the bytes that can
//! change its state, and the `memchr` searches inside quotes and comments.

use memchr::{memchr, memchr2, memchr3};

/// The bytes PostgreSQL's lexer takes as whitespace (with `\n`, which ends a line).
pub(super) const SPACES: [u8; 5] = *b" \t\r\x0b\x0c";

/// Whitespace other than `\n`.
#[inline]
pub(super) fn is_space(b: u8) -> bool {
    SPACES.contains(&b)
}

/// A byte that continues an identifier, so that an `E` or `$` after it is not a quote opener.
#[inline]
pub(super) fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// A byte of a dollar-quote tag; digits may not start one (`$1` is a parameter).
#[inline]
pub(super) fn is_tag_byte(b: u8, first: bool) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 || (!first && b.is_ascii_digit())
}

// Byte classes of top-level code: whitespace, plain code, and bytes the scanner must look at.
const WS: u8 = 0;
const PLAIN: u8 = 1;
const SPECIAL: u8 = 2;

/// The bytes that can change the scanner's state in top-level code.
const SPECIALS: [u8; 7] = *b"\n;-/'\"$";

static CLASS: [u8; 256] = {
    let mut table = [PLAIN; 256];
    let mut i = 0;
    while i < SPACES.len() {
        table[SPACES[i] as usize] = WS;
        i += 1;
    }
    let mut i = 0;
    while i < SPECIALS.len() {
        table[SPECIALS[i] as usize] = SPECIAL;
        i += 1;
    }
    table
};

/// A byte of top-level code that is neither whitespace nor one [`find_special`] stops at:
/// one that ends a statement's start.
#[inline]
pub(super) fn is_plain(b: u8) -> bool {
    CLASS[usize::from(b)] == PLAIN
}

/// The first byte of `run` that top-level code must look at, or `run.len()`. DDL lines are
/// mostly plain bytes, so eight are tested at once (SWAR: a byte of `word ^ repeat(c)` is zero
/// where `word` holds `c`; the lowest flagged byte of each test is exact).
#[inline]
pub(super) fn find_special(run: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut words = run.chunks_exact(8);
    let mut skipped = 0;
    for word in words.by_ref() {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let found = SPECIALS.iter().fold(0, |found, &c| {
            found | zero_bytes(word ^ (ONES * u64::from(c)))
        });
        if found != 0 {
            return skipped + (found.trailing_zeros() / 8) as usize;
        }
        skipped += 8;
    }
    skipped
        + words
            .remainder()
            .iter()
            .position(|&b| CLASS[usize::from(b)] == SPECIAL)
            .unwrap_or(run.len() - skipped)
}

/// Next `a` (or `\n` when line ends matter).
#[inline]
pub(super) fn seek1(hay: &[u8], a: u8, newline: bool) -> Option<usize> {
    if newline {
        memchr2(a, b'\n', hay)
    } else {
        memchr(a, hay)
    }
}

/// Next `a` or `b` (or `\n` when line ends matter).
#[inline]
pub(super) fn seek2(hay: &[u8], a: u8, b: u8, newline: bool) -> Option<usize> {
    if newline {
        memchr3(a, b, b'\n', hay)
    } else {
        memchr2(a, b, hay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_special_agrees_with_the_class_table() {
        for filler in [b'x', 0x00, 0x01, 0x7f, 0x80, 0xa2, 0xff] {
            for b in 0..=255u8 {
                for len in 0..20 {
                    for at in 0..len {
                        let mut run = vec![filler; len];
                        run[at] = b;
                        let expected = run
                            .iter()
                            .position(|&c| CLASS[usize::from(c)] == SPECIAL)
                            .unwrap_or(len);
                        assert_eq!(find_special(&run), expected, "{run:?}");
                    }
                }
            }
        }
    }
}
