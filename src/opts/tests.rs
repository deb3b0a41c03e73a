//! Table-driven tests of the option parser against pg_dump's own rules.

use super::table::LONG_OPTIONS;
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
