//! The SQL-aware filter behind `clean_output` (SPEC §6). A streaming scanner follows the
//! lexical structure of pg_dump's plain output — strings, `E''` strings, quoted identifiers,
//! dollar quotes, comments and COPY data — so that it can drop the top-level lines a non-psql
//! client cannot or need not run (blank and `--` lines, session `SET`s, Hasura event triggers,
//! psql meta-commands) without ever touching function bodies, literals or table data.
//! Pure bytes in, bytes out: no I/O here.
//!
//! This file holds the scanner and its streaming wrapper ([`Cleaner`]); `rules` decides the
//! fate of each top-level line the scanner finds, and `bytes` has the byte classes of SQL
//! both use.

mod bytes;
mod rules;

use memchr::{memchr, memchr2, memchr3, memmem};

use bytes::{is_ident, is_tag_byte, SPACES};
use rules::{Disp, Rules, LINE_CAP, LONG_HEAD};

/// Dollar-quote tags are remembered whole, up to this length, and matched exactly. pg_dump's
/// tags are `$$`, `$_$`, `$_X$`…, longer only when the body holds the shorter ones, so a
/// longer tag is made on purpose: after one the cleaner can no longer tell where the body
/// ends, and keeps the rest of the dump as it is ([`Mode::Verbatim`]) rather than guess.
const MAX_TAG: usize = 64 * 1024;

/// The tag buffer's capacity kept between dollar quotes; a longer tag's is given back.
const TAG_CAPACITY: usize = 64;

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

/// Where the scanner is. The `Dash`, `Slash`, `*Star`, `*Quote`, `*Escape`, `DollarOpen` and
/// `DollarClose` states hold a token that may continue in the next chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Top level, before the first byte of a line.
    LineStart,
    Code,
    Dash,
    Slash,
    /// A `--` comment, or a top-level psql meta-command line: both run to the end of line.
    LineComment,
    Block(u32),
    BlockStar(u32),
    BlockSlash(u32),
    Str,
    Ident,
    EStr,
    EStrEscape,
    EStrQuote,
    DollarOpen,
    Dollar,
    DollarClose(usize),
    /// After a dollar-quote tag longer than [`MAX_TAG`]: everything is kept, to the end.
    Verbatim,
    /// COPY data; the count says how much of a `\.` line has been seen at the start of the
    /// current line: 0 none (mid-line), 1 line start, 2 `\`, 3 `\.`, 4 `\.\r`.
    Copy(u8),
}

/// The first and last bytes of a statement's lines: enough to spot `COPY … FROM stdin;`
/// without holding the line.
#[derive(Clone, Debug, Default)]
struct Edge {
    head: [u8; 5],
    head_len: usize,
    tail: [u8; 13],
    tail_len: usize,
}

impl Edge {
    fn push(&mut self, bytes: &[u8]) {
        let n = (self.head.len() - self.head_len).min(bytes.len());
        self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
        self.head_len += n;
        let cap = self.tail.len();
        if bytes.len() >= cap {
            self.tail.copy_from_slice(&bytes[bytes.len() - cap..]);
            self.tail_len = cap;
        } else {
            let kept = (cap - bytes.len()).min(self.tail_len);
            self.tail
                .copy_within(self.tail_len - kept..self.tail_len, 0);
            self.tail[kept..kept + bytes.len()].copy_from_slice(bytes);
            self.tail_len = kept + bytes.len();
        }
    }

    fn starts_copy(&self) -> bool {
        &self.head[..self.head_len] == b"COPY "
    }

    fn is_copy_from_stdin(&self) -> bool {
        let tail = &self.tail[..self.tail_len];
        let tail = tail.strip_suffix(b"\r").unwrap_or(tail);
        self.starts_copy() && tail.ends_with(b" FROM stdin;")
    }
}

/// Streaming, SQL-aware filter for pg_dump plain output (SPEC §6).
///
/// Memory does not grow with the input: the struct itself (under 512 bytes, mostly the
/// prebuilt `\.` searcher) plus one 4 KiB buffer, allocated by `new`, for the prefix of an
/// undecided top-level line, and the tag of the current dollar quote (64 bytes, more only
/// while a longer tag is open, at most 64 KiB). Each `feed` appends at most
/// `input.len()` + 4 KiB to `out`.
#[derive(Clone, Debug)]
pub struct Cleaner {
    mode: Mode,
    disp: Disp,
    /// No code since the last top-level `;`: only a line starting here may open COPY.
    stmt_start: bool,
    /// `stmt_start` as it was when the current line began: rules 3 and 4 remove a line only
    /// when it is whole statements, not the start, middle or end of one.
    line_starts_stmt: bool,
    /// The current line belongs to a statement that may be `COPY … FROM stdin;`, so its end
    /// must be seen and its edges recorded.
    copy_line: bool,
    /// The input so far ends inside a line.
    line_open: bool,
    /// The last two bytes of earlier chunks, for the look-behind of `E'` and `$`.
    last: [u8; 2],
    /// The tag of the dollar quote being opened or scanned, without its dollars.
    tag: Vec<u8>,
    pend: Vec<u8>,
    edge: Edge,
    rules: Rules,
    /// Built once: a `\.` line can only follow a `\n`.
    copy_end: memmem::Finder<'static>,
}

