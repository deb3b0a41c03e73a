//! Properties of the two pure cores over generated input: the pg_dump option parser
//! (`opts::parse`, SPEC §4) and the `clean_output` scanner (`clean`, SPEC §6).
//!
//! The generators mostly build input of the shape these cores see in real use — `opts` from
//! pg_dump's own option names, prefixes and values; dumps from pg_dump's statements, literals,
//! dollar-quoted bodies and COPY blocks — so that the properties reach the interesting states,
//! plus plain random input for the "never panics" ones.
//!
//! `PROPTEST_CASES=30000 cargo test --test props` runs more cases than the default. A failure
//! prints the shrunk input; pin it as a unit test named after the bug next to the code.

use pgdump_api::clean::{clean, Cleaner};
use pgdump_api::opts::{parse, Format};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use std::sync::LazyLock;

/// `cases` per property unless `PROPTEST_CASES` says otherwise. Failures are not saved to
/// files: a found bug becomes a named regression test instead.
fn config(cases: u32) -> ProptestConfig {
    let mut config = if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(cases)
    };
    config.failure_persistence = None;
    config
}

fn concat(pieces: Vec<&str>) -> String {
    pieces.concat()
}

// ---------------------------------------------------------------------------------------------
// opts

/// Long option names of pg_dump's table (a sample that covers every kind: allowed, refused,
/// taking a value, checked values, names that prefix others).
const LONG_NAMES: &[&str] = &[
    "data-only",
    "blobs",
    "large-objects",
    "no-blobs",
    "clean",
    "create",
    "dbname",
    "extension",
    "file",
    "filter",
    "format",
    "host",
    "jobs",
    "no-owner",
    "port",
    "schema",
    "schema-only",
    "exclude-schema",
    "table",
    "exclude-table",
    "exclude-table-data",
    "no-password",
    "password",
    "username",
    "no-privileges",
    "no-acl",
    "compress",
    "encoding",
    "help",
    "version",
    "attribute-inserts",
    "column-inserts",
    "inserts",
    "role",
    "section",
    "statistics",
    "no-policies",
    "no-publications",
    "restrict-key",
    "table-and-children",
];

/// What an element of `opts` is made of: getopt's syntax, option names, and values.
const OPT_PIECES: &[&str] = &[
    "-",
    "--",
    "=",
    "-n",
    "-f",
    "-F",
    "-Z",
    "-E",
    "-O",
    "-x",
    "-s",
    "-a",
    "-t",
    "-?",
    "-V",
    "-X",
    "-j",
    "-d",
    "-h",
    "-U",
    "-w",
    "n",
    "O",
    "x",
    "F",
    "Z",
    "f",
    "--schema",
    "--sch",
    "--file",
    "--fil",
    "--format",
    "--compress",
    "--encoding",
    "--no-",
    "--no-p",
    "--no-owner",
    "--role",
    "--table",
    "--att",
    "--large",
    "--sec",
    "public",
    "a b",
    " ",
    "",
    "\0",
    "é",
    "日本",
    "x=y",
    "d",
    "directory",
    "c",
    "custom",
    "t",
    "tar",
    "p",
    "Plain",
    "utf8",
    "UTF-8",
    "LATIN1",
    "0",
    "9",
    "-0",
    "gzip:9",
    "none",
    "zstd:long",
    "\n",
];

/// One element of `opts`: pieces glued together, a prefix of a long name, or any string.
fn opt_element() -> impl Strategy<Value = String> {
    let prefix =
        (select(LONG_NAMES), any::<Index>(), any::<bool>()).prop_map(|(name, cut, with_value)| {
            let cut = cut.index(name.len() + 1);
            let value = if with_value { "=x" } else { "" };
            format!("--{}{value}", &name[..cut])
        });
    prop_oneof![
        4 => vec(select(OPT_PIECES), 1..4).prop_map(concat),
        2 => prefix,
        1 => any::<String>(),
    ]
}

