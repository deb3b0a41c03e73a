//! The lexer of `clean_output`: a streaming mode machine over pg_dump's plain output that
//! follows strings, `E''` strings, quoted identifiers, dollar quotes, comments and COPY data,
//! and so says where top-level statements and lines begin and end. It reports the `\n`s the
//! [`super::Cleaner`] must see and whether a statement has just ended; which lines go is
//! `rules`' business, and holding bytes across chunks the wrapper's. Pure: no I/O.
//!
//! The small functions on the hot path, here and in `bytes`, are `#[inline]`: this file, its
//! siblings and the wrapper land in different codegen units, and without the hint `step` and
//! its helpers became calls, costing ~2% more instructions than the one-file cleaner did.

use memchr::{memchr, memmem};

use super::bytes::{find_special, is_ident, is_plain, is_tag_byte, seek1, seek2};

/// Dollar-quote tags are remembered whole, up to this length, and matched exactly. pg_dump's
/// tags are `$$`, `$_$`, `$_X$`…, longer only when the body holds the shorter ones, so a
/// longer tag is made on purpose: after one the cleaner can no longer tell where the body
/// ends, and keeps the rest of the dump as it is ([`Mode::Verbatim`]) rather than guess.
pub(super) const MAX_TAG: usize = 64 * 1024;

/// The tag buffer's capacity kept between dollar quotes; a longer tag's is given back.
const TAG_CAPACITY: usize = 64;

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
pub(super) struct Edge {
    head: [u8; 5],
    head_len: usize,
    tail: [u8; 13],
    tail_len: usize,
}

impl Edge {
    #[inline]
    pub(super) fn push(&mut self, bytes: &[u8]) {
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

    #[inline]
    pub(super) fn starts_copy(&self) -> bool {
        &self.head[..self.head_len] == b"COPY "
    }

    #[inline]
    pub(super) fn is_copy_from_stdin(&self) -> bool {
        let tail = &self.tail[..self.tail_len];
        let tail = tail.strip_suffix(b"\r").unwrap_or(tail);
        self.starts_copy() && tail.ends_with(b" FROM stdin;")
    }
}

/// The mode machine. Memory: the tag of the current dollar quote (64 bytes, more only while
/// a longer tag is open, at most [`MAX_TAG`]) and the prebuilt `\.` searcher.
#[derive(Clone, Debug)]
pub(super) struct Lexer {
    mode: Mode,
    /// No code since the last top-level `;`: only a line starting here may open COPY.
    stmt_start: bool,
    /// The last two bytes of earlier chunks, for the look-behind of `E'` and `$`.
    last: [u8; 2],
    /// The tag of the dollar quote being opened or scanned, without its dollars.
    tag: Vec<u8>,
    /// Built once: a `\.` line can only follow a `\n`.
    copy_end: memmem::Finder<'static>,
}

impl Lexer {
    /// A lexer at the start of a dump.
    pub(super) fn new() -> Self {
        Self {
            mode: Mode::LineStart,
            stmt_start: true,
            last: [b'\n'; 2],
            tag: Vec::with_capacity(TAG_CAPACITY),
            copy_end: memmem::Finder::new(b"\n\\."),
        }
    }

    /// No code since the last top-level `;` (or the start, or the end of COPY data).
    #[inline]
    pub(super) fn stmt_start(&self) -> bool {
        self.stmt_start
    }

    /// In top-level code (not in a token, a comment, a quote or COPY data).
    #[inline]
    pub(super) fn in_code(&self) -> bool {
        self.mode == Mode::Code
    }

    /// At top level: in code, or in a `--` comment or meta-command running to its line's end.
    #[inline]
    pub(super) fn at_top_level(&self) -> bool {
        matches!(self.mode, Mode::Code | Mode::LineComment)
    }

    /// After a `\n` in top-level code: the next byte begins a top-level line.
    #[inline]
    pub(super) fn start_line(&mut self) {
        debug_assert!(self.in_code());
        self.mode = Mode::LineStart;
    }

