//! `clean_output` against schemas built to mislead it: whatever a user who may create objects
//! puts in them, the cleaned dump replayed through a client that is not psql must rebuild
//! the same schema as psql restoring the raw dump.

use crate::clean::{clean_dump, raw_dump, replay};
use crate::support::{Server, TestDb};

/// The tag pg_dump makes for a body holding `$` and the first `len - 1` bytes of it.
fn pg_dump_tag(len: usize) -> String {
    "_XXXXXXX".chars().cycle().take(len).collect()
}

/// A function whose authorization check sits on a line starting with `--` inside a string
/// literal, behind a look-alike of its body's `len`-byte tag (same length, last byte
/// changed): a cleaner that takes the look-alike for the end of the body drops that line.
fn guarded_function(len: usize) -> String {
    let tag = pg_dump_tag(len);
    let lookalike = format!("${}Y$", &tag[..len - 1]);
    format!(
        "CREATE FUNCTION public.secret_{len}() RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
  marker text;
  x text;
BEGIN
  marker := '{lookalike}';
  x := '
--'; IF current_user <> 'admin' THEN RAISE EXCEPTION 'denied'; END IF; x := '
';

  RETURN 'secret';
END
$fn$;
"
    )
}

/// Regression: the cleaner remembered 64 bytes of a dollar-quote tag and took any tag byte
/// after those as a match, so a look-alike closed a longer tag early and the body's lines
/// after it were cleaned as top-level code: the authorization check went.
#[tokio::test]
async fn long_dollar_tag_lookalike_does_not_close_body() {
    let schema: String = [65, 100, 1000].map(guarded_function).concat();
    let source = TestDb::with(&schema).await;
    let raw = raw_dump(&source, &["--schema-only"]);
    for len in [65, 100, 1000] {
        let tag = format!("${}$", pg_dump_tag(len));
        assert!(
            raw.contains(&format!("AS {tag}\n")),
            "pg_dump chose another tag:\n{raw}"
        );
    }

    let server = Server::builder(&source.url).start();
    let target = TestDb::new().await;
    let client = target.client().await;
    replay(&client, &clean_dump(&server, &["--schema-only"]).await).await;
    assert_eq!(raw_dump(&target, &["--schema-only"]), raw);
    for len in [65, 100, 1000] {
        let denied = client
            .query_one(&format!("SELECT public.secret_{len}()"), &[])
            .await
            .expect_err("the check must stay");
        assert!(format!("{denied:?}").contains("denied"), "{denied:?}");
    }
}
