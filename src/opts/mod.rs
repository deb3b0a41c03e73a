//! The pg_dump options a caller sends in `opts` (SPEC §4): parsed exactly as pg_dump's own
//! `getopt_long` (glibc) parses them, checked against the allow-list, and re-emitted in
//! canonical long form (`--schema=x`), so that the arguments pg_dump receives are exactly the
//! ones that were checked. Pure: no I/O.

mod error;
mod getopt;
mod table;
#[cfg(test)]
mod tests;

use error::{error, quote};
use getopt::{Opt, Tokens};
use table::Id;

pub use error::OptsError;

/// pg_dump's output format, as chosen by -F/--format (default plain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Custom,
    Tar,
}

/// Validated options, ready to pass to pg_dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpOptions {
    /// Canonical long-form arguments, in the caller's order (e.g. ["--no-owner", "--schema=public"]).
    pub args: Vec<String>,
    pub format: Format,
    /// True when -Z/--compress asks for compression (anything but 0 / none).
    pub compressed: bool,
}

/// Parses and validates `opts`; `clean_output` is the request's flag (cleaning needs uncompressed plain output).
pub fn parse(opts: &[String], clean_output: bool) -> Result<DumpOptions, OptsError> {
    let mut args = Vec::new();
    // pg_dump obeys the last -F and the last -Z; keep where they were for clean_output's errors.
    let mut format = (Format::Plain, None);
    let mut compress = (false, None);
    // Options come in element order, so the first offending element is the one reported.
    for opt in Tokens::new(opts) {
        let Opt {
            index,
            name,
            entry,
            value,
        } = opt?;
        let fail = |why: String| Err(error(index, format!("option {name} {why}")));
        if let Some(why) = rejection(entry.id) {
            return fail(format!("is not allowed: {why}"));
        }
        // A NUL cannot cross into pg_dump's argv; say so here rather than fail to spawn it.
        if value.is_some_and(|v| v.contains('\0')) {
            return fail("has a NUL byte in its value".to_owned());
        }
        let value = match (entry.id, value) {
            (Id::Short('F'), Some(given)) => {
                let chosen = match parse_format(given) {
                    Ok(chosen) => chosen,
                    Err(why) => return fail(why),
                };
                format = (chosen, Some((index, name)));
                // Every pg_dump spells the full names the same way.
                Some(format_name(chosen))
            }
            (Id::Short('E'), Some(given)) if !is_utf8_name(given) => {
                return fail(format!("must be UTF8, got {}", quote(given)));
            }
            // libpq pastes the name unescaped into a SET command: send one we wrote.
            (Id::Short('E'), Some(_)) => Some("UTF8"),
            (Id::Short('Z'), Some(given)) => {
                compress = (asks_for_compression(given), Some((index, name, given)));
                Some(given)
            }
            (_, value) => value,
        };
        args.push(match value {
            Some(value) => format!("--{}={value}", entry.name),
            None => format!("--{}", entry.name),
        });
    }
    if clean_output {
        if let (chosen @ (Format::Custom | Format::Tar), Some((index, name))) = &format {
            let chosen = format_name(*chosen);
            let message =
                format!("clean_output requires the plain format, but {name} selects {chosen}");
            return Err(error(*index, message));
        }
        if let (true, Some((index, name, given))) = &compress {
            let given = quote(given);
            let message =
                format!("clean_output requires uncompressed output, but {name} asks for {given}");
            return Err(error(*index, message));
        }
    }
    Ok(DumpOptions {
        args,
        format: format.0,
        compressed: compress.0,
    })
}

/// Why an option is refused whatever its value, if it is.
fn rejection(id: Id) -> Option<&'static str> {
    Some(match id {
        Id::Short('f') => "it writes to the server's filesystem",
        Id::Long("filter") => "it reads a file from the server's filesystem",
        Id::Short('j') => {
            "parallel jobs need the directory format, which writes to the server's filesystem"
        }
        Id::Short('d' | 'h' | 'p' | 'U' | 'w' | 'W') | Id::Long("role") => {
            "the connection and its identity come from \"source\""
        }
        Id::Short('V' | '?') => "it does not produce a dump",
        _ => return None,
    })
}

/// Reads a -F value as pg_dump's parseArchiveFormat does (ASCII case-insensitive); an error
/// completes "option X ...".
fn parse_format(value: &str) -> Result<Format, String> {
    let is = |letter, word| value.eq_ignore_ascii_case(letter) || value.eq_ignore_ascii_case(word);
    if is("p", "plain") {
        Ok(Format::Plain)
    } else if is("c", "custom") {
        Ok(Format::Custom)
    } else if is("t", "tar") {
        Ok(Format::Tar)
    } else if is("d", "directory") {
        let why = "the directory format writes to the server's filesystem";
        Err(format!("is not allowed with {}: {why}", quote(value)))
    } else {
        // Including "a"/"append", an undocumented mode for pg_dumpall's use.
        let expected = "expected p/plain, c/custom or t/tar";
        Err(format!(
            "has an unknown format {}: {expected}",
            quote(value)
        ))
    }
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Plain => "plain",
        Format::Custom => "custom",
        Format::Tar => "tar",
    }
}

/// Whether PostgreSQL's pg_char_to_encoding maps `name` to UTF8: it refuses names of
/// NAMEDATALEN (64) bytes or more, keeps only ASCII letters and digits, lower-cased, and knows
/// UTF8 as "utf8" and "unicode" (so "UTF-8" and "Unicode" qualify).
fn is_utf8_name(name: &str) -> bool {
    let cleaned: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    name.len() < 64 && (cleaned == "utf8" || cleaned == "unicode")
}

/// Whether a -Z value asks for compression. pg_dump's parse_compress_options reads a bare
/// integer (as strtol does: blanks, a sign, digits, or nothing at all) as a level where 0 means
/// none; anything else is `METHOD[:DETAIL]`, where only the method `none` means none.
fn asks_for_compression(value: &str) -> bool {
    let unsigned = value.trim_start_matches([' ', '\t', '\n', '\u{b}', '\u{c}', '\r']);
    let digits = unsigned.strip_prefix(['+', '-']).unwrap_or(unsigned);
    if value.is_empty() || (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())) {
        return digits.bytes().any(|b| b != b'0');
    }
    value.split_once(':').map_or(value, |(method, _)| method) != "none"
}
