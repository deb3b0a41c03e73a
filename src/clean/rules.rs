//! Which top-level lines `clean_output` removes (SPEC §6, rules 1–5), given a line the
//! scanner found at top level: the lists of rule 3, the session settings pg_dump changes and
//! sets back mid-dump, and Hasura's trigger pattern (rule 4) read SQL-aware. Pure: no I/O and
//! no knowledge of chunks.

use memchr::{memchr_iter, memmem};

use super::bytes::{is_ident, is_space, is_tag_byte};

/// An undecided top-level line longer than this is kept. Every line dropped for its content
/// is far shorter (Hasura's identifiers are ≤ 63 bytes), so only absurd whitespace-only lines
/// are affected, and this bounds the memory of a [`super::Cleaner`].
pub(super) const LINE_CAP: usize = 4096;

/// How many of its first bytes decide a line longer than [`LINE_CAP`].
pub(super) const LONG_HEAD: usize = 128;

/// A line of rule 3, and the session setting it gives the value a new session has (empty
/// for the two that are not settings).
struct Dropped {
    line: &'static [u8],
    setting: &'static [u8],
}

/// Rule 3: lines dropped when equal to one of these (ignoring a trailing `\r`) and whole
/// statements, not part of a longer one. pg_dump also writes some of them mid-dump, to put a
/// setting back after objects that needed another value (`SET default_tablespace = ts1;` …
/// `SET default_tablespace = '';`): such a line is kept while a kept line has changed its
/// setting, as dropping it would leave the change in force for the rest of the replay.
const DROPPED: [Dropped; 15] = [
    Dropped {
        line: b"SET statement_timeout = 0;",
        setting: b"statement_timeout",
    },
    Dropped {
        line: b"SET lock_timeout = 0;",
        setting: b"lock_timeout",
    },
    Dropped {
        line: b"SET idle_in_transaction_session_timeout = 0;",
        setting: b"idle_in_transaction_session_timeout",
    },
    Dropped {
        line: b"SET client_encoding = 'UTF8';",
        setting: b"client_encoding",
    },
    Dropped {
        line: b"SET standard_conforming_strings = on;",
        setting: b"standard_conforming_strings",
    },
    Dropped {
        line: b"SELECT pg_catalog.set_config('search_path', '', false);",
        setting: b"search_path",
    },
    Dropped {
        line: b"SET xmloption = content;",
        setting: b"xmloption",
    },
    Dropped {
        line: b"SET client_min_messages = warning;",
        setting: b"client_min_messages",
    },
    Dropped {
        line: b"SET row_security = off;",
        setting: b"row_security",
    },
    Dropped {
        line: b"SET default_tablespace = '';",
        setting: b"default_tablespace",
    },
    Dropped {
        line: b"SET default_with_oids = false;",
        setting: b"default_with_oids",
    },
    Dropped {
        line: b"SET default_table_access_method = heap;",
        setting: b"default_table_access_method",
    },
    Dropped {
        line: b"CREATE SCHEMA public;",
        setting: b"",
    },
    Dropped {
        line: b"COMMENT ON SCHEMA public IS 'standard public schema';",
        setting: b"",
    },
    Dropped {
        line: b"SET transaction_timeout = 0;",
        setting: b"transaction_timeout",
    },
];

/// How the lines that change a setting begin: `SET name …` and
/// `SELECT pg_catalog.set_config('name', …)`.
const SETS: [&[u8]; 2] = [b"SET ", b"SELECT pg_catalog.set_config('"];

/// The two ways a Hasura trigger line (rule 4) can begin.
const TRIGGER_HEADS: [&[u8]; 2] = [
    b"CREATE TRIGGER notify_hasura_",
    b"CREATE TRIGGER \"notify_hasura_",
];

/// What happens to the bytes of the current line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Disp {
    /// A top-level line that may still turn out to be dropped; its prefix is held.
    Pending,
    Keep,
    Drop,
}

/// The state rules 1–5 need beyond the line at hand: which of rule 3's settings a kept
/// line has changed since the setting last had its usual value.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Rules {
    /// Bit `i`: [`DROPPED`]`[i]`'s setting has been changed.
    changed: u16,
}