/// Options pg_dump spells several ways, for the "every spelling means the same" property:
/// letter, canonical long name (the first table entry for the letter), an unambiguous prefix
/// of it, and whether it takes a value.
const SPELLED: &[(char, &str, &str, bool)] = &[
    ('n', "schema", "schema", true),
    ('N', "exclude-schema", "exclude-s", true),
    ('t', "table", "table", true),
    ('T', "exclude-table", "exclude-table", true),
    ('e', "extension", "exten", true),
    ('S', "superuser", "sup", true),
    ('O', "no-owner", "no-ow", false),
    ('x', "no-privileges", "no-pri", false),
    ('s', "schema-only", "schema-", false),
    ('a', "data-only", "data", false),
    ('b', "blobs", "blo", false),
    ('c', "clean", "cl", false),
    ('C', "create", "cr", false),
    ('v', "verbose", "verb", false),
];

/// Values of options: anything but NUL, often looking like an option itself.
fn opt_value() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "public", "a b", "-x", "--schema", "-", "--", "=", "x=y", "é", "日本", " ", "'", "\"",
    ];
    prop_oneof![
        3 => vec(select(PIECES), 0..3).prop_map(concat),
        1 => "[^\\x00]{0,8}",
    ]
}

/// How one option is written: 0 `-nV` / `-O`, 1 `-n V`, 2 `--schema=V`, 3 `--schema V`,
/// 4 prefix `--sch=V`, 5 prefix `--sch V`.
type Spelling = (usize, String, u8, bool);

/// Writes options in the spellings chosen, bundling runs of short flags when `bundle` says so
/// (`-Ox`, `-Onpublic`); returns the elements and the canonical arguments they must give.
fn spell(options: &[Spelling]) -> (Vec<String>, Vec<String>) {
    let mut elements: Vec<String> = Vec::new();
    let mut canonical = Vec::new();
    // The previous element is a bundle of short flags that the next short option may join.
    let mut open_bundle = false;
    for (which, value, how, bundle) in options {
        let (letter, long, prefix, takes_arg) = SPELLED[*which];
        canonical.push(if takes_arg {
            format!("--{long}={value}")
        } else {
            format!("--{long}")
        });
        let how = how % 6;
        if how <= 1 {
            // `-nV` needs a non-empty V: `-n` alone takes the next element.
            let attached = how == 0 && !value.is_empty();
            let mut short = format!("-{letter}");
            if takes_arg && attached {
                short.push_str(value);
            }
            match elements.last_mut() {
                Some(last) if open_bundle && *bundle => last.push_str(&short[1..]),
                _ => elements.push(short),
            }
            if takes_arg && !attached {
                elements.push(value.clone());
            }
            open_bundle = !takes_arg;
            continue;
        }
        open_bundle = false;
        let name = if how <= 3 { long } else { prefix };
        match (takes_arg, how % 2 == 0) {
            (false, _) => elements.push(format!("--{name}")),
            (true, true) => elements.push(format!("--{name}={value}")),
            (true, false) => elements.extend([format!("--{name}"), value.clone()]),
        }
    }
    (elements, canonical)
}

/// Options refused whatever their value (SPEC §4), by canonical name.
const REFUSED: &[&str] = &[
    "file",
    "filter",
    "jobs",
    "dbname",
    "host",
    "port",
    "username",
    "no-password",
    "password",
    "role",
    "version",
    "help",
];

