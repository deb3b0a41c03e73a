//! The cleaner's end-to-end tables: each input is cleaned whole, split at every boundary and
//! byte by byte, and must come out the same, with exactly the lines marked `#drop ` removed.
//! They test the lexer, the rules and the streaming wrapper together.

use super::lex::MAX_TAG;
use super::rules::LINE_CAP;
use super::{clean, Cleaner};

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
