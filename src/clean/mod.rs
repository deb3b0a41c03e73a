//! The SQL-aware filter behind `clean_output` (SPEC §6). A streaming scanner follows the
//! lexical structure of pg_dump's plain output — strings, `E''` strings, quoted identifiers,
//! dollar quotes, comments and COPY data — so that it can drop the top-level lines a non-psql
//! client cannot or need not run (blank and `--` lines, session `SET`s, Hasura event triggers,
//! psql meta-commands) without ever touching function bodies, literals or table data.
//! Pure bytes in, bytes out: no I/O here.
//!
//! This file holds the streaming wrapper, [`Cleaner`] (and [`clean`] for a whole buffer): it
//! feeds chunks to the lexer, holds the prefix of a top-level line whose fate is still open,
//! and copies kept lines out in runs. `lex` is the mode machine that says where top-level
//! statements and lines begin and end, `rules` decides the fate of each top-level line,
//! and `bytes` has the byte classes and searches both use.

mod bytes;
mod lex;
mod rules;
#[cfg(test)]
mod tests;

use lex::{Edge, Lexer};
use rules::{Disp, Rules, LINE_CAP, LONG_HEAD};

/// Streaming, SQL-aware filter for pg_dump plain output (SPEC §6).
///
/// Memory does not grow with the input: the struct itself (under 512 bytes, mostly the
/// prebuilt `\.` searcher) plus one 4 KiB buffer, allocated by `new`, for the prefix of an
/// undecided top-level line, and the tag of the current dollar quote (64 bytes, more only
/// while a longer tag is open, at most 64 KiB). Each `feed` appends at most
/// `input.len()` + 4 KiB to `out`.
#[derive(Clone, Debug)]
pub struct Cleaner {
    lex: Lexer,
    disp: Disp,
    /// The lexer's `stmt_start` as it was when the current line began: rules 3 and 4 remove
    /// a line only when it is whole statements, not the start, middle or end of one.
    line_starts_stmt: bool,
    /// The current line belongs to a statement that may be `COPY … FROM stdin;`, so its end
    /// must be seen and its edges recorded.
    copy_line: bool,
    /// The input so far ends inside a line.
    line_open: bool,
    pend: Vec<u8>,
    edge: Edge,
    rules: Rules,
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
            lex: Lexer::new(),
            disp: Disp::Pending,
            line_starts_stmt: true,
            copy_line: true,
            line_open: false,
            pend: Vec::with_capacity(LINE_CAP),
            edge: Edge::default(),
            rules: Rules::default(),
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
            let watch = self.disp != Disp::Keep || self.copy_line;
            let (next, line_end) = self.lex.step(input, pos, watch);
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
        self.lex.remember_tail(input);
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

    /// `line` is the current line's bytes in this chunk, through its `\n`. Returns whether
    /// they are kept; the caller copies them, after the held prefix this writes to `out`.
    fn end_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> bool {
        let text = &line[..line.len() - 1];
        let statements = self.line_is_statements();
        if self.copy_line {
            self.edge.push(text);
            if self.lex.in_code() && self.lex.stmt_start() && self.edge.is_copy_from_stdin() {
                self.lex.start_copy();
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
        let continues = self.copy_line && !self.lex.stmt_start() && self.edge.starts_copy();
        if !continues {
            self.edge = Edge::default();
        }
        if self.lex.in_code() {
            self.lex.start_line();
            self.disp = Disp::Pending;
            self.copy_line = continues || self.lex.stmt_start();
            self.line_starts_stmt = self.lex.stmt_start();
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
        self.line_starts_stmt && self.lex.stmt_start() && self.lex.at_top_level()
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