proptest! {
    #![proptest_config(config(1000))]

    /// The parser never panics; what it accepts is canonical (`--name` or `--name=value`),
    /// holds no refused option, and parses again to exactly the same result (a fixed point);
    /// what it rejects names an element that exists.
    #[test]
    fn opts_parse_is_total_and_canonical_form_is_a_fixed_point(
        opts in vec(opt_element(), 0..8),
        clean_output in any::<bool>(),
    ) {
        match parse(&opts, clean_output) {
            Ok(parsed) => {
                for arg in &parsed.args {
                    let name = arg.strip_prefix("--").map(|a| a.split('=').next().unwrap_or(a));
                    prop_assert!(name.is_some_and(|n| !n.is_empty()), "{arg:?} is not canonical");
                    let name = name.unwrap_or_default();
                    prop_assert!(!REFUSED.contains(&name), "{arg:?} accepted");
                    prop_assert!(!arg.contains('\0'), "{arg:?} holds a NUL");
                    prop_assert_ne!(arg.as_str(), "--format=directory");
                    if name == "encoding" {
                        prop_assert_eq!(arg.as_str(), "--encoding=UTF8");
                    }
                    // Each canonical argument stands alone: none takes the next as its value.
                    let alone = parse(std::slice::from_ref(arg), false).map(|p| p.args);
                    prop_assert_eq!(alone, Ok(vec![arg.clone()]));
                }
                if clean_output {
                    prop_assert_eq!(parsed.format, Format::Plain);
                    prop_assert!(!parsed.compressed);
                }
                prop_assert_eq!(parse(&parsed.args, clean_output), Ok(parsed.clone()));
            }
            Err(e) => {
                prop_assert!(e.index < opts.len(), "index {} of {} elements", e.index, opts.len());
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    /// Every way getopt_long lets a caller write the same options — short or long, bundled
    /// or not, value attached or separate, long names abbreviated — gives the same canonical
    /// arguments.
    #[test]
    fn opts_every_spelling_gives_the_same_arguments(
        options in vec(
            (0..SPELLED.len(), opt_value(), any::<u8>(), any::<bool>()),
            0..6,
        ),
        end_marker in any::<bool>(),
    ) {
        let (mut elements, canonical) = spell(&options);
        if end_marker {
            elements.push("--".to_owned());
        }
        let parsed = parse(&elements, false).map(|p| p.args);
        prop_assert_eq!(parsed, Ok(canonical), "{:?}", elements);
    }
}

// ---------------------------------------------------------------------------------------------
// clean

/// Rule 3's lines (SPEC §6), spelled out again here as the oracle's own copy.
const DROPPED_SETS: &[&str] = &[
    "SET statement_timeout = 0;",
    "SET lock_timeout = 0;",
    "SET idle_in_transaction_session_timeout = 0;",
    "SET client_encoding = 'UTF8';",
    "SET standard_conforming_strings = on;",
    "SELECT pg_catalog.set_config('search_path', '', false);",
    "SET xmloption = content;",
    "SET client_min_messages = warning;",
    "SET row_security = off;",
    "SET default_tablespace = '';",
    "SET default_with_oids = false;",
    "SET default_table_access_method = heap;",
    "CREATE SCHEMA public;",
    "COMMENT ON SCHEMA public IS 'standard public schema';",
    "SET transaction_timeout = 0;",
];

/// Top-level lines that look like rule 3's but are not equal to one, so they stay; most
/// change a setting that one of rule 3's lines sets back.
const KEPT_SETS: &[&str] = &[
    "SET check_function_bodies = false;",
    "SET statement_timeout = 1;",
    "SET search_path = public, pg_catalog;",
    "SELECT pg_catalog.set_config('search_path', 'public', false);",
    "SET default_tablespace = 'fast';",
    "SET default_tablespace = ts1;",
    "SET default_table_access_method = heap2;",
    "SET default_with_oids = true;",
    "CREATE SCHEMA public ;",
    " SET lock_timeout = 0;",
];

/// The setting a line of [`DROPPED_SETS`] or [`KEPT_SETS`] sets, and whether it sets it to
/// the value a new session has (rule 3's lines) or changes it. A rule-3 line is removed only
/// while no kept line has changed its setting since the setting last had that value.
fn setting_of(line: &str) -> Option<(&str, bool)> {
    if line == "SELECT pg_catalog.set_config('search_path', '', false);" {
        return Some(("search_path", true));
    }
    if line.starts_with("SELECT pg_catalog.set_config('search_path', ") {
        return Some(("search_path", false));
    }
    let (name, _) = line.strip_prefix("SET ")?.split_once(" = ")?;
    let tracked = name == "search_path"
        || DROPPED_SETS
            .iter()
            .any(|d| d.starts_with(&format!("SET {name} = ")));
    tracked.then(|| (name, DROPPED_SETS.contains(&line)))
}

/// Pieces of text values (literals, bodies, COPY fields): what cleaning removes, what the
/// scanner reacts to, and the newlines that put them at the start of a line.
const TEXT_PIECES: &[&str] = &[
    "",
    "a",
    "word",
    " ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    "--",
    "-- x",
    "'",
    "''",
    "\"",
    "\\",
    "\\.",
    "\\N",
    "$",
    "$$",
    "$_$",
    "$a$",
    "/*",
    "*/",
    ";",
    "é",
    "E'",
    "\n\\.\n",
    "\n--\n",
    "\n  \n",
    "\nSET lock_timeout = 0;\n",
    "\nCREATE SCHEMA public;\n",
    "\n\\restrict k\n",
    "\nCOPY t (a) FROM stdin;\n",
];

/// Pieces of identifiers that pg_dump must quote, down to names holding whole lines of SQL.
const NAME_PIECES: &[&str] = &[
    "notify_hasura_",
    "x",
    "X",
    " ",
    "\n",
    "\"",
    "'",
    "$$",
    "--",
    "/*",
    ";",
    "é",
    "\\.",
    "\nSET lock_timeout = 0;\n",
    " FROM stdin;",
    "\nCOPY t (a) FROM stdin;\n",
    " AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x();",
];

fn text() -> impl Strategy<Value = String> {
    vec(select(TEXT_PIECES), 0..6).prop_map(concat)
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z_][a-z0-9_]{0,6}",
        1 => vec(select(NAME_PIECES), 1..4).prop_map(concat),
    ]
}

/// An identifier as pg_dump's fmtId writes it: bare when it can be, else double-quoted.
fn ident(name: &str) -> String {
    let bare = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii_lowercase() || b == b'_' || (i > 0 && b.is_ascii_digit()));
    if bare && !name.is_empty() {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A string literal: standard (`'it''s'`) or escape syntax (`E'it\'s'`).
fn literal() -> impl Strategy<Value = String> {
    (text(), 0..3u8).prop_map(|(text, kind)| match kind {
        0 => format!("'{}'", text.replace('\'', "''")),
        1 => format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "\\'")),
        _ => format!("e'{}'", text.replace('\\', "\\\\").replace('\'', "''")),
    })
}