impl Rules {
    /// The fate of a top-level line (without its `\n`), or of its prefix when not `complete`;
    /// `None` while undecided. Rules 3 and 4 apply to a complete line that is whole
    /// `statements`. Called once per line with a verdict.
    pub(super) fn verdict(
        &mut self,
        line: &[u8],
        complete: bool,
        statements: bool,
    ) -> Option<Disp> {
        if marked(line) {
            return Some(Disp::Drop);
        }
        if line.len() > LINE_CAP {
            return Some(self.long_verdict(&line[..LONG_HEAD]));
        }
        // Dropped lines other than blank ones begin with one of these bytes: any other first
        // byte settles most lines at once.
        match line.first() {
            Some(b'S' | b'C' | b'-') | None => {}
            Some(&b) if is_space(b) => {
                let blank = line.iter().all(|&b| is_space(b));
                return match (blank, complete) {
                    (false, _) => Some(Disp::Keep),
                    (true, true) => Some(Disp::Drop),
                    (true, false) => None,
                };
            }
            Some(_) => return Some(Disp::Keep),
        }
        let blank = line.iter().all(|&b| is_space(b));
        let body = line.strip_suffix(b"\r").unwrap_or(line);
        if complete {
            let drop = blank
                || match DROPPED.iter().position(|d| d.line == body) {
                    Some(i) => statements && self.restores(i),
                    None => {
                        self.note_change(body);
                        statements && is_hasura_trigger_statement(body)
                    }
                };
            return Some(if drop { Disp::Drop } else { Disp::Keep });
        }
        // A line that may change a setting is read whole, whatever the chunks.
        let open = blank
            || line == b"-"
            || DROPPED.iter().any(|d| d.line.starts_with(body))
            || SETS.iter().any(|set| line.starts_with(set))
            || TRIGGER_HEADS.iter().any(|head| {
                let n = head.len().min(line.len());
                head[..n] == line[..n]
            });
        (!open).then_some(Disp::Keep)
    }

    /// The fate of a line longer than [`LINE_CAP`], from its first [`LONG_HEAD`] bytes: only
    /// rules 2 and 5 remove one, and a long `SET` still changes its setting.
    pub(super) fn long_verdict(&mut self, head: &[u8]) -> Disp {
        if marked(head) {
            return Disp::Drop;
        }
        self.note_change(head);
        Disp::Keep
    }

    /// Whether the statement `DROPPED[i]` is redundant, as its setting already has the value
    /// it gives; if not, it is kept and the setting has that value again.
    fn restores(&mut self, i: usize) -> bool {
        let bit = 1 << i;
        let redundant = self.changed & bit == 0;
        self.changed &= !bit;
        redundant
    }

    /// Records that a kept line changes one of rule 3's settings, the way pg_dump writes
    /// such lines ([`SETS`]).
    fn note_change(&mut self, line: &[u8]) {
        let (rest, set_config) = match line.strip_prefix(SETS[0]) {
            Some(rest) => (rest.strip_prefix(b"SESSION ").unwrap_or(rest), false),
            None => match line.strip_prefix(SETS[1]) {
                Some(rest) => (rest, true),
                None => return,
            },
        };
        let names = |d: &Dropped| {
            let after = rest.strip_prefix(d.setting)?;
            let ends = match after.first() {
                None => true,
                Some(&b) if set_config => b == b'\'',
                Some(&b) => !is_ident(b),
            };
            (ends && !d.setting.is_empty()).then_some(())
        };
        if let Some(i) = DROPPED.iter().position(|d| names(d).is_some()) {
            self.changed |= 1 << i;
        }
    }
}

/// Rules 2 and 5, decided by a line's first bytes whatever its length.
fn marked(line: &[u8]) -> bool {
    line.starts_with(b"--") || line.starts_with(b"\\")
}

/// Rule 4, SQL-aware: `line` is one statement and matches the pattern with the insides of
/// its literals, comments and quoted identifiers masked, so that text in a `WHEN (…)`
/// condition or a name cannot stand for the pattern's keywords.
fn is_hasura_trigger_statement(line: &[u8]) -> bool {
    if !TRIGGER_HEADS.iter().any(|head| line.starts_with(head)) {
        return false;
    }
    mask_statement(line).is_some_and(|masked| is_hasura_trigger(&masked))
}

/// Stands for a masked byte: in no keyword, name or punctuation of the pattern.
const MASK: u8 = b'#';

