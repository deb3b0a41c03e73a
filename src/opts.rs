//! The pg_dump options a caller sends in `opts` (SPEC §4): parsed exactly as pg_dump's own
//! `getopt_long` (glibc) parses them, checked against the allow-list, and re-emitted in
//! canonical long form (`--schema=x`), so that the arguments pg_dump receives are exactly the
//! ones that were checked. Pure: no I/O.

use std::fmt;

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

/// What getopt_long reports for a table entry (its flag and val). glibc counts two entries as
/// one option, so that a prefix matching both is not ambiguous, when this and has_arg agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Id {
    /// Entries that return a short option letter, like `{"no-acl", no_argument, NULL, 'x'}`.
    Short(char),
    /// Entries without a letter (they set a flag or return a number), by their main name.
    Long(&'static str),
}

/// One entry of pg_dump's `long_options[]`.
#[derive(Debug)]
struct LongOpt {
    name: &'static str,
    takes_arg: bool,
    id: Id,
}

const NO_ARG: bool = false;
const ARG: bool = true;

const fn short(name: &'static str, takes_arg: bool, letter: char) -> LongOpt {
    LongOpt {
        name,
        takes_arg,
        id: Id::Short(letter),
    }
}

const fn long(name: &'static str, takes_arg: bool) -> LongOpt {
    LongOpt {
        name,
        takes_arg,
        id: Id::Long(name),
    }
}

/// pg_dump 18's `long_options[]`, in its order: glibc resolves a prefix to the first entry it
/// matches. pg_dump lists the old name of a renamed option first (`--blobs` before
/// `--large-objects`), so the first entry for a letter is a name that every pg_dump from 12 to
/// 18 knows, and a short option is re-emitted as that. The letters are those of pg_dump's
/// optstring (`abBcCd:e:E:f:F:h:j:n:N:Op:RsS:t:T:U:vwWxXZ:`) plus `-?` and `-V`, which getopt
/// rejects and pg_dump honours only as its first argument.
#[rustfmt::skip]
const LONG_OPTIONS: &[LongOpt] = &[
    short("data-only", NO_ARG, 'a'), short("blobs", NO_ARG, 'b'),
    short("large-objects", NO_ARG, 'b'), short("no-blobs", NO_ARG, 'B'),
    short("no-large-objects", NO_ARG, 'B'), short("clean", NO_ARG, 'c'),
    short("create", NO_ARG, 'C'), short("dbname", ARG, 'd'), short("extension", ARG, 'e'),
    short("file", ARG, 'f'), short("format", ARG, 'F'), short("host", ARG, 'h'),
    short("jobs", ARG, 'j'), short("no-reconnect", NO_ARG, 'R'), short("no-owner", NO_ARG, 'O'),
    short("port", ARG, 'p'), short("schema", ARG, 'n'), short("exclude-schema", ARG, 'N'),
    short("schema-only", NO_ARG, 's'), short("superuser", ARG, 'S'), short("table", ARG, 't'),
    short("exclude-table", ARG, 'T'), short("no-password", NO_ARG, 'w'),
    short("password", NO_ARG, 'W'), short("username", ARG, 'U'), short("verbose", NO_ARG, 'v'),
    short("no-privileges", NO_ARG, 'x'), short("no-acl", NO_ARG, 'x'),
    short("compress", ARG, 'Z'), short("encoding", ARG, 'E'), short("help", NO_ARG, '?'),
    short("version", NO_ARG, 'V'),
    // The same flag as --column-inserts sets.
    LongOpt { name: "attribute-inserts", takes_arg: NO_ARG, id: Id::Long("column-inserts") },
    long("binary-upgrade", NO_ARG), long("column-inserts", NO_ARG),
    long("disable-dollar-quoting", NO_ARG), long("disable-triggers", NO_ARG),
    long("enable-row-security", NO_ARG), long("exclude-table-data", ARG),
    long("extra-float-digits", ARG), long("if-exists", NO_ARG), long("inserts", NO_ARG),
    long("lock-wait-timeout", ARG), long("no-table-access-method", NO_ARG),
    long("no-tablespaces", NO_ARG), long("quote-all-identifiers", NO_ARG),
    long("load-via-partition-root", NO_ARG), long("role", ARG), long("section", ARG),
    long("serializable-deferrable", NO_ARG), long("snapshot", ARG), long("statistics", NO_ARG),
    long("statistics-only", NO_ARG), long("strict-names", NO_ARG),
    long("use-set-session-authorization", NO_ARG), long("no-comments", NO_ARG),
    long("no-data", NO_ARG), long("no-policies", NO_ARG), long("no-publications", NO_ARG),
    long("no-schema", NO_ARG), long("no-security-labels", NO_ARG),
    long("no-statistics", NO_ARG), long("no-subscriptions", NO_ARG),
    long("no-toast-compression", NO_ARG), long("no-unlogged-table-data", NO_ARG),
    long("no-sync", NO_ARG), long("on-conflict-do-nothing", NO_ARG),
    long("rows-per-insert", ARG), long("include-foreign-data", ARG),
    long("table-and-children", ARG), long("exclude-table-and-children", ARG),
    long("exclude-table-data-and-children", ARG), long("sync-method", ARG),
    long("filter", ARG), long("exclude-extension", ARG), long("sequence-data", NO_ARG),
    long("restrict-key", ARG),
];

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