/// The bytes pg_dump appends, in turn, to a dollar-quote tag the body holds.
const TAG_SUFFIXES: &str = "_XXXXXXX";

/// A look-alike of a tag pg_dump makes: `$_XXXXXXX_X…` of any length up to 1,100 bytes,
/// often followed by a `$` (a close of a shorter tag) or by another byte and a `$` (a close
/// of another tag of the same length).
fn tag_lookalike() -> impl Strategy<Value = String> {
    (
        prop_oneof![3 => 0..80usize, 1 => 60..1100usize],
        select(vec!["", "$", "Y$", "é$", "X", "\n"]),
    )
        .prop_map(|(len, end)| {
            let tag: String = TAG_SUFFIXES.chars().cycle().take(len).collect();
            format!("${tag}{end}")
        })
}

/// A dollar-quoted body with a tag that does not occur in it, chosen as pg_dump does (`$$`,
/// `$_$`, `$_X$`, …, growing while the body holds it, so that look-alikes in the body make
/// long tags), or a named one.
fn dollar_quoted() -> impl Strategy<Value = String> {
    let piece = prop_oneof![3 => text(), 1 => tag_lookalike()];
    (vec(piece, 0..4), select(vec!["", "body", "f_1", "é"])).prop_map(|(body, named)| {
        let body = body.concat();
        let mut tag = named.to_owned();
        if body.contains(&format!("${tag}")) {
            tag.clear();
            let mut suffixes = TAG_SUFFIXES.chars().cycle();
            while body.contains(&format!("${tag}")) {
                tag.extend(suffixes.next());
            }
        }
        format!("${tag}${body}${tag}$")
    })
}

/// A COPY field in the text format: pg_dump escapes backslash, newline, CR and tab.
fn copy_field() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => text().prop_map(|t| t
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
            .replace('\t', "\\t")),
        1 => Just("\\N".to_owned()),
    ]
}

/// A piece of a dump: whole lines (ending in `\n`), and whether cleaning must remove them.
#[derive(Clone, Debug)]
struct Item {
    text: String,
    dropped: bool,
}

fn kept(text: String) -> Item {
    Item {
        text,
        dropped: false,
    }
}

fn dropped(text: String) -> Item {
    Item {
        text,
        dropped: true,
    }
}

/// The Hasura trigger line of rule 4, as the oracle reads the SPEC.
static HASURA_TRIGGER: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        "^CREATE TRIGGER \"?notify_hasura_.+\"? AFTER [[:alnum:]]+ ON .+ FOR EACH ROW \
         EXECUTE (FUNCTION|PROCEDURE) \"?hdb_catalog\"?\\.\"?notify_hasura_.+\"?\\(\\);$",
    )
    .expect("valid pattern")
});