impl Default for Cleaner {
    fn default() -> Self {
        Self::new()
    }
}

impl Cleaner {
    /// A cleaner at the start of a dump.
    pub fn new() -> Self {
        Self {
            mode: Mode::LineStart,
            disp: Disp::Pending,
            stmt_start: true,
            line_starts_stmt: true,
            copy_line: true,
            line_open: false,
            last: [b'\n'; 2],
            tag: Vec::with_capacity(TAG_CAPACITY),
            pend: Vec::with_capacity(LINE_CAP),
            edge: Edge::default(),
            rules: Rules::default(),
            copy_end: memmem::Finder::new(b"\n\\."),
        }
    }

    /// Scans `input` (any chunk of pg_dump output, split anywhere, even inside a UTF-8 char or a line)
    /// and appends the kept bytes to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        // Kept lines are copied in runs, from `kept_from` up to the next dropped line, rather
        // than one by one: most lines are kept, and most are short.
        let mut kept_from = 0;
        let mut line_from = 0;
        let mut pos = 0;
        while pos < input.len() {
            let (next, line_end) = self.step(input, pos);
            pos = next;
            if line_end {
                if !self.end_line(&input[line_from..pos], out) {
                    out.extend_from_slice(&input[kept_from..line_from]);
                    kept_from = pos;
                }
                line_from = pos;
            }
        }
        let kept_to = if self.end_chunk(&input[line_from..], out) {
            input.len()
        } else {
            line_from
        };
        out.extend_from_slice(&input[kept_from..kept_to]);
        match *input {
            [] => {}
            [b] => self.last = [self.last[1], b],
            [.., a, b] => self.last = [a, b],
        }
        if let Some(&b) = input.last() {
            self.line_open = b != b'\n';
        }
    }

    /// Flushes the last line (adding its trailing \n) at end of input.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.line_open {
            let keep = match self.disp {
                Disp::Keep => true,
                Disp::Drop => false,
                Disp::Pending => {
                    let statements = self.line_is_statements();
                    self.judge(&[], true, statements) == Some(Disp::Keep)
                }
            };
            if keep {
                out.extend_from_slice(&self.pend);
                out.push(b'\n');
            }
        }
        *self = Self::new();
    }

    /// Advances the scanner from `pos` (< `input.len()`); returns the new position and whether
    /// it just consumed a `\n` the line logic must see: one that ends a line whose fate or
    /// COPY status is open, or after which a top-level line starts.
    fn step(&mut self, input: &[u8], pos: usize) -> (usize, bool) {
        let watch = self.disp != Disp::Keep || self.copy_line;
        let b = input[pos];
        match self.mode {
            Mode::LineStart => {
                // psql reads a line starting with a backslash as a meta-command, not SQL.
                if b == b'\\' {
                    self.mode = Mode::LineComment;
                    return (pos + 1, false);
                }
                self.mode = Mode::Code;
                self.code(input, pos)
            }
            Mode::Code => self.code(input, pos),
            Mode::Dash | Mode::Slash => {
                let (second, then) = if self.mode == Mode::Dash {
                    (b'-', Mode::LineComment)
                } else {
                    (b'*', Mode::Block(1))
                };
                if b == second {
                    self.mode = then;
                    return (pos + 1, false);
                }
                // A lone `-` or `/` is an operator: code.
                self.stmt_start = false;
                self.mode = Mode::Code;
                (pos, false)
            }
            Mode::LineComment => match memchr(b'\n', &input[pos..]) {
                Some(i) => {
                    self.mode = Mode::Code;
                    (pos + i + 1, true)
                }
                None => (input.len(), false),
            },
            Mode::Block(depth) => match seek2(&input[pos..], b'*', b'/', watch) {
                Some(i) => {
                    self.mode = match input[pos + i] {
                        b'\n' => return (pos + i + 1, true),
                        b'*' => Mode::BlockStar(depth),
                        _ => Mode::BlockSlash(depth),
                    };
                    (pos + i + 1, false)
                }
                None => (input.len(), false),
            },
            Mode::BlockStar(depth) if b == b'/' => {
                self.mode = if depth <= 1 {
                    Mode::Code
                } else {
                    Mode::Block(depth - 1)
                };
                (pos + 1, false)
            }
            // PostgreSQL nests block comments (as the SQL standard says): `/*` opens another level.
            Mode::BlockSlash(depth) if b == b'*' => {
                self.mode = Mode::Block(depth.saturating_add(1));
                (pos + 1, false)
            }
            Mode::BlockStar(depth) | Mode::BlockSlash(depth) => {
                self.mode = Mode::Block(depth);
                (pos, false)
            }
            // A doubled quote is handled as a close and an immediate reopen, which ends in the
            // same state, so plain strings and identifiers need no look-ahead.
            Mode::Str | Mode::Ident => {
                let quote = if self.mode == Mode::Str { b'\'' } else { b'"' };
                match seek1(&input[pos..], quote, watch) {
                    Some(i) if input[pos + i] == b'\n' => (pos + i + 1, true),
                    Some(i) => {
                        self.mode = Mode::Code;
                        (pos + i + 1, false)
                    }
                    None => (input.len(), false),
                }
            }
            Mode::EStr => match seek2(&input[pos..], b'\'', b'\\', watch) {
                Some(i) => {
                    self.mode = match input[pos + i] {
                        b'\n' => return (pos + i + 1, true),
                        b'\\' => Mode::EStrEscape,
                        _ => Mode::EStrQuote,
                    };
                    (pos + i + 1, false)
                }
                None => (input.len(), false),
            },
            Mode::EStrEscape => {
                self.mode = Mode::EStr;
                (pos + 1, b == b'\n' && watch)
            }
            // Unlike in a plain string, `''` must not reopen as a plain string here.
            Mode::EStrQuote => {
                if b == b'\'' {
                    self.mode = Mode::EStr;
                    return (pos + 1, false);
                }
                self.mode = Mode::Code;
                (pos, false)
            }
            Mode::DollarOpen => {
                // The tag's bytes are taken as one run (a tag is usually whole in the chunk).
                let rest = &input[pos..];
                let first = self.tag.is_empty();
                let n = rest
                    .iter()
                    .enumerate()
                    .take_while(|&(i, &b)| is_tag_byte(b, first && i == 0))
                    .count();
                if self.tag.len() + n > MAX_TAG {
                    self.mode = Mode::Verbatim;
                    return (input.len(), false);
                }
                self.tag.extend_from_slice(&rest[..n]);
                match rest.get(n) {
                    None => (input.len(), false),
                    Some(b'$') => {
                        self.mode = Mode::Dollar;
                        (pos + n + 1, false)
                    }
                    // `$1`, or `$name` with no closing `$`: plain code after all.
                    Some(_) => {
                        self.mode = Mode::Code;
                        (pos + n, false)
                    }
                }
            }
            Mode::Dollar => match seek1(&input[pos..], b'$', watch) {
                Some(i) if input[pos + i] == b'\n' => (pos + i + 1, true),
                Some(i) => {
                    self.mode = Mode::DollarClose(0);
                    (pos + i + 1, false)
                }
                None => (input.len(), false),
            },
            // After a `$` in the body: the tag must follow exactly, then a `$`.
            Mode::DollarClose(seen) => {
                let rest = &input[pos..];
                let want = &self.tag[seen..];
                let n = want.iter().zip(rest).take_while(|(t, b)| t == b).count();
                match rest.get(n) {
                    None => {
                        self.mode = Mode::DollarClose(seen + n);
                        (input.len(), false)
                    }
                    Some(b'$') if n == want.len() => {
                        self.mode = Mode::Code;
                        (pos + n + 1, false)
                    }
                    // Rescan the byte: it may be the `$` of the real closing tag.
                    Some(_) => {
                        self.mode = Mode::Dollar;
                        (pos + n, false)
                    }
                }
            }
            Mode::Copy(seen) => self.copy(input, pos, seen),
            Mode::Verbatim => (input.len(), false),
        }
    }

    /// Top-level code: runs of plain bytes go through the class table in a tight loop.
    fn code(&mut self, input: &[u8], mut start: usize) -> (usize, bool) {
        let (b, pos) = loop {
            let run = &input[start..];
            let n = find_special(run);
            // Only whitespace keeps a statement at its start; usually the first byte settles it.
            if self.stmt_start && run[..n].iter().any(|&b| CLASS[usize::from(b)] == PLAIN) {
                self.stmt_start = false;
            }
            let Some(&b) = run.get(n) else {
                return (input.len(), false);
            };
            // A `;` changes no mode: scan on.
            if b != b';' {
                break (b, start + n + 1);
            }
            self.stmt_start = true;
            start += n + 1;
        };
        let at = pos - 1;
        match b {
            b'\n' => return (pos, true),
            // `--` whole in this chunk, the usual case: skip to the end of the line at once.
            b'-' if input.get(pos) == Some(&b'-') => {
                return match memchr(b'\n', &input[pos + 1..]) {
                    Some(i) => (pos + i + 2, true),
                    None => {
                        self.mode = Mode::LineComment;
                        (input.len(), false)
                    }
                };
            }
            b'-' => self.mode = Mode::Dash,
            b'/' => self.mode = Mode::Slash,
            b'\'' => {
                self.stmt_start = false;
                let e = self.byte_before(input, at, 1);
                self.mode = if matches!(e, b'E' | b'e') && !is_ident(self.byte_before(input, at, 2))
                {
                    Mode::EStr
                } else {
                    Mode::Str
                };
            }
            b'"' => {
                self.stmt_start = false;
                self.mode = Mode::Ident;
            }
            _ => {
                self.stmt_start = false;
                // In `a$b$` the `$` continues an identifier.
                if !is_ident(self.byte_before(input, at, 1)) {
                    self.tag.clear();
                    self.tag.shrink_to(TAG_CAPACITY);
                    self.mode = Mode::DollarOpen;
                }
            }
        }
        (pos, false)
    }

    /// COPY data is kept verbatim; only a line equal to `\.` matters, so whole blocks are
    /// skipped with one substring search.
    fn copy(&mut self, input: &[u8], mut pos: usize, mut seen: u8) -> (usize, bool) {
        loop {
            if seen == 0 {
                let rest = &input[pos..];
                let Some(i) = self.copy_end.find(rest) else {
                    // The chunk may end inside a line start that the next chunk completes.
                    seen = if rest.ends_with(b"\n") {
                        1
                    } else if rest.ends_with(b"\n\\") {
                        2
                    } else {
                        0
                    };
                    self.mode = Mode::Copy(seen);
                    return (input.len(), false);
                };
                pos += i + 3;
                seen = 3;
            }
            let Some(&b) = input.get(pos) else {
                self.mode = Mode::Copy(seen);
                return (pos, false);
            };
            pos += 1;
            seen = match (seen, b) {
                (3 | 4, b'\n') => {
                    self.mode = Mode::Code;
                    self.stmt_start = true;
                    return (pos, true);
                }
                (_, b'\n') => 1,
                (1, b'\\') => 2,
                (2, b'.') => 3,
                (3, b'\r') => 4,
                _ => 0,
            };
        }
    }

    /// The byte `back` places before `at`, looking into earlier chunks if needed.
    fn byte_before(&self, input: &[u8], at: usize, back: usize) -> u8 {
        match at.checked_sub(back) {
            Some(i) => input[i],
            None => self.last[2 - (back - at)],
        }
    }

    /// `line` is the current line's bytes in this chunk, through its `\n`. Returns whether
    /// they are kept; the caller copies them, after the held prefix this writes to `out`.
    fn end_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> bool {
        let text = &line[..line.len() - 1];
        let statements = self.line_is_statements();
        if self.copy_line {
            self.edge.push(text);
            if self.mode == Mode::Code && self.stmt_start && self.edge.is_copy_from_stdin() {
                self.mode = Mode::Copy(1);
            }
        }
        let keep = match self.disp {
            Disp::Keep => true,
            Disp::Drop => false,
            Disp::Pending => self.judge(text, true, statements) == Some(Disp::Keep),
        };
        // Only the chunk's first line can have a held prefix, so nothing kept precedes it.
        if keep {
            out.extend_from_slice(&self.pend);
        }
        self.pend.clear();

        // A COPY statement may span lines (a quoted name holding a newline).
        let continues = self.copy_line && !self.stmt_start && self.edge.starts_copy();
        if !continues {
            self.edge = Edge::default();
        }
        if self.mode == Mode::Code {
            self.mode = Mode::LineStart;
            self.disp = Disp::Pending;
            self.copy_line = continues || self.stmt_start;
            self.line_starts_stmt = self.stmt_start;
        } else {
            self.disp = Disp::Keep;
            self.copy_line = continues;
        }
        keep
    }

    /// `rest` is the current line's bytes at the end of this chunk. Returns whether they are
    /// kept now, like [`Cleaner::end_line`]; bytes whose fate is open are held instead.
    fn end_chunk(&mut self, rest: &[u8], out: &mut Vec<u8>) -> bool {
        if self.copy_line {
            self.edge.push(rest);
        }
        match self.disp {
            Disp::Keep => true,
            Disp::Drop => false,
            Disp::Pending => match self.judge(rest, false, false) {
                None => {
                    self.pend.extend_from_slice(rest);
                    false
                }
                Some(disp) => {
                    let keep = disp == Disp::Keep;
                    if keep {
                        out.extend_from_slice(&self.pend);
                    }
                    self.pend.clear();
                    self.disp = disp;
                    keep
                }
            },
        }
    }

    /// Whether the line just scanned began where a statement may begin and ends at top level
    /// with its statements ended (at the end of input, a `--` comment still waits for its
    /// newline). A line of rule 3 or 4 that is not would leave part of a statement behind.
    fn line_is_statements(&self) -> bool {
        let top_level = matches!(self.mode, Mode::Code | Mode::LineComment);
        self.line_starts_stmt && self.stmt_start && top_level
    }

    /// The [`Rules::verdict`] on the pending line `pend + part`, without copying a long `part`.
    fn judge(&mut self, part: &[u8], complete: bool, statements: bool) -> Option<Disp> {
        if self.pend.is_empty() {
            return self.rules.verdict(part, complete, statements);
        }
        if self.pend.len() + part.len() > LINE_CAP {
            let mut head = [0; LONG_HEAD];
            let n = head
                .iter_mut()
                .zip(self.pend.iter().chain(part))
                .map(|(slot, &b)| *slot = b)
                .count();
            return Some(self.rules.long_verdict(&head[..n]));
        }
        let len = self.pend.len();
        self.pend.extend_from_slice(part);
        let verdict = self.rules.verdict(&self.pend, complete, statements);
        self.pend.truncate(len);
        verdict
    }
}