/// One option as getopt_long returns it.
struct Opt<'a> {
    /// The element of `opts` that holds the option (not a separate value).
    index: usize,
    /// The option for messages: as written, then its full name if that differs.
    name: String,
    /// The entry matched; for a short option, the first entry for its letter.
    entry: &'static LongOpt,
    value: Option<&'a str>,
}

/// glibc's getopt_long over `opts`, one option at a time. pg_dump's only positional argument is
/// the database, which `source` chooses, so a positional argument is an error.
struct Tokens<'a> {
    opts: &'a [String],
    /// Index of the next element to read.
    next: usize,
    /// The unread rest of a bundle of short options such as `-sOx`, and its element's index.
    bundle: Option<(usize, &'a str)>,
    /// Set by `--`: everything after it is positional.
    options_ended: bool,
}

impl<'a> Tokens<'a> {
    fn new(opts: &'a [String]) -> Self {
        Tokens {
            opts,
            next: 0,
            bundle: None,
            options_ended: false,
        }
    }

    /// One short option; `rest` is what follows its letter in its element.
    fn short(&mut self, index: usize, letter: char, rest: &'a str) -> Result<Opt<'a>, OptsError> {
        let written = format!("-{letter}");
        // pg_dump's optstring also has an `X`, which its switch fails as unknown.
        let Some(entry) = LONG_OPTIONS.iter().find(|o| o.id == Id::Short(letter)) else {
            return Err(error(
                index,
                format!("unrecognized option {}", quote(&written)),
            ));
        };
        let name = describe(&written, entry);
        let value = match (entry.takes_arg, rest.is_empty()) {
            (false, true) => None,
            (false, false) => {
                self.bundle = Some((index, rest));
                None
            }
            // The rest of the element is the argument: `-npublic`, `-Onpublic`.
            (true, false) => Some(rest),
            (true, true) => Some(self.take_value(index, &name)?),
        };
        Ok(Opt {
            index,
            name,
            entry,
            value,
        })
    }

    /// One long option; `body` is its element without the leading `--`.
    fn long(&mut self, index: usize, body: &'a str) -> Result<Opt<'a>, OptsError> {
        let (given, attached) = match body.split_once('=') {
            Some((given, value)) => (given, Some(value)),
            None => (body, None),
        };
        let written = format!("--{given}");
        let entry = lookup_long(given).map_err(|candidates| {
            let message = match candidates.as_slice() {
                [] => format!("unrecognized option {}", quote(&written)),
                _ => format!(
                    "option {} is ambiguous ({})",
                    quote(&written),
                    list(&candidates)
                ),
            };
            error(index, message)
        })?;
        let name = describe(&written, entry);
        let value = match (entry.takes_arg, attached) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(error(
                    index,
                    format!("option {name} does not take an argument"),
                ));
            }
            (true, Some(value)) => Some(value),
            (true, None) => Some(self.take_value(index, &name)?),
        };
        Ok(Opt {
            index,
            name,
            entry,
            value,
        })
    }