/// A string literal in a trigger's `WHEN` condition, often holding the words of Hasura's
/// pattern: its opening (`'` or `E'`) and its text as written between the quotes.
fn when_literal() -> impl Strategy<Value = (String, String)> {
    let text = prop_oneof![
        1 => text(),
        2 => Just(" FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x".to_owned()),
        1 => Just("'); x := (' FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_".to_owned()),
    ];
    (text, any::<bool>()).prop_map(|(text, escape)| {
        if escape {
            (
                "E'".to_owned(),
                text.replace('\\', "\\\\").replace('\'', "\\'"),
            )
        } else {
            ("'".to_owned(), text.replace('\'', "''"))
        }
    })
}

/// A `CREATE TRIGGER` statement, often one of Hasura's event triggers. It is removed when it
/// is a single line matching the SPEC's pattern with its quoted names and the text of its
/// `WHEN` literal masked: names and literals are often made of the pattern's own words, and
/// must not stand for them (`ON "t FOR EACH ROW EXECUTE FUNCTION hdb_catalog.notify_hasura_x"`
/// names a table, it calls nothing); a name holding a newline makes the statement span
/// lines, and then none of its lines is a trigger line to remove.
fn trigger() -> impl Strategy<Value = Item> {
    let hasura_name = || name().prop_map(|n| format!("notify_hasura_{n}"));
    let trigger_name = prop_oneof![3 => hasura_name(), 1 => name()];
    let function_name = prop_oneof![3 => hasura_name(), 1 => name()];
    (
        trigger_name,
        select(vec!["INSERT", "UPDATE", "DELETE", "INSERT OR UPDATE"]),
        name(),
        select(vec!["FUNCTION", "PROCEDURE"]),
        select(vec!["hdb_catalog", "public"]),
        function_name,
        prop::option::weighted(0.2, when_literal()),
    )
        .prop_map(|(trigger, event, table, kind, schema, function, when)| {
            // A condition's literal, as pg_dump writes it: `WHEN ((new.a <> 'x'::text))`.
            let when = |masked: bool| match &when {
                None => String::new(),
                Some((open, text)) => {
                    let text = if masked {
                        "#".repeat(text.len())
                    } else {
                        text.clone()
                    };
                    format!(" WHEN ((new.a <> {open}{text}'::text))")
                }
            };
            let line = format!(
                "CREATE TRIGGER {} AFTER {event} ON public.{} FOR EACH ROW{} EXECUTE {kind} {}.{}();",
                ident(&trigger),
                ident(&table),
                when(false),
                ident(schema),
                ident(&function)
            );
            let single = !line.contains('\n');
            // Each name as the pattern sees it: in quotes, bytes of no bare name become `#`.
            let masked = |name: &str| {
                let quoted = ident(name);
                match quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
                    Some(inner) => {
                        let keep = |c: char| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii();
                        let inner: String =
                            inner.chars().map(|c| if keep(c) { c } else { '#' }).collect();
                        format!("\"{inner}\"")
                    }
                    None => quoted,
                }
            };
            let seen = format!(
                "CREATE TRIGGER {} AFTER {event} ON public.{} FOR EACH ROW{} EXECUTE {kind} {}.{}();",
                masked(&trigger),
                masked(&table),
                when(true),
                ident(schema),
                masked(&function)
            );
            let hasura = single && HASURA_TRIGGER.is_match(&seen);
            Item {
                text: line + "\n",
                dropped: hasura,
            }
        })
}