/// Cleans a whole buffer at once (tests, small inputs).
pub fn clean(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut cleaner = Cleaner::new();
    cleaner.feed(input, &mut out);
    cleaner.finish(&mut out);
    out
}

/// The first byte of `run` that top-level code must look at, or `run.len()`. DDL lines are
/// mostly plain bytes, so eight are tested at once (SWAR: a byte of `word ^ repeat(c)` is zero
/// where `word` holds `c`; the lowest flagged byte of each test is exact).
fn find_special(run: &[u8]) -> usize {
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
fn seek1(hay: &[u8], a: u8, newline: bool) -> Option<usize> {
    if newline {
        memchr2(a, b'\n', hay)
    } else {
        memchr(a, hay)
    }
}

/// Next `a` or `b` (or `\n` when line ends matter).
fn seek2(hay: &[u8], a: u8, b: u8, newline: bool) -> Option<usize> {
    if newline {
        memchr3(a, b, b'\n', hay)
    } else {
        memchr2(a, b, hay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cleans `input` whole, split at every boundary, and byte by byte; all must agree.
    fn cleaned(input: &str) -> String {
        let input = input.as_bytes();
        let whole = clean(input);
        // Fewer splits of very long inputs, to keep the unoptimised test build quick.
        let splits = if input.len() > 50_000 { 100 } else { 3000 };
        let step = (input.len() / splits).max(1);
        for cut in (0..=input.len()).step_by(step) {
            let mut out = Vec::new();
            let mut cleaner = Cleaner::new();
            cleaner.feed(&input[..cut], &mut out);
            cleaner.feed(&input[cut..], &mut out);
            cleaner.finish(&mut out);
            assert_eq!(out, whole, "split at {cut}");
        }
        let mut out = Vec::new();
        let mut cleaner = Cleaner::default();
        for b in input.chunks(1) {
            cleaner.feed(b, &mut out);
        }
        cleaner.finish(&mut out);
        assert_eq!(out, whole, "byte by byte");
        String::from_utf8(whole).unwrap()
    }

    /// Asserts that exactly the lines marked `#drop ` in `marked` are removed.
    fn check(marked: &str) {
        let input = marked.replace("#drop ", "");
        let expected: String = marked
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("#drop "))
            .collect();
        assert_eq!(cleaned(&input), expected);
    }

    #[test]
    fn pg_dump_header_and_footer() {
        let dump = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\n\
            -- Dumped from database version 17.6\n-- Dumped by pg_dump version 17.6\n\n\
            SET statement_timeout = 0;\nSET lock_timeout = 0;\n\
            SET idle_in_transaction_session_timeout = 0;\nSET transaction_timeout = 0;\n\
            SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n\
            SELECT pg_catalog.set_config('search_path', '', false);\n\
            SET check_function_bodies = false;\nSET xmloption = content;\n\
            SET client_min_messages = warning;\nSET row_security = off;\n\n\
            --\n-- Name: public; Type: SCHEMA; Schema: -; Owner: -\n--\n\nCREATE SCHEMA public;\n\n\
            COMMENT ON SCHEMA public IS 'standard public schema';\n\n\
            SET default_tablespace = '';\n\nSET default_with_oids = false;\n\n\
            SET default_table_access_method = heap;\n\n\
            --\n-- Name: t; Type: TABLE; Schema: public; Owner: postgres\n--\n\n\
            CREATE TABLE public.t (\n    a integer NOT NULL,\n    b text\n);\n\n\n\
            ALTER TABLE public.t OWNER TO postgres;\n\n\
            --\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: postgres\n--\n\n\
            COPY public.t (a, b) FROM stdin;\n1\thello\n\\.\n\n\n\
            --\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n";
        let expected = "SET check_function_bodies = false;\nCREATE TABLE public.t (\n    \
            a integer NOT NULL,\n    b text\n);\nALTER TABLE public.t OWNER TO postgres;\n\
            COPY public.t (a, b) FROM stdin;\n1\thello\n\\.\n";
        assert_eq!(cleaned(dump), expected);
    }

    #[test]
    fn dollar_quoted_bodies_are_kept() {
        check(
            "CREATE FUNCTION public.f() RETURNS text\n    LANGUAGE plpgsql\n    AS $$\nBEGIN\n\n\
             -- a comment line\nSET statement_timeout = 0;\n\\restrict not_meta\n  \
             RETURN $a$x$a$ || 'it''s';\n\t\nEND\n$$;\n#drop \n\
             CREATE FUNCTION public.g(integer) RETURNS integer\n    LANGUAGE sql\n    AS $_$\n\n\
             SELECT $1 + 1;\n--\n\\.\n$_$;\n#drop -- Name: h\n\
             CREATE FUNCTION public.h() RETURNS void\n    LANGUAGE plpgsql AS $body_1$\nBEGIN\n\
             -- $$ is text here, and so is $body_$\n   PERFORM 1;\n\nEND\n$body_1$;\n\
             SELECT $a$ $$ \n\n-- still quoted, 'quote\n$a$;\n#drop \n\
             #drop SET statement_timeout = 0;\n\
             SELECT $é$\n\n$é$, $1, $$$$, x$y$;\n#drop -- the last one was no quote\n",
        );
    }

    /// The tag pg_dump gives a body that holds `len - 1` bytes of its own tag sequence
    /// (`$_XXXXXXX_XXX…`), without the dollars: `len` bytes.
    fn pg_dump_tag(len: usize) -> String {
        "_XXXXXXX".chars().cycle().take(len).collect()
    }

    /// Regression: tags were remembered up to 64 bytes and past that any tag byte matched,
    /// so a look-alike tag of the same length in the body closed it early, and the lines
    /// after it were cleaned as top-level code (then the real closing tag opened a quote
    /// that never ended, keeping `\unrestrict`).
    #[test]
    fn long_dollar_tag_lookalike_does_not_close_body() {
        for len in [65, 100, 1000] {
            let tag = pg_dump_tag(len);
            let mut lookalike = tag.clone();
            lookalike.replace_range(len - 1.., "Y");
            check(&format!(
                "CREATE FUNCTION public.f() RETURNS text\n    LANGUAGE plpgsql\n    AS ${tag}$\n\
                 BEGIN\n  PERFORM '${lookalike}$ ${}';\n\n-- not a comment: in a string\n\
                 SET lock_timeout = 0;\n\\restrict k';\n  RETURN 1;\nEND\n${tag}$;\n#drop \n\
                 #drop SET lock_timeout = 0;\n#drop \\unrestrict k\n",
                &tag[..len - 1]
            ));
        }
    }

    /// A tag longer than the cleaner remembers is never closed by a look-alike: from there on
    /// the dump is kept as it is, whatever the chunks.
    #[test]
    fn overlong_dollar_tag_keeps_the_rest_of_the_dump() {
        let tag = pg_dump_tag(MAX_TAG + 1);
        let lookalike = format!("{}Y", &tag[..MAX_TAG]);
        check(&format!(
            "#drop SET lock_timeout = 0;\nSELECT ${tag}$ ${lookalike}$\n\n-- kept\n${tag}$;\n\n\
             -- kept too\nSET lock_timeout = 0;\n\\unrestrict k\n"
        ));
        let at_limit = pg_dump_tag(MAX_TAG);
        check(&format!(
            "SELECT ${at_limit}$\n\n${at_limit}$;\n#drop \n#drop SET lock_timeout = 0;\n"
        ));
    }

    #[test]
    fn string_literals_and_quoted_identifiers_are_kept() {
        check(
            "COMMENT ON TABLE public.t IS 'First line\n\n-- not a comment\n\
             SET statement_timeout = 0;\nit''s\n\\restrict x';\n#drop \n\
             CREATE VIEW public.v AS\n SELECT 'a\n\nb'::text AS c;\n\
             INSERT INTO public.t VALUES (1, E'it\\'s \\\\\n-- still string\n\n');\n\
             INSERT INTO public.t VALUES (2, e'\\\\', 'ok');\n#drop -- top\n\
             SELECT 'a\\' AS plain;\n#drop -- top again\n\
             SELECT xE'a\\' AS not_escaped;\n#drop --\n\
             CREATE TABLE public.\"we'ird--$$\n\nname\" (\n    \"x\"\"\n\" integer\n);\n\
             #drop --\n",
        );
    }

    #[test]
    fn copy_data_is_kept_verbatim() {
        check(
            "COPY public.t (a, b) FROM stdin;\n1\t\n\n--x\n   \nSET statement_timeout = 0;\n\
             \\\\N\n\\N\n\\.x\n\\\\.\n\\.\n#drop \n#drop -- after\n#drop SET lock_timeout = 0;\n\
             COPY public.\"odd\nname\" (a) FROM stdin;\n\n\\.\n#drop \n\
             SELECT 1\nCOPY public.t (a) FROM stdin;\n#drop \n#drop -- not data: no statement start\n\
             COPY public.t (a) FROM stdin;\n\\.\n",
        );
    }

    #[test]
    fn column_inserts_are_kept() {
        check(
            "INSERT INTO public.t (a, b) VALUES (1, '');\n\
             INSERT INTO public.t (a, b) VALUES (2, '\n');\n\
             INSERT INTO public.t (a, b) VALUES (3, '-- not a comment\n\
             SET statement_timeout = 0;\n\n');\n\
             INSERT INTO public.t (a, b) VALUES (4, '--');\n#drop \n",
        );
    }

    #[test]
    fn psql_meta_commands_are_dropped() {
        check(
            "#drop \\restrict k3y\n#drop \\connect -reuse-previous=on \"dbname='x'\"\n\
             SELECT 1;\n#drop \\.\n#drop \\unrestrict k3y\n",
        );
    }

    const TRIGGERS: &str = "\
#drop CREATE TRIGGER notify_hasura_ev_INSERT AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_ev_INSERT();
#drop CREATE TRIGGER \"notify_hasura_ev_UPDATE\" AFTER UPDATE ON \"public\".\"t\" FOR EACH ROW EXECUTE PROCEDURE \"hdb_catalog\".\"notify_hasura_ev_UPDATE\"();
CREATE TRIGGER notify_hasura_ev_INSERT AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.notify_hasura_ev_INSERT();
CREATE TRIGGER notify_hasura_ev_INSERT AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_ev_INSERT;
CREATE TRIGGER notify_hasura AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura();
CREATE TRIGGER notify_hasura_ev AFTER INSERT OR UPDATE ON public.t FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_ev();
 CREATE TRIGGER notify_hasura_ev AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_ev();
CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$
CREATE TRIGGER notify_hasura_ev AFTER INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_ev();
$$;
";

    #[test]
    fn hasura_event_triggers_are_dropped() {
        check(TRIGGERS);
    }

    /// Regression: Hasura's pattern matched text inside a trigger's `WHEN (…)` string (or a
    /// quoted name, or a second statement on the line), and rule 4 dropped a trigger that
    /// calls no Hasura function. The rule now reads the statement with those masked.
    #[test]
    fn hasura_pattern_in_a_when_literal_keeps_the_trigger() {
        check(
            "CREATE TRIGGER notify_hasura_audit AFTER INSERT ON public.t FOR EACH ROW \
             WHEN ((new.a <> ' FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x'::text)) \
             EXECUTE FUNCTION public.audit();\n\
             CREATE TRIGGER notify_hasura_audit AFTER INSERT ON public.t FOR EACH ROW \
             WHEN ((new.a <> E'\\' FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x')) \
             EXECUTE FUNCTION public.audit();\n\
             CREATE TRIGGER notify_hasura_audit AFTER INSERT ON public.t FOR EACH ROW \
             WHEN ((new.a <> $q$ FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x$q$)) \
             EXECUTE FUNCTION public.audit();\n\
             CREATE TRIGGER notify_hasura_audit AFTER INSERT ON public.\"t FOR EACH ROW EXECUTE \
             FUNCTION hdb_catalog.notify_hasura_x\" FOR EACH ROW EXECUTE FUNCTION public.audit();\n\
             CREATE TRIGGER notify_hasura_audit AFTER INSERT ON public.t /* FOR EACH ROW EXECUTE \
             FUNCTION hdb_catalog.notify_hasura_x */ FOR EACH ROW EXECUTE FUNCTION public.audit();\n\
             CREATE TRIGGER notify_hasura_a AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION \
             public.audit(); CREATE TRIGGER notify_hasura_b AFTER INSERT ON t FOR EACH ROW \
             EXECUTE FUNCTION hdb_catalog.notify_hasura_b();\n\
             CREATE TRIGGER \"notify_hasura_x\" AFTER INSERT ON public.\"t; it's\" FOR EACH ROW \
             EXECUTE FUNCTION \"hdb_catalog.notify_hasura_x\"();\n\
             #drop CREATE TRIGGER \"notify_hasura_it's_INSERT\" AFTER INSERT ON public.\"t'; x\" \
             FOR EACH ROW EXECUTE FUNCTION \"hdb_catalog\".\"notify_hasura_it's_INSERT\"();\n\
             #drop CREATE TRIGGER notify_hasura_e AFTER DELETE ON public.\"a\"\"b\" FOR EACH ROW \
             EXECUTE PROCEDURE hdb_catalog.notify_hasura_e();\n",
        );
    }

    /// Regression: a Hasura trigger on a table whose name holds a newline is one statement
    /// on two lines, and its first line matches rule 4's pattern; removing that line alone
    /// left the second half of the statement behind, as broken SQL. Rules 3 and 4 now remove
    /// a line only when it is whole statements.
    #[test]
    fn trigger_on_a_table_named_with_a_newline_is_kept_whole() {
        check(
            "CREATE TRIGGER notify_hasura_a AFTER INSERT ON public.\"x AFTER INSERT ON t \
             FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x();\n\
             SET lock_timeout = 0;\n\
             \" FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_a();\n\
             CREATE TRIGGER notify_hasura_b AFTER INSERT ON t -- FOR EACH ROW EXECUTE \
             FUNCTION hdb_catalog.notify_hasura_b();\n\
             FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_b();\n\
             #drop CREATE TRIGGER notify_hasura_c AFTER INSERT ON t FOR EACH ROW \
             EXECUTE FUNCTION hdb_catalog.notify_hasura_c();\n",
        );
        // A function's SET clause on a line of its own ends the statement but is not one.
        check(
            "CREATE FUNCTION public.f() RETURNS integer LANGUAGE sql AS 'SELECT 1'\n\
             SET lock_timeout = 0;\n#drop SET lock_timeout = 0;\n\
             SELECT 1\nCREATE SCHEMA public;\n#drop CREATE SCHEMA public;\n\
             SELECT 1;\nSELECT 2\nSET lock_timeout = 0;\n",
        );
    }

    /// Regression: pg_dump changes `default_tablespace` and `default_table_access_method`
    /// before objects that need another value and sets them back after; rule 3 dropped the
    /// resets, so every later table landed in the last tablespace or access method named.
    #[test]
    fn setting_reset_after_a_kept_change_is_kept() {
        check(
            "#drop SET default_tablespace = '';\n#drop SET default_table_access_method = heap;\n\
             CREATE TABLE public.plain (a integer);\n\
             SET default_tablespace = ts1;\nCREATE TABLE public.fast (a integer);\n\
             SET default_table_access_method = heap2;\nCREATE TABLE public.other (a integer);\n\
             SET default_tablespace = '';\n#drop SET default_tablespace = '';\n\
             SET default_table_access_method = heap;\nCREATE TABLE public.again (a integer);\n\
             #drop SET default_table_access_method = heap;\n\
             SET default_tablespace = \"odd ts\";\n#drop \n#drop -- x\n\
             SET default_tablespace = '';\r\n#drop SET default_tablespace = '';\r\n\
             SET default_with_oids = true;\nSET default_with_oids = false;\n\
             #drop SET default_with_oids = false;\n\
             SET search_path = public, pg_catalog;\n\
             SELECT pg_catalog.set_config('search_path', '', false);\n\
             #drop SELECT pg_catalog.set_config('search_path', '', false);\n\
             SELECT pg_catalog.set_config('search_path', 'public', false);\n\
             SELECT pg_catalog.set_config('search_path', '', false);\n\
             SET statement_timeout = 5;\nSET statement_timeout = 0;\n\
             #drop SET statement_timeout = 0;\n\
             SET SESSION lock_timeout TO 5;\nSET lock_timeout = 0;\n\
             #drop SET lock_timeout = 0;\n",
        );
        // Not changes: longer names, the setting in a function's SET clause, text in a body.
        check(
            "SET default_tablespace_x = ts1;\nSET lock_timeoutx = 5;\n\
             #drop SET default_tablespace = '';\n#drop SET lock_timeout = 0;\n\
             CREATE FUNCTION public.f() RETURNS integer LANGUAGE sql\n    \
             SET default_tablespace TO 'ts1'\n    AS $$\nSET default_tablespace = ts1;\n$$;\n\
             #drop SET default_tablespace = '';\n",
        );
        // A change longer than the cleaner holds counts too, however the chunks fall.
        check(&format!(
            "SET search_path = {}pg_catalog;\n\
             SELECT pg_catalog.set_config('search_path', '', false);\n\
             #drop SELECT pg_catalog.set_config('search_path', '', false);\n",
            "app, ".repeat(LINE_CAP / 4)
        ));
        // A reset that is not a whole statement neither drops nor restores.
        check(
            "SET default_tablespace = ts1;\nSELECT 1\nSET default_tablespace = '';\n\
             SELECT 1;\nSET default_tablespace = '';\n#drop SET default_tablespace = '';\n",
        );
    }

    #[test]
    fn crlf_lines_match_and_keep_their_cr() {
        let input = "--\r\nSET statement_timeout = 0;\r\n\r\nCREATE TABLE t (a int);\r\n\
            COPY public.t (a) FROM stdin;\r\n\r\n1\r\n\\.\r\nSET lock_timeout = 0;\r\n\
            CREATE TRIGGER notify_hasura_e_DELETE AFTER DELETE ON t FOR EACH ROW \
            EXECUTE FUNCTION hdb_catalog.notify_hasura_e_DELETE();\r\nSELECT 1;\r";
        let expected = "CREATE TABLE t (a int);\r\nCOPY public.t (a) FROM stdin;\r\n\r\n1\r\n\
            \\.\r\nSELECT 1;\r\n";
        assert_eq!(cleaned(input), expected);
    }

    #[test]
    fn last_line_gets_a_newline() {
        assert_eq!(cleaned(""), "");
        assert_eq!(cleaned("SELECT 1;"), "SELECT 1;\n");
        assert_eq!(cleaned("SELECT 1;\n-- end"), "SELECT 1;\n");
        assert_eq!(cleaned("SELECT 1;\n  \t"), "SELECT 1;\n");
        assert_eq!(cleaned("SELECT 'a\n"), "SELECT 'a\n");
        assert_eq!(
            cleaned("COPY t (a) FROM stdin;\n1\n\\."),
            "COPY t (a) FROM stdin;\n1\n\\.\n"
        );
    }

    #[test]
    fn nested_block_comments() {
        check(
            "/* it's\n   a /* nested\n\n   'comment */ still\n-- inside\n*/ SELECT 1;\n#drop \n\
             /**/\nSELECT '/*';\n#drop -- gone\nSELECT 1 /* a */ / 2 - 3; /*/ */\n#drop \n",
        );
    }

    #[test]
    fn long_lines() {
        let blank = " ".repeat(LINE_CAP + 1);
        let long_set = format!("SET x = '{}';", "y".repeat(LINE_CAP));
        let cols: Vec<String> = (0..600).map(|i| format!("column_{i}")).collect();
        check(&format!(
            "{blank}\n#drop --{blank}\n#drop \\{blank}\n{long_set}\n\
             COPY public.t ({}) FROM stdin;\n\n--\n\\.\n#drop \n",
            cols.join(", ")
        ));
    }

    #[test]
    fn invalid_utf8_and_odd_bytes() {
        let input: Vec<u8> = (0..=255u8)
            .chain(b"\n--\n\xff'\n\n'\n".iter().copied())
            .collect();
        let out = clean(&input);
        assert!(out.ends_with(b"\xff'\n\n'\n"));
        for cut in 0..input.len() {
            let mut split = Vec::new();
            let mut cleaner = Cleaner::new();
            cleaner.feed(&input[..cut], &mut split);
            cleaner.feed(&input[cut..], &mut split);
            cleaner.finish(&mut split);
            assert_eq!(split, out);
        }
    }

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