/// `line` (whole statements, top-level code at both ends) with the insides of its string
/// literals, dollar quotes and comments masked, and in quoted identifiers every byte that
/// cannot be in an unquoted name; `None` unless it is one statement, ending at its last byte.
fn mask_statement(line: &[u8]) -> Option<Vec<u8>> {
    let mut out = line.to_vec();
    let mut i = 0;
    while i < out.len() {
        let b = out[i];
        let next = out.get(i + 1).copied();
        match b {
            b';' if i + 1 < out.len() => return None,
            b'\'' => {
                let escapes =
                    i > 0 && matches!(out[i - 1], b'E' | b'e') && (i < 2 || !is_ident(out[i - 2]));
                i = mask_quoted(&mut out, i + 1, b'\'', escapes, |_| true);
            }
            b'"' => i = mask_quoted(&mut out, i + 1, b'"', false, |b| !is_ident(b) || b == b'$'),
            b'-' if next == Some(b'-') => {
                out[i..].fill(MASK);
                i = out.len();
            }
            b'/' if next == Some(b'*') => {
                // Nesting does not matter: the scanner found the line's end at top level.
                let end = memmem::find(&out[i + 2..], b"*/").map_or(out.len(), |e| i + 2 + e + 2);
                out[i..end].fill(MASK);
                i = end;
            }
            b'$' if i == 0 || !is_ident(out[i - 1]) => {
                let tag_len = out[i + 1..]
                    .iter()
                    .enumerate()
                    .take_while(|&(k, &b)| is_tag_byte(b, k == 0))
                    .count();
                let open = i + 1 + tag_len;
                if out.get(open) != Some(&b'$') {
                    i += 1;
                    continue;
                }
                let tag = out[i..=open].to_vec();
                let end = memmem::find(&out[open + 1..], &tag).map_or(out.len(), |e| open + 1 + e);
                out[open + 1..end].fill(MASK);
                i = end + tag.len();
            }
            _ => i += 1,
        }
    }
    Some(out)
}

/// Masks a quoted token's bytes from `from` (after its opening quote) for which `hidden`
/// holds, through its closing `quote` (a doubled quote, or with `escapes` a backslash, does
/// not close it); returns the position after the closing quote.
fn mask_quoted(
    out: &mut [u8],
    mut i: usize,
    quote: u8,
    escapes: bool,
    hidden: impl Fn(u8) -> bool,
) -> usize {
    while i < out.len() {
        let b = out[i];
        if escapes && b == b'\\' && i + 1 < out.len() {
            out[i..i + 2].fill(MASK);
            i += 2;
            continue;
        }
        if b == quote {
            if out.get(i + 1) != Some(&quote) {
                return i + 1;
            }
            out[i..i + 2].fill(MASK);
            i += 2;
            continue;
        }
        if hidden(b) {
            out[i] = MASK;
        }
        i += 1;
    }
    i
}

/// Rule 4 without a regex engine. In the SPEC pattern `.+"?` accepts what `.+` accepts, so
/// the language is `CREATE TRIGGER "?notify_hasura_.+ AFTER [[:alnum:]]+ ON .+ FOR EACH ROW
/// EXECUTE (FUNCTION|PROCEDURE) "?hdb_catalog"?\."?notify_hasura_.+\(\);`.
///
/// Why not `regex::bytes` with the SPEC pattern, which would be shorter: the prefix check
/// cannot skip the lines that matter (every Hasura trigger passes it), and on such a line
/// (~150 bytes) the regex takes ~2 µs with its lazy DFA (the `perf-dfa` feature) and ~60 µs
/// with the PikeVM alone (default features off), against ~60 ns here. A schema dump with a
/// trigger every ten tables (the `schema_dump` bench: ~4,500 per 100 MB) would lose about
/// a tenth of its speed with the DFA, and half without it, and the server would carry a
/// regex engine for one line. `trigger_matcher_agrees_with_regex` and
/// `trigger_statement_rule_is_the_spec_regex_on_the_masked_statement` hold this matcher to
/// the SPEC's regex.
fn is_hasura_trigger(line: &[u8]) -> bool {
    hasura_trigger(line).is_some()
}

fn hasura_trigger(line: &[u8]) -> Option<()> {
    let rest = line.strip_prefix(b"CREATE TRIGGER ")?;
    let rest = quote(rest)
        .strip_prefix(b"notify_hasura_")?
        .strip_suffix(b"();")?;
    let tail = &rest[after_clause_end(rest)?..];
    // Any occurrence may be the one (names may hold the words), given one byte before it.
    memchr_iter(b' ', tail)
        .filter(|&at| at > 0)
        .find_map(|at| calls_hdb_notify(tail[at..].strip_prefix(b" FOR EACH ROW EXECUTE ")?))
}

/// The end of the earliest ` AFTER <alnum>+ ON ` after at least one byte. The earliest such
/// clause also ends first, leaving the most room for the rest, so it is the only one to try.
fn after_clause_end(s: &[u8]) -> Option<usize> {
    memchr_iter(b' ', s).filter(|&at| at > 0).find_map(|at| {
        let event = s[at..].strip_prefix(b" AFTER ")?;
        let n = event
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let rest = event[n..].strip_prefix(b" ON ").filter(|_| n > 0)?;
        Some(s.len() - rest.len())
    })
}

/// `(FUNCTION|PROCEDURE) "?hdb_catalog"?\."?notify_hasura_.+`
fn calls_hdb_notify(s: &[u8]) -> Option<()> {
    let s = s
        .strip_prefix(b"FUNCTION ")
        .or_else(|| s.strip_prefix(b"PROCEDURE "))?;
    let s = quote(quote(s).strip_prefix(b"hdb_catalog")?).strip_prefix(b".")?;
    let name = quote(s).strip_prefix(b"notify_hasura_")?;
    (!name.is_empty()).then_some(())
}