/// Statements that cleaning keeps whole, with literals, bodies and names in them.
fn statement() -> impl Strategy<Value = Item> {
    let table = (name(), name(), name(), literal()).prop_map(|(t, a, b, lit)| {
        let (t, a, b) = (ident(&t), ident(&a), ident(&b));
        format!(
            "CREATE TABLE public.{t} (\n    {a} integer NOT NULL,\n    \
             {b} text DEFAULT {lit}\n);\n"
        )
    });
    let comment_on = (name(), literal())
        .prop_map(|(t, lit)| format!("COMMENT ON TABLE public.{} IS {lit};\n", ident(&t)));
    let insert = (name(), literal(), literal())
        .prop_map(|(t, a, b)| format!("INSERT INTO public.{} VALUES (1, {a}, {b});\n", ident(&t)));
    let function = (name(), dollar_quoted()).prop_map(|(f, body)| {
        format!(
            "CREATE FUNCTION public.{}() RETURNS text\n    LANGUAGE plpgsql\n    AS {body};\n",
            ident(&f)
        )
    });
    // Not pg_dump's, but plain SQL a caller could restore: nested block comments.
    let view = (name(), literal(), text()).prop_map(|(v, lit, note)| {
        let note: String = note.chars().filter(|c| !matches!(c, '*' | '/')).collect();
        format!(
            "CREATE VIEW public.{} AS\n SELECT {lit} AS c /* {note} /* {note} */ */;\n",
            ident(&v)
        )
    });
    let copy =
        (name(), name(), vec((copy_field(), copy_field()), 0..4)).prop_map(|(t, c, rows)| {
            let mut block = format!("COPY public.{} ({}, b) FROM stdin;\n", ident(&t), ident(&c));
            for (a, b) in rows {
                block.push_str(&format!("{a}\t{b}\n"));
            }
            block.push_str("\\.\n");
            block
        });
    prop_oneof![
        table.prop_map(kept),
        comment_on.prop_map(kept),
        insert.prop_map(kept),
        function.prop_map(kept),
        view.prop_map(kept),
        copy.prop_map(kept),
        select(KEPT_SETS).prop_map(|s| kept(format!("{s}\n"))),
    ]
}

/// What cleaning removes between statements: blank lines, `--` comments (pg_dump writes
/// them on one line), rule 3's lines and psql meta-commands.
fn noise() -> impl Strategy<Value = Item> {
    let comment = text().prop_map(|t| format!("--{}\n", t.replace(['\n', '\r'], " ")));
    let meta = ("[a-zA-Z0-9]{1,12}", 0..3u8).prop_map(|(key, kind)| match kind {
        0 => format!("\\restrict {key}\n"),
        1 => format!("\\unrestrict {key}\n"),
        _ => format!("\\connect -reuse-previous=on \"dbname='{key}'\"\n"),
    });
    prop_oneof![
        select(vec!["\n", "  \n", "\t\n"]).prop_map(|s| dropped(s.to_owned())),
        comment.prop_map(dropped),
        select(DROPPED_SETS).prop_map(|s| dropped(format!("{s}\n"))),
        meta.prop_map(dropped),
    ]
}

/// pg_dump-shaped output: statements and noise in any order, the last newline sometimes
/// missing, sometimes with CRLF line ends; returns the dump and what cleaning must give.
fn dump() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let item = prop_oneof![3 => statement(), 1 => trigger(), 3 => noise()];
    (vec(item, 0..14), any::<bool>(), 0..4u8).prop_map(|(items, crlf, no_last_newline)| {
        let fix = |s: &str| {
            if crlf {
                s.replace('\n', "\r\n")
            } else {
                s.to_owned()
            }
        };
        let mut input = String::new();
        let mut expected = String::new();
        let mut changed = std::collections::HashSet::new();
        for item in &items {
            input.push_str(&fix(&item.text));
            let mut dropped = item.dropped;
            if let Some((setting, resets)) = setting_of(item.text.trim_end_matches('\n')) {
                if !resets {
                    changed.insert(setting.to_owned());
                } else if changed.remove(setting) {
                    dropped = false;
                }
            }
            if !dropped {
                expected.push_str(&fix(&item.text));
            }
        }
        // The cleaner gives the last line its newline back.
        if no_last_newline == 0 {
            input.pop();
        }
        (input.into_bytes(), expected.into_bytes())
    })
}

/// Anything: bytes and the fragments the scanner reacts to, in any order, including lines
/// longer than the cleaner holds.
fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    let mut fragments: Vec<Vec<u8>> = [
        "\n",
        "\r\n",
        " ",
        "x",
        "E",
        "e",
        "'",
        "\"",
        "\\",
        "\\.",
        "$",
        "$$",
        "$a$",
        "$1",
        "-",
        "--",
        "/",
        "/*",
        "*/",
        "*",
        ";",
        "COPY ",
        "COPY t (a) FROM stdin;",
        " FROM stdin;",
        "SET lock_timeout = 0;",
        "CREATE SCHEMA public;",
        "\\restrict k",
        "é",
        "\0",
        "CREATE TRIGGER notify_hasura_x AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION \
         hdb_catalog.notify_hasura_x();",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fragments.extend([vec![b' '; 5000], vec![0xff], vec![0xc3]]);
    // Long dollar-quote tags and look-alikes of them (same length, last byte changed).
    let long_tag: String = TAG_SUFFIXES.chars().cycle().take(100).collect();
    fragments.extend([
        format!("${long_tag}$").into_bytes(),
        format!("${}Y$", &long_tag[..99]).into_bytes(),
    ]);
    let piece = prop_oneof![
        4 => select(fragments),
        1 => vec(any::<u8>(), 1..8),
    ];
    vec(piece, 0..60).prop_map(|pieces| pieces.concat())
}

