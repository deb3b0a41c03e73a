//! The deployment files in `deploy/` cannot drift from the binary: each parses, every
//! setting they give pgdump-api is one that `pgdump-api serve --help` documents, and the
//! image they run is this version's.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_norway::Value;

use crate::support::pgdump_api;

/// The environment variables `pgdump-api serve --help` documents.
fn documented() -> BTreeSet<String> {
    let output = pgdump_api().args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let names: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect();
    assert!(names.contains("HASURA_GRAPHQL_PG_DUMP_PATHS"), "{help}");
    names
}

fn deploy_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Every YAML document of `text`, merge keys (`<<: *anchor`) applied.
fn yaml_documents(name: &str, text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| {
            let mut value = Value::deserialize(document)
                .unwrap_or_else(|err| panic!("{name} does not parse: {err}"));
            value.apply_merge().unwrap();
            value
        })
        .collect()
}

/// The keys of a mapping.
fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_mapping()
        .into_iter()
        .flat_map(|mapping| mapping.keys())
        .filter_map(|key| Some(key.as_str()?.to_owned()))
        .collect()
}

/// The names in `set` that `serve --help` does not document.
fn undocumented(set: &BTreeSet<String>) -> BTreeSet<String> {
    let documented = documented();
    set.iter()
        .filter(|name| !documented.contains(*name))
        .cloned()
        .collect()
}

fn this_image() -> String {
    format!("pgdump-api:{}", env!("CARGO_PKG_VERSION"))
}

#[test]
fn compose_file_parses_and_gives_pgdump_api_only_documented_settings() {
    let text = deploy_file("docker-compose.yml");
    let documents = yaml_documents("docker-compose.yml", &text);
    assert_eq!(documents.len(), 1);
    let services = &documents[0]["services"];
    let ours = &services["pgdump-api"];
    assert_eq!(ours["image"].as_str(), Some(this_image().as_str()));

    // Hasura's own settings that pgdump-api shares are not its own: the variables the
    // metadata names with `from_env` (PG_DATABASE_URL). Those must be Hasura's too.
    let env = keys(&ours["environment"]);
    let hasura_env = keys(&services["graphql-engine"]["environment"]);
    for name in env
        .iter()
        .filter(|name| !name.starts_with("HASURA_GRAPHQL_"))
    {
        assert!(
            hasura_env.contains(name),
            "{name} is neither a pgdump-api setting nor Hasura's"
        );
    }
    let ours_only: BTreeSet<String> = env
        .into_iter()
        .filter(|name| name.starts_with("HASURA_GRAPHQL_"))
        .collect();
    assert_eq!(
        undocumented(&ours_only),
        BTreeSet::new(),
        "docker-compose.yml gives pgdump-api settings that `serve --help` does not document"
    );

    // One published port, pgdump-api's: everything reaches Hasura through it.
    let published: Vec<String> = services
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, service)| service.get("ports").is_some())
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(published, ["pgdump-api"]);
}

#[test]
fn kubernetes_manifests_parse_and_set_only_documented_settings() {
    let text = deploy_file("kubernetes.yaml");
    let documents = yaml_documents("kubernetes.yaml", &text);
    let kinds: Vec<&str> = documents
        .iter()
        .map(|document| document["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Deployment", "Service", "Ingress"]);

    let deployment = &documents[0]["spec"];
    assert_eq!(deployment["replicas"].as_u64(), Some(2));
    let pod = &deployment["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(container["image"].as_str(), Some(this_image().as_str()));
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert!(container[probe]["httpGet"]["path"].is_string(), "{probe}");
    }
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["requests"]["cpu"].is_string());
    let env: BTreeSet<String> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|var| var["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(undocumented(&env), BTreeSet::new(), "kubernetes.yaml");

    // The Ingress sends the PG Dump API to the Service above, and the rest to Hasura.
    let service = documents[1]["metadata"]["name"].as_str().unwrap();
    let paths = documents[2]["spec"]["rules"][0]["http"]["paths"]
        .as_sequence()
        .unwrap();
    let pg_dump = paths
        .iter()
        .find(|path| path["path"].as_str() == Some("/v1alpha1/pg_dump"))
        .expect("a rule for /v1alpha1/pg_dump");
    assert_eq!(
        pg_dump["backend"]["service"]["name"].as_str(),
        Some(service)
    );
}

#[test]
fn systemd_unit_and_its_environment_file_set_only_documented_settings() {
    let mut env = BTreeSet::new();
    let unit = deploy_file("pgdump-api.service");
    for line in unit.lines() {
        if let Some(assignments) = line.strip_prefix("Environment=") {
            for assignment in assignments.split_whitespace() {
                let (name, _) = assignment.split_once('=').expect("NAME=value");
                env.insert(name.to_owned());
            }
        }
    }
    assert!(unit.contains("EnvironmentFile=/etc/pgdump-api/env"));
    assert!(unit.contains("ExecStart=/usr/local/bin/pgdump-api serve"));
    let file = deploy_file("pgdump-api.env");
    for line in file.lines().map(str::trim) {
        if !line.is_empty() && !line.starts_with('#') {
            let (name, _) = line.split_once('=').expect("NAME=value");
            env.insert(name.to_owned());
        }
    }
    assert!(env.contains("HASURA_GRAPHQL_DATABASE_URL"));
    assert_eq!(undocumented(&env), BTreeSet::new(), "pgdump-api.service");
}