    /// After the `\n` of a `COPY … FROM stdin;` line: COPY data follows.
    #[inline]
    pub(super) fn start_copy(&mut self) {
        self.mode = Mode::Copy(1);
    }

    /// Remembers the end of a chunk for the next one's look-behind.
    #[inline]
    pub(super) fn remember_tail(&mut self, input: &[u8]) {
        match *input {
            [] => {}
            [b] => self.last = [self.last[1], b],
            [.., a, b] => self.last = [a, b],
        }
    }

    /// Advances from `pos` (< `input.len()`); returns the new position and whether it just
    /// consumed a `\n` the line logic must see: one after which a top-level line starts, or,
    /// when `watch` (the current line's fate or COPY status is open), any `\n`.
    #[inline]
    pub(super) fn step(&mut self, input: &[u8], pos: usize, watch: bool) -> (usize, bool) {
        let b = input[pos];
        match self.mode {
            Mode::LineStart => self.line_start(input, pos),
            Mode::Code => self.code(input, pos),
            Mode::Dash => self.second_of_two(b, pos, b'-', Mode::LineComment),
            Mode::Slash => self.second_of_two(b, pos, b'*', Mode::Block(1)),
            Mode::LineComment => self.line_comment(input, pos),
            Mode::Block(depth) => self.block(input, pos, depth, watch),
            Mode::BlockStar(depth) => self.block_star(b, pos, depth),
            Mode::BlockSlash(depth) => self.block_slash(b, pos, depth),
            Mode::Str => self.quoted(input, pos, b'\'', watch),
            Mode::Ident => self.quoted(input, pos, b'"', watch),
            Mode::EStr => self.e_string(input, pos, watch),
            Mode::EStrEscape => {
                self.mode = Mode::EStr;
                (pos + 1, b == b'\n' && watch)
            }
            Mode::EStrQuote => self.e_string_quote(b, pos),
            Mode::DollarOpen => self.dollar_open(input, pos),
            Mode::Dollar => self.dollar_body(input, pos, watch),
            Mode::DollarClose(seen) => self.dollar_close(input, pos, seen),
            Mode::Copy(seen) => self.copy(input, pos, seen),
            Mode::Verbatim => (input.len(), false),
        }
    }

    fn line_start(&mut self, input: &[u8], pos: usize) -> (usize, bool) {
        // psql reads a line starting with a backslash as a meta-command, not SQL.
        if input[pos] == b'\\' {
            self.mode = Mode::LineComment;
            return (pos + 1, false);
        }
        self.mode = Mode::Code;
        self.code(input, pos)
    }

