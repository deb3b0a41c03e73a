//! pg_dump's `long_options[]` table, entry by entry, and finding a long option in it the way
//! glibc's getopt_long does (exact name, else an unambiguous prefix).

/// What getopt_long reports for a table entry (its flag and val). glibc counts two entries as
/// one option, so that a prefix matching both is not ambiguous, when this and has_arg agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Id {
    /// Entries that return a short option letter, like `{"no-acl", no_argument, NULL, 'x'}`.
    Short(char),
    /// Entries without a letter (they set a flag or return a number), by their main name.
    Long(&'static str),
}

/// One entry of pg_dump's `long_options[]`.
#[derive(Debug)]
pub(super) struct LongOpt {
    pub(super) name: &'static str,
    pub(super) takes_arg: bool,
    pub(super) id: Id,
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
pub(super) const LONG_OPTIONS: &[LongOpt] = &[
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

/// Finds a long option as glibc does: an exact name wins; otherwise `name` must be a prefix of
/// entries that are all the same option as the first one it matches. On failure, the
/// candidates glibc would list (none for an unknown name).
pub(super) fn lookup_long(name: &str) -> Result<&'static LongOpt, Vec<&'static LongOpt>> {
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
pub(super) fn list(candidates: &[&LongOpt]) -> String {
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