/// Input of every kind: pg_dump-shaped or anything at all.
fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![dump().prop_map(|(input, _)| input), any_bytes()]
}

/// Cleans `input` fed in chunks that end at `cuts` (positions taken modulo its length).
fn clean_in_chunks(input: &[u8], cuts: &[Index]) -> Vec<u8> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut cleaner = Cleaner::new();
    let mut from = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        cleaner.feed(&input[from..cut], &mut out);
        from = cut;
    }
    cleaner.finish(&mut out);
    out
}

/// `bytes` as lines, each ending in `\n` (the last gets one, as the cleaner writes it).
fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|line| {
            let mut line = line.to_vec();
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            line
        })
        .collect()
}

fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

proptest! {
    #![proptest_config(config(1000))]

    /// On pg_dump-shaped output the cleaner removes exactly the noise between statements and
    /// keeps every statement, literal, body and COPY block byte for byte.
    #[test]
    fn clean_removes_exactly_the_noise_of_a_dump((input, expected) in dump()) {
        let got = clean(&input);
        prop_assert!(
            got == expected,
            "input {}\n got {}\nwant {}",
            show(&input), show(&got), show(&expected)
        );
    }

    /// Cleaning a cleaned dump changes nothing. This holds for pg_dump-shaped input, not for
    /// any bytes: the scanner knows a COPY header by its line's edges, as pg_dump writes
    /// `COPY … FROM stdin;` on one line (a newline in it is inside a quoted name). A header
    /// broken over lines around a comment line is valid SQL but never pg_dump's: there the
    /// first pass reads the data as SQL and the second, with the comment gone, as data:
    /// `COPY t (a) FROM\n--\n stdin;\n'\n\\.\n--x\n` loses its `--x` only the second time.
    #[test]
    fn clean_is_idempotent_on_dumps((input, _) in dump()) {
        let once = clean(&input);
        let twice = clean(&once);
        prop_assert!(
            once == twice,
            "input {}\nonce  {}\ntwice {}",
            show(&input), show(&once), show(&twice)
        );
    }

    /// Cleaning only removes lines: the output's lines are the input's, in order, each whole.
    #[test]
    fn clean_output_lines_are_a_subsequence_of_input_lines(input in input()) {
        let got = clean(&input);
        let mut source = lines(&input).into_iter();
        for line in lines(&got) {
            prop_assert!(source.any(|l| l == line), "{} is no input line, in order", show(&line));
        }
        prop_assert!(got.is_empty() || got.ends_with(b"\n"));
    }

    /// Where the chunks of a stream end never changes the output.
    #[test]
    fn clean_does_not_depend_on_chunking(input in input(), cuts in vec(any::<Index>(), 0..24)) {
        prop_assert_eq!(clean_in_chunks(&input, &cuts), clean(&input));
    }

    /// Fed one byte at a time, too.
    #[test]
    fn clean_byte_by_byte_is_the_same(input in input()) {
        let mut out = Vec::new();
        let mut cleaner = Cleaner::new();
        for byte in input.chunks(1) {
            cleaner.feed(byte, &mut out);
        }
        cleaner.finish(&mut out);
        prop_assert_eq!(out, clean(&input));
    }

    /// A missing final newline changes nothing: the last line is cleaned as if it had one.
    #[test]
    fn clean_treats_a_last_line_without_newline_as_ended(input in input()) {
        let mut ended = input.clone();
        if ended.last() != Some(&b'\n') {
            ended.push(b'\n');
        }
        prop_assert_eq!(clean(&input), clean(&ended), "input {}", show(&input));
    }

    /// Random bytes never make it panic.
    #[test]
    fn clean_never_panics(input in vec(any::<u8>(), 0..2048)) {
        clean(&input);
    }
}
