//! The `pgdump-api` command line: the server's subcommand and the client's, parsed by clap.
//! The binary matches on [`Command`] and hands over to [`crate::serve`] or [`crate::client`].

use std::ffi::OsString;

use clap::{CommandFactory, Parser, Subcommand};

use crate::client::args::{DumpArgs, MigrateArgs, SeedArgs};
use crate::config::ServeArgs;

/// Examples of the whole command line, for `--help`.
const EXAMPLES: &str = "\
Examples:
  # The server, for the database in HASURA_GRAPHQL_DATABASE_URL:
  HASURA_GRAPHQL_ADMIN_SECRET=s3cret pgdump-api serve
  # Options may come before `serve`, as with graphql-engine:
  pgdump-api --database-url postgres://user:pw@db/app serve --server-port 8081
  # The client, inside a Hasura project:
  pgdump-api migrate create init --from-server";

/// Examples of `serve`, for `--help`.
const SERVE_EXAMPLES: &str = "\
Examples:
  pgdump-api serve --database-url postgres://user:pw@db/app --admin-secret \"$SECRET\"
  pgdump-api serve --sources-file metadata/databases/databases.yaml --server-port 8081
  # graphql-engine's order works too:
  pgdump-api --database-url postgres://user:pw@db/app serve";

/// The `pgdump-api` command line.
#[derive(Debug, Parser)]
#[command(
    name = "pgdump-api",
    version,
    about = "A Hasura-compatible PG Dump API: the server and its client",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `pgdump-api`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve POST /v1alpha1/pg_dump.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(Box<ServeArgs>),
    /// Dump a database through a server's PG Dump API, to a file (atomically) or stdout.
    Dump(DumpArgs),
    /// Create Hasura migrations from a server's schema.
    Migrate(MigrateArgs),
    /// Create Hasura seed files from a server's tables.
    Seed(SeedArgs),
    /// Internal: how the server starts pg_dump, tied to its own life (see `launcher`).
    #[command(name = crate::launcher::SUBCOMMAND, hide = true)]
    ExecPgDump(crate::launcher::LaunchArgs),
}

impl Cli {
    /// Parses the process's arguments; `serve`'s options may come before it, as
    /// `graphql-engine --database-url X serve` takes them.
    pub fn parse_args() -> Cli {
        Cli::parse_from(hoist_serve_options(std::env::args_os().collect()))
    }
}

/// `pgdump-api --database-url X serve …` as `pgdump-api serve --database-url X …`: the
/// options before the subcommand move after it when every one of them is `serve`'s and the
/// subcommand is `serve`. Anything else is left for clap to parse (and explain).
pub fn hoist_serve_options(args: Vec<OsString>) -> Vec<OsString> {
    let mut command = Cli::command();
    // Until built, an argument does not know how many values it takes.
    command.build();
    let Some(serve) = command.find_subcommand("serve") else {
        return args;
    };
    let mut at = 1;
    while at < args.len() {
        let Some(token) = args[at].to_str() else {
            return args;
        };
        if token == "serve" {
            break;
        }
        let Some(flag) = token.strip_prefix("--") else {
            return args;
        };
        let (name, inline_value) = match flag.split_once('=') {
            Some((name, _)) => (name, true),
            None => (flag, false),
        };
        let Some(arg) = serve
            .get_arguments()
            .find(|arg| arg.get_long() == Some(name))
        else {
            return args;
        };
        let takes_value = arg.get_num_args().is_some_and(|n| n.min_values() > 0);
        at += if takes_value && !inline_value { 2 } else { 1 };
    }
    if at <= 1 || at >= args.len() {
        return args;
    }
    let mut hoisted = vec![args[0].clone(), args[at].clone()];
    hoisted.extend_from_slice(&args[1..at]);
    hoisted.extend_from_slice(&args[at + 1..]);
    hoisted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn hoisted(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        hoist_serve_options(args)
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect()
    }

    #[test]
    fn serve_options_may_come_before_serve() {
        assert_eq!(
            hoisted(&[
                "p",
                "--database-url",
                "postgres://h/db",
                "serve",
                "--server-port",
                "1"
            ]),
            [
                "p",
                "serve",
                "--database-url",
                "postgres://h/db",
                "--server-port",
                "1"
            ]
        );
        assert_eq!(
            hoisted(&["p", "--dev-mode", "--log-level=warn", "serve"]),
            ["p", "serve", "--dev-mode", "--log-level=warn"]
        );
        // A value that happens to be `serve` is a value.
        assert_eq!(
            hoisted(&["p", "--admin-secret", "serve", "serve"]),
            ["p", "serve", "--admin-secret", "serve"]
        );
        for unchanged in [
            &["p", "serve", "--database-url", "x"][..],
            &["p", "--version"],
            &["p", "--no-such-flag", "serve"],
            &["p", "--endpoint", "h", "dump"],
            &["p", "--database-url", "x"],
        ] {
            assert_eq!(hoisted(unchanged), unchanged);
        }
        let cli = Cli::try_parse_from(hoist_serve_options(
            ["p", "--database-url", "postgres://h/db", "serve"]
                .map(OsString::from)
                .to_vec(),
        ))
        .unwrap();
        assert!(matches!(cli.command, Command::Serve(_)));
    }

    /// Every command's help ends with examples; each usage line puts the name first.
    #[test]
    fn every_commands_help_ends_with_examples() {
        let mut command = Cli::command();
        let paths = [
            &[][..],
            &["serve"],
            &["dump"],
            &["migrate", "create"],
            &["seed", "create"],
        ];
        for path in paths {
            let mut sub = &mut command;
            for name in path {
                sub = sub.find_subcommand_mut(name).unwrap();
            }
            let help = sub.render_help().to_string();
            let examples = help.rfind("Examples:").unwrap_or_else(|| panic!("{help}"));
            assert!(help[examples..].contains("pgdump-api "), "{help}");
            assert!(!help[examples..].contains("Options:"), "{help}");
        }
        let create = command
            .find_subcommand_mut("migrate")
            .unwrap()
            .find_subcommand_mut("create")
            .unwrap();
        let usage = create.render_usage().to_string();
        assert!(usage.contains("create <NAME> --from-server"), "{usage}");
    }
}