    /// The next element, whatever it holds (`-n -x` is schema "-x"), as an option's argument.
    fn take_value(&mut self, index: usize, name: &str) -> Result<&'a str, OptsError> {
        let Some(value) = self.opts.get(self.next) else {
            return Err(error(index, format!("option {name} requires an argument")));
        };
        self.next += 1;
        Ok(value)
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Result<Opt<'a>, OptsError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((index, bundle)) = self.bundle.take() {
                let mut chars = bundle.chars();
                if let Some(letter) = chars.next() {
                    return Some(self.short(index, letter, chars.as_str()));
                }
            }
            let index = self.next;
            let arg = self.opts.get(index)?;
            self.next += 1;
            // A lone `-` is positional; glibc permutes, so one may come anywhere.
            let body = match arg.strip_prefix('-') {
                Some(body) if !self.options_ended && !body.is_empty() => body,
                _ => {
                    let why = "the database is chosen by \"source\"";
                    let message =
                        format!("positional argument {} is not allowed: {why}", quote(arg));
                    return Some(Err(error(index, message)));
                }
            };
            if body == "-" {
                self.options_ended = true;
            } else if let Some(body) = body.strip_prefix('-') {
                return Some(self.long(index, body));
            } else {
                // One or more short options, read at the top of the loop.
                self.bundle = Some((index, body));
            }
        }
    }
}

/// Finds a long option as glibc does: an exact name wins; otherwise `name` must be a prefix of
/// entries that are all the same option as the first one it matches. On failure, the
/// candidates glibc would list (none for an unknown name).
fn lookup_long(name: &str) -> Result<&'static LongOpt, Vec<&'static LongOpt>> {
    if let Some(exact) = LONG_OPTIONS.iter().find(|o| o.name == name) {
        return Ok(exact);
    }
    let mut matches = LONG_OPTIONS.iter().filter(|o| o.name.starts_with(name));
    let Some(first) = matches.next() else {
        return Err(Vec::new());
    };
    // glibc's "same option": equal has_arg, flag and val.
    let same = |o: &LongOpt| o.takes_arg == first.takes_arg && o.id == first.id;
    let others: Vec<_> = matches.filter(|o| !same(o)).collect();
    if others.is_empty() {
        return Ok(first);
    }
    Err(std::iter::once(first).chain(others).collect())
}

/// `--no-password, --no-privileges, ...`, cut short: `--=x` matches every entry.
fn list(candidates: &[&LongOpt]) -> String {
    const SHOWN: usize = 8;
    let mut names: Vec<_> = candidates
        .iter()
        .take(SHOWN)
        .map(|o| format!("--{}", o.name))
        .collect();
    if candidates.len() > SHOWN {
        names.push("...".to_owned());
    }
    names.join(", ")
}

/// Names an option for a message: as written, plus its full name when that differs.
fn describe(written: &str, entry: &LongOpt) -> String {
    let full = format!("--{}", entry.name);
    if written == full {
        quote(written)
    } else {
        format!("{} ({full})", quote(written))
    }
}

/// Quotes caller text for a message, escaped, and cut short so a huge element stays out of it.
fn quote(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.chars().nth(SHOWN).is_none() {
        return format!("{text:?}");
    }
    let start: String = text.chars().take(SHOWN).collect();
    format!("{start:?}...")
}