/// `s` without one leading `"`, for the optional quotes of the trigger pattern.
fn quote(s: &[u8]) -> &[u8] {
    s.strip_prefix(b"\"").unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_statement_hides_literals_names_and_comments() {
        assert_eq!(
            mask_statement(b"SELECT 'a;b', \"c d\", E'\\'', $t$ $ $t$, 1 -- x;"),
            Some(b"SELECT '###', \"c#d\", E'##', $t$###$t$, 1 #####".to_vec())
        );
        assert_eq!(mask_statement(b"SELECT 1; SELECT 2;"), None);
    }

    /// SPEC §6 rule 4's regex, verbatim, on bytes (`.` is any byte but `\n`).
    fn spec_regex() -> regex::bytes::Regex {
        regex::bytes::Regex::new(
            "(?-u)^CREATE TRIGGER \"?notify_hasura_.+\"? AFTER [[:alnum:]]+ ON .+ FOR EACH ROW \
             EXECUTE (FUNCTION|PROCEDURE) \"?hdb_catalog\"?\\.\"?notify_hasura_.+\"?\\(\\);$",
        )
        .unwrap()
    }

    /// Rule 4 as the cleaner applies it is exactly the SPEC's regex run on the masked
    /// statement (lines that are not one statement are never dropped).
    #[test]
    fn trigger_statement_rule_is_the_spec_regex_on_the_masked_statement() {
        let re = spec_regex();
        let heads = [
            "CREATE TRIGGER notify_hasura_x",
            "CREATE TRIGGER \"notify_hasura_x\"",
        ];
        let events = [
            " AFTER INSERT ON public.t",
            " AFTER UPDATE ON \"a\"\"b\"",
            " AFTER ON t",
        ];
        let middles = [
            "",
            " WHEN ((new.a <> ' FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x'::text))",
            " WHEN ((new.a <> E'\\' FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x'))",
            " WHEN ((new.a <> $q$ FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x$q$))",
            " /* FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x(); */",
            " WHEN (new.a <> 'it''s')",
        ];
        let calls = [
            " FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x();",
            " FOR EACH ROW EXECUTE PROCEDURE \"hdb_catalog\".\"notify_hasura_x\"();",
            " FOR EACH ROW EXECUTE FUNCTION public.audit();",
            " FOR EACH ROW EXECUTE FUNCTION \"hdb_catalog.notify_hasura_x\"();",
            " FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x(); SELECT 1;",
            " FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x() -- ();",
        ];
        let mut dropped = 0;
        for head in heads {
            for event in events {
                for middle in middles {
                    for call in calls {
                        let line = [head, event, middle, call].concat();
                        let line = line.as_bytes();
                        let expected = mask_statement(line).is_some_and(|m| re.is_match(&m));
                        assert_eq!(is_hasura_trigger_statement(line), expected, "{line:?}");
                        dropped += usize::from(expected);
                    }
                }
            }
        }
        assert_eq!(dropped, 2 * 2 * 6 * 2);
    }

    #[test]
    fn trigger_matcher_agrees_with_regex() {
        let re = spec_regex();
        let pieces: Vec<&str> = "CREATE TRIGGER |\"|notify_hasura_|x|_INSERT| AFTER |INSERT|\
            UPDATE| ON |public.t| FOR EACH ROW EXECUTE |FUNCTION |PROCEDURE |hdb_catalog|.|();\
            | |é|AFTER|ON|E|(|)|;"
            .split('|')
            .collect();
        let valid: Vec<&str> = "CREATE TRIGGER |\"|notify_hasura_|x|\"| AFTER |INSERT| ON |t|\
            \x20FOR EACH ROW EXECUTE |FUNCTION |\"|hdb_catalog|\"|.|\"|notify_hasura_|x|\"|();"
            .split('|')
            .collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut matched, total) = (0, 200_000);
        for _ in 0..total {
            let mut line = String::new();
            if next(2) == 0 {
                // A valid line with a few pieces dropped, replaced or followed by another.
                for part in &valid {
                    match next(40) {
                        0 => {}
                        1 => line.push_str(pieces[next(pieces.len())]),
                        2 => line.push_str(&[part, pieces[next(pieces.len())]].concat()),
                        _ => line.push_str(part),
                    }
                }
            } else {
                (0..next(24)).for_each(|_| line.push_str(pieces[next(pieces.len())]));
            }
            let expected = re.is_match(line.as_bytes());
            matched += usize::from(expected);
            assert_eq!(is_hasura_trigger(line.as_bytes()), expected, "{line}");
        }
        assert!(matched > total / 20 && matched < total / 2, "{matched}");
    }
}
