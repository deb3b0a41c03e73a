//! After `migrate create --from-server`, the migration is marked applied on the server — as
//! the Hasura CLI does (`migrate apply --skip-execution`) — when the server behind the
//! endpoint has Hasura's metadata API (Hasura itself, or pgdump-api in front of it): the
//! CLI's state from `get_catalog_state`, the version added, written back with
//! `set_catalog_state`. A server without that API (a bare pgdump-api) is told apart by its
//! 404; the user is told how to mark the migration later. Either way the migration stays: a
//! failure here is a warning, as it is in the Hasura CLI.

use serde_json::{json, Value};

use super::request::Endpoint;

/// Marks `version` of `database` applied, or says on stderr how to do it later.
pub(super) async fn mark_applied(endpoint: &Endpoint, database: &str, version: u128, quiet: bool) {
    let later = format!(
        "mark it applied later, against Hasura, with: \
         hasura migrate apply --skip-execution --version {version} --database-name {database}"
    );
    match mark(endpoint, database, version).await {
        Ok(true) if !quiet => eprintln!("marked migration {version} as applied on the server"),
        Ok(true) => {}
        Ok(false) => eprintln!(
            "the server has no Hasura metadata API (a pgdump-api not in front of Hasura), so \
             migration {version} is not marked applied; {later}"
        ),
        Err(why) => {
            eprintln!("warning: could not mark migration {version} as applied: {why}; {later}")
        }
    }
}

/// `Ok(false)`: the server has no metadata API.
async fn mark(endpoint: &Endpoint, database: &str, version: u128) -> Result<bool, String> {
    let get = json!({"type": "get_catalog_state", "args": {}});
    let (status, state) = endpoint.metadata(&get).await?;
    match status {
        200 => {}
        404 => return Ok(false),
        _ => return Err(format!("get_catalog_state answered {status}: {state}")),
    }
    let mut cli_state = match state.get("cli_state") {
        Some(Value::Object(cli_state)) => Value::Object(cli_state.clone()),
        _ => json!({"settings": {}, "isStateCopyCompleted": false}),
    };
    if !cli_state["migrations"].is_object() {
        cli_state["migrations"] = json!({});
    }
    if !cli_state["migrations"][database].is_object() {
        cli_state["migrations"][database] = json!({});
    }
    // Applied and not dirty.
    cli_state["migrations"][database][version.to_string()] = json!(false);
    let set = json!({"type": "set_catalog_state", "args": {"type": "cli", "state": cli_state}});
    match endpoint.metadata(&set).await? {
        (200, _) => Ok(true),
        (status, answer) => Err(format!("set_catalog_state answered {status}: {answer}")),
    }
}