fn error(index: usize, message: String) -> OptsError {
    OptsError { index, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(opts: &[&str], clean_output: bool) -> Result<DumpOptions, OptsError> {
        parse(
            &opts.iter().copied().map(String::from).collect::<Vec<_>>(),
            clean_output,
        )
    }

    /// `opts` written as one string, split at blanks.
    fn run(opts: &str, clean_output: bool) -> Result<DumpOptions, OptsError> {
        parse_strs(&opts.split_whitespace().collect::<Vec<_>>(), clean_output)
    }

    fn accepted(opts: &str, clean_output: bool) -> DumpOptions {
        run(opts, clean_output).unwrap_or_else(|e| panic!("{opts:?} rejected: {e}"))
    }

    /// Asserts that `opts` is rejected at element `index` with a message containing `says`.
    fn assert_rejected(opts: &str, clean_output: bool, index: usize, says: &str) {
        match run(opts, clean_output) {
            Ok(ok) => panic!("{opts:?} accepted as {:?}", ok.args),
            Err(e) => {
                assert_eq!(e.index, index, "{opts:?}: {e}");
                assert!(e.message.contains(says), "{opts:?}: {e}");
                assert_eq!(e.to_string(), e.message);
            }
        }
    }

    #[test]
    fn options_are_re_emitted_in_canonical_long_form() {
        #[rustfmt::skip]
        let cases = [
            // The Hasura CLI's `migrate create --from-server` and `seed create --from-table`.
            ("-O -x --schema-only --schema public",
             "--no-owner --no-privileges --schema-only --schema=public"),
            ("--no-owner --no-acl --data-only --column-inserts --table t",
             "--no-owner --no-acl --data-only --column-inserts --table=t"),
            ("-sOx", "--schema-only --no-owner --no-privileges"),
            ("-Onpublic", "--no-owner --schema=public"),
            ("-On public", "--no-owner --schema=public"),
            ("-npublic", "--schema=public"),
            ("-n public", "--schema=public"),
            ("--schema=x", "--schema=x"),
            ("--schema x", "--schema=x"),
            ("--schema=a=b", "--schema=a=b"),
            ("--schema=", "--schema="),
            // An option's argument may look like an option.
            ("-n -x", "--schema=-x"),
            ("-n-x", "--schema=-x"),
            ("--schema --foo", "--schema=--foo"),
            ("-t -- -O", "--table=-- --no-owner"),
            // Unambiguous prefixes name the entry they match.
            ("--schema-o", "--schema-only"),
            ("--data", "--data-only"),
            ("--no-a", "--no-acl"),
            ("--att", "--attribute-inserts"),
            ("--large", "--large-objects"),
            ("--sec=data", "--section=data"),
            // An exact name beats the longer names it is a prefix of.
            ("--schema s", "--schema=s"),
            ("--table=t", "--table=t"),
            ("--statistics", "--statistics"),
            // Short options take names that pg_dump 12 to 18 all know.
            ("-b -B -x", "--blobs --no-blobs --no-privileges"),
            ("-a -c -C -R -v", "--data-only --clean --create --no-reconnect --verbose"),
            ("-eplpgsql -Nn -Ssu -Tt",
             "--extension=plpgsql --exclude-schema=n --superuser=su --exclude-table=t"),
            // Repeated options are all kept, in order.
            ("-na --schema b --schema=c", "--schema=a --schema=b --schema=c"),
            // `--` ends options; nothing after it here, so nothing positional.
            ("-O --", "--no-owner"),
            ("", ""),
            // Values that pg_dump checks itself pass through untouched.
            ("--restrict-key=k --section x -Z zstd:long",
             "--restrict-key=k --section=x --compress=zstd:long"),
            // Values that this module checks are re-emitted as it understood them.
            ("-E utf-8 -Fc --format=TAR", "--encoding=UTF8 --format=custom --format=tar"),
        ];
        for (opts, want) in cases {
            let want: Vec<_> = want.split_whitespace().collect();
            assert_eq!(accepted(opts, false).args, want, "{opts:?}");
            // The canonical form is a fixed point: read again, it means the same.
            assert_eq!(
                accepted(&want.join(" "), false).args,
                want,
                "{opts:?} again"
            );
        }
        // Elements that a blank-separated string cannot write.
        let args = |opts: &[&str]| parse_strs(opts, false).map(|o| o.args);
        assert_eq!(args(&["--schema", ""]), Ok(vec!["--schema=".to_owned()]));
        assert_eq!(args(&["-n", "a b"]), Ok(vec!["--schema=a b".to_owned()]));
        let nul = args(&["-n", "a\0b"]).unwrap_err().message;
        assert_eq!(nul, "option \"-n\" (--schema) has a NUL byte in its value");
        assert_eq!(args(&["-n", "s", ""]).unwrap_err().index, 2);
    }

    #[test]
    fn malformed_options_are_rejected_where_they_are() {
        #[rustfmt::skip]
        let cases = [
            ("-O --foo", 1, "unrecognized option \"--foo\""),
            ("--foo=bar", 0, "unrecognized option \"--foo\""),
            ("-Oy", 0, "unrecognized option \"-y\""),
            ("-X", 0, "unrecognized option \"-X\""),
            ("---x", 0, "unrecognized option \"---x\""),
            ("--no-p", 0, "option \"--no-p\" is ambiguous (--no-password, --no-privileges,"),
            ("--no-p", 0, "--no-policies, --no-publications)"),
            ("-O --sch", 1, "option \"--sch\" is ambiguous (--schema, --schema-only)"),
            ("--fil=x", 0, "option \"--fil\" is ambiguous (--file, --filter)"),
            // glibc compares each match with the first only: --no-large-objects is the same
            // option as --no-blobs and left out; --no-acl is not, and is listed.
            ("--no-", 0, "(--no-blobs, --no-reconnect, --no-owner, --no-password,"),
            ("--no-", 0, "--no-password, --no-privileges, --no-acl, --no-table-access-method,"),
            // An empty name is a prefix of every entry.
            ("--=x", 0, "option \"--\" is ambiguous (--data-only, --blobs, --large-objects,"),
            ("--=x", 0, ", --create, --dbname, ...)"),
            ("-O --schema", 1, "option \"--schema\" requires an argument"),
            ("-n", 0, "option \"-n\" (--schema) requires an argument"),
            ("-x -On", 1, "option \"-n\" (--schema) requires an argument"),
            ("--no-owner=1", 0, "option \"--no-owner\" does not take an argument"),
            ("--no-owner=", 0, "option \"--no-owner\" does not take an argument"),
            ("--schema-o=x", 0, "option \"--schema-o\" (--schema-only) does not take an argument"),
            // Positional arguments, wherever glibc's permutation would find them.
            ("mydb", 0, "argument \"mydb\" is not allowed: the database is chosen by \"source\""),
            ("-O mydb -x", 1, "positional argument \"mydb\" is not allowed"),
            ("-O - -x", 1, "positional argument \"-\" is not allowed"),
            ("-- -O", 1, "positional argument \"-O\" is not allowed"),
        ];
        for (opts, index, says) in cases {
            assert_rejected(opts, false, index, says);
        }
    }

    #[test]
    fn disallowed_options_are_rejected_with_their_reason() {
        let fs = "is not allowed: it writes to the server's filesystem";
        let conn = "is not allowed: the connection and its identity come from \"source\"";
        #[rustfmt::skip]
        let cases = [
            ("-O -f x", 1, format!("option \"-f\" (--file) {fs}")),
            ("-Ofx", 0, format!("option \"-f\" (--file) {fs}")),
            ("--file=x", 0, format!("option \"--file\" {fs}")),
            ("--filter f", 0, "option \"--filter\" is not allowed: it reads a file".into()),
            ("-j4", 0, "\"-j\" (--jobs) is not allowed: parallel jobs need the directory".into()),
            ("--jobs=4", 0, "option \"--jobs\" is not allowed".into()),
            ("-O -Fd", 1, "\"-F\" (--format) is not allowed with \"d\": the directory".into()),
            ("--format Directory", 0, "\"--format\" is not allowed with \"Directory\"".into()),
            ("-d db", 0, format!("option \"-d\" (--dbname) {conn}")),
            ("--dbname=postgres://h/db", 0, format!("option \"--dbname\" {conn}")),
            ("-hlocalhost", 0, format!("option \"-h\" (--host) {conn}")),
            ("-p 5432", 0, format!("option \"-p\" (--port) {conn}")),
            ("-U u", 0, format!("option \"-U\" (--username) {conn}")),
            ("--user=u", 0, format!("option \"--user\" (--username) {conn}")),
            ("-Ow", 0, format!("option \"-w\" (--no-password) {conn}")),
            ("-W", 0, format!("option \"-W\" (--password) {conn}")),
            ("--pass", 0, format!("option \"--pass\" (--password) {conn}")),
            ("--role=r", 0, format!("option \"--role\" {conn}")),
            ("-V", 0, "\"-V\" (--version) is not allowed: it does not produce a dump".into()),
            ("--version", 0, "option \"--version\" is not allowed".into()),
            ("-O?", 0, "option \"-?\" (--help) is not allowed".into()),
            ("--help", 0, "option \"--help\" is not allowed".into()),
            ("-E LATIN1", 0, "option \"-E\" (--encoding) must be UTF8, got \"LATIN1\"".into()),
            ("--encoding=auto", 0, "option \"--encoding\" must be UTF8, got \"auto\"".into()),
            ("-Fx", 0, "\"-F\" (--format) has an unknown format \"x\": expected p/plain".into()),
            ("-Fa", 0, "has an unknown format \"a\"".into()),
            ("--format=append", 0, "has an unknown format \"append\"".into()),
        ];
        for (opts, index, says) in cases {
            assert_rejected(opts, false, index, &says);
        }
    }

    #[test]
    fn encoding_accepts_exactly_the_utf8_aliases() {
        // pg_char_to_encoding ignores everything but letters and digits.
        for name in "UTF8 utf8 UTF-8 Unicode UNICODE -u.t.f_8- =utf8".split(' ') {
            let want = ["--encoding=UTF8"];
            assert_eq!(accepted(&format!("-E {name}"), false).args, want, "{name}");
        }
        let too_long = &format!("utf8{}", "-".repeat(60));
        for name in ["utf", "utf16", "utf8mb4", "auto", "latin1", too_long] {
            assert_rejected(&format!("-E {name}"), false, 0, "must be UTF8");
        }
    }

    #[test]
    fn format_and_compression_are_the_last_given() {
        use Format::{Custom, Plain, Tar};
        #[rustfmt::skip]
        let cases = [
            ("", Plain, false), ("-Fp", Plain, false), ("-F c", Custom, false),
            ("--format=t", Tar, false), ("-Fplain -FCUSTOM", Custom, false),
            ("-Fc -Fp", Plain, false), ("-Fc -Z 9", Custom, true), ("-Z9 -Z0", Plain, false),
            ("--compress=gzip:9", Plain, true), ("--compress=lz4", Plain, true),
            ("--compress=none", Plain, false), ("--compress=none:0", Plain, false),
            ("--compress=00", Plain, false), ("--compress=-0", Plain, false),
            ("--compress=+5", Plain, true), ("--compress=", Plain, false),
        ];
        for (opts, format, compressed) in cases {
            let got = accepted(opts, false);
            assert_eq!(
                (got.format, got.compressed),
                (format, compressed),
                "{opts:?}"
            );
        }
    }

    #[test]
    fn clean_output_needs_uncompressed_plain_output() {
        for opts in "|-Fp|-Fc -Fp|-Z0|-Z none|-Z9 -Z0|-O -x --schema-only".split('|') {
            accepted(opts, true);
        }
        let format = "clean_output requires the plain format, but";
        let compress = "clean_output requires uncompressed output, but";
        #[rustfmt::skip]
        let cases = [
            ("-O -Fc", 1, format!("{format} \"-F\" (--format) selects custom")),
            ("--format t", 0, format!("{format} \"--format\" selects tar")),
            ("-Fp -Ft", 1, format.to_owned()),
            ("-O -Z 5", 1, format!("{compress} \"-Z\" (--compress) asks for \"5\"")),
            ("--compress=gzip -Fp", 0, compress.to_owned()),
        ];
        for (opts, index, says) in cases {
            assert_rejected(opts, true, index, &says);
        }
    }

    #[test]
    fn long_options_agree_with_the_short_optstring() {
        // pg_dump 18's optstring, verbatim.
        const OPTSTRING: &str = "abBcCd:e:E:f:F:h:j:n:N:Op:RsS:t:T:U:vwWxXZ:";
        let letters = OPTSTRING
            .char_indices()
            .filter(|&(_, c)| c != ':' && c != 'X');
        for (i, letter) in letters {
            let takes_arg = OPTSTRING.get(i + 1..).is_some_and(|s| s.starts_with(':'));
            let entry = LONG_OPTIONS.iter().find(|o| o.id == Id::Short(letter));
            assert_eq!(entry.map(|o| o.takes_arg), Some(takes_arg), "-{letter}");
        }
        for entry in LONG_OPTIONS {
            if let Id::Short(letter) = entry.id {
                let known = OPTSTRING.contains(letter) || "?V".contains(letter);
                assert!(known, "--{}", entry.name);
            }
            let twins = LONG_OPTIONS.iter().filter(|o| o.name == entry.name);
            assert_eq!(twins.count(), 1, "--{}", entry.name);
        }
    }
}