    /// Top-level code: runs of plain bytes go through the class table in a tight loop.
    fn code(&mut self, input: &[u8], mut start: usize) -> (usize, bool) {
        let (b, pos) = loop {
            let run = &input[start..];
            let n = find_special(run);
            // Only whitespace keeps a statement at its start; usually the first byte settles it.
            if self.stmt_start && run[..n].iter().any(|&b| is_plain(b)) {
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
            _ => self.open_token(input, b, pos - 1),
        }
        (pos, false)
    }

    /// A quote, a quoted identifier or a dollar at `at` in top-level code.
    fn open_token(&mut self, input: &[u8], b: u8, at: usize) {
        self.stmt_start = false;
        match b {
            b'\'' => {
                let e = self.byte_before(input, at, 1);
                let escapes = matches!(e, b'E' | b'e') && !is_ident(self.byte_before(input, at, 2));
                self.mode = if escapes { Mode::EStr } else { Mode::Str };
            }
            b'"' => self.mode = Mode::Ident,
            // In `a$b$` the `$` continues an identifier.
            _ if is_ident(self.byte_before(input, at, 1)) => {}
            _ => {
                self.tag.clear();
                self.tag.shrink_to(TAG_CAPACITY);
                self.mode = Mode::DollarOpen;
            }
        }
    }

    /// After a `-` or `/`: the `second` byte makes a comment that goes on in mode `then`.
    fn second_of_two(&mut self, b: u8, pos: usize, second: u8, then: Mode) -> (usize, bool) {
        if b == second {
            self.mode = then;
            return (pos + 1, false);
        }
        // A lone `-` or `/` is an operator: code.
        self.stmt_start = false;
        self.mode = Mode::Code;
        (pos, false)
    }

    fn line_comment(&mut self, input: &[u8], pos: usize) -> (usize, bool) {
        match memchr(b'\n', &input[pos..]) {
            Some(i) => {
                self.mode = Mode::Code;
                (pos + i + 1, true)
            }
            None => (input.len(), false),
        }
    }

    fn block(&mut self, input: &[u8], pos: usize, depth: u32, watch: bool) -> (usize, bool) {
        let Some(i) = seek2(&input[pos..], b'*', b'/', watch) else {
            return (input.len(), false);
        };
        self.mode = match input[pos + i] {
            b'\n' => return (pos + i + 1, true),
            b'*' => Mode::BlockStar(depth),
            _ => Mode::BlockSlash(depth),
        };
        (pos + i + 1, false)
    }

    fn block_star(&mut self, b: u8, pos: usize, depth: u32) -> (usize, bool) {
        if b != b'/' {
            self.mode = Mode::Block(depth);
            return (pos, false);
        }
        self.mode = if depth <= 1 {
            Mode::Code
        } else {
            Mode::Block(depth - 1)
        };
        (pos + 1, false)
    }

    /// PostgreSQL nests block comments (as the SQL standard says): `/*` opens another level.
    fn block_slash(&mut self, b: u8, pos: usize, depth: u32) -> (usize, bool) {
        if b != b'*' {
            self.mode = Mode::Block(depth);
            return (pos, false);
        }
        self.mode = Mode::Block(depth.saturating_add(1));
        (pos + 1, false)
    }

    /// A plain string or quoted identifier. A doubled quote is handled as a close and an
    /// immediate reopen, which ends in the same state, so they need no look-ahead.
    fn quoted(&mut self, input: &[u8], pos: usize, quote: u8, watch: bool) -> (usize, bool) {
        match seek1(&input[pos..], quote, watch) {
            Some(i) if input[pos + i] == b'\n' => (pos + i + 1, true),
            Some(i) => {
                self.mode = Mode::Code;
                (pos + i + 1, false)
            }
            None => (input.len(), false),
        }
    }

    fn e_string(&mut self, input: &[u8], pos: usize, watch: bool) -> (usize, bool) {
        let Some(i) = seek2(&input[pos..], b'\'', b'\\', watch) else {
            return (input.len(), false);
        };
        self.mode = match input[pos + i] {
            b'\n' => return (pos + i + 1, true),
            b'\\' => Mode::EStrEscape,
            _ => Mode::EStrQuote,
        };
        (pos + i + 1, false)
    }

    /// After a quote in an `E''` string: unlike in a plain string, `''` must not reopen as a
    /// plain string here.
    fn e_string_quote(&mut self, b: u8, pos: usize) -> (usize, bool) {
        if b == b'\'' {
            self.mode = Mode::EStr;
            return (pos + 1, false);
        }
        self.mode = Mode::Code;
        (pos, false)
    }

    /// The tag after an opening `$`; its bytes are taken as one run (a tag is usually whole
    /// in the chunk).
    #[inline]
    fn dollar_open(&mut self, input: &[u8], pos: usize) -> (usize, bool) {
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

    fn dollar_body(&mut self, input: &[u8], pos: usize, watch: bool) -> (usize, bool) {
        match seek1(&input[pos..], b'$', watch) {
            Some(i) if input[pos + i] == b'\n' => (pos + i + 1, true),
            Some(i) => {
                self.mode = Mode::DollarClose(0);
                (pos + i + 1, false)
            }
            None => (input.len(), false),
        }
    }

    /// After a `$` in the body, `seen` bytes of the tag matched: the rest of the tag must
    /// follow exactly, then a `$`.
    fn dollar_close(&mut self, input: &[u8], pos: usize, seen: usize) -> (usize, bool) {
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

    /// COPY data is kept verbatim; only a line equal to `\.` matters, so whole blocks are
    /// skipped with one substring search.
    #[inline]
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
}
