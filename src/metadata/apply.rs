//! From a metadata document to the published sources: each source resolved in the server's
//! environment, merged with the sources file's and `default` from the database URL, compared
//! with what was in use (each change logged), and published.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::{Env, Fault};
use crate::sources::{self, Entry, Problem, Sources};

/// The metadata's sources in use, and how to publish new ones.
pub(super) struct Apply {
    /// The sources file's.
    base: Sources,
    /// `default` from the database URL, if set.
    fallback: Sources,
    file: Option<PathBuf>,
    env: Env,
    publish: watch::Sender<Arc<Sources>>,
    current: BTreeMap<String, Entry>,
    started: bool,
}

impl Apply {
    pub(super) fn new(
        base: Sources,
        fallback: Sources,
        file: Option<PathBuf>,
        env: Env,
        publish: watch::Sender<Arc<Sources>>,
    ) -> Apply {
        Apply {
            base,
            fallback,
            file,
            env,
            publish,
            current: BTreeMap::new(),
            started: false,
        }
    }

    /// The server has started: from now on a conflict with the sources file is logged, and
    /// each change too.
    pub(super) fn started(&mut self) {
        self.started = true;
    }

    /// Publishes the sources of `document` (`None`: no metadata) at `version`; `Ok(false)`
    /// when a source was invalid (it keeps its last good definition). A document that does
    /// not parse changes nothing.
    pub(super) fn apply(&mut self, document: Option<&str>, version: i64) -> Result<bool, Fault> {
        let parsed = match document {
            None => Vec::new(),
            Some(text) => match sources::parse_document(text, |var| (self.env)(var)) {
                Ok(parsed) => parsed,
                Err(err) => {
                    tracing::error!(target: "schema-sync", resource_version = version,
                        error = format!("{err:#}"),
                        "Hasura's metadata is not a valid document: keeping the sources in use");
                    return Err(Fault::Invalid);
                }
            },
        };
        let mut invalid = false;
        let mut entries = BTreeMap::new();
        for (name, parsed) in parsed {
            let entry = match parsed {
                Ok(entry) => entry,
                Err((kind, Problem::Unresolved(reason))) => Entry::Unusable { kind, reason },
                Err((kind, Problem::Invalid(why))) => {
                    invalid = true;
                    tracing::error!(target: "schema-sync", source = %name, kind = %kind,
                        resource_version = version, error = %why,
                        "invalid source in Hasura's metadata: keeping its last good definition");
                    match self.current.get(&name) {
                        Some(last_good) => last_good.clone(),
                        None => Entry::Unusable {
                            kind,
                            reason: format!("invalid in Hasura's metadata: {why}"),
                        },
                    }
                }
            };
            entries.insert(name, entry);
        }
        for (name, entry) in entries.iter_mut() {
            if self.base.entry(name).is_none() {
                continue;
            }
            let file = self.file.as_deref().unwrap_or("".as_ref()).display();
            let message = format!(
                "source {name:?} is defined both in the sources file {file} and in Hasura's \
                 metadata: remove it from one of them"
            );
            if !self.started {
                return Err(Fault::Conflict(message));
            }
            *entry = Entry::Unusable {
                kind: entry.kind().to_owned(),
                reason: message,
            };
        }
        if self.started {
            log_changes(&self.current, &entries, version);
        }
        let sources = merged(&self.base, &entries, self.fallback.entry(sources::DEFAULT));
        self.publish.send_replace(Arc::new(sources));
        self.current = entries;
        Ok(!invalid)
    }
}

/// The sources file's sources, the metadata's (which win: a name in both is already marked
/// unusable), and `default` when neither has one.
pub(super) fn merged(
    base: &Sources,
    metadata: &BTreeMap<String, Entry>,
    default: Option<&Entry>,
) -> Sources {
    let mut sources = base.clone();
    for (name, entry) in metadata {
        sources.set(name, entry.clone());
    }
    if let (None, Some(default)) = (sources.entry(sources::DEFAULT), default) {
        sources.set(sources::DEFAULT, default.clone());
    }
    sources
}

/// Where a source's connection string comes from (or why it cannot be used): safe to log.
pub(crate) fn describe(entry: &Entry) -> String {
    match entry {
        Entry::Postgres { origin, .. } => origin.to_string(),
        Entry::Unusable { reason, .. } => format!("unusable: {reason}"),
        Entry::Other { .. } => "not dumped".to_owned(),
    }
}

fn log_changes(old: &BTreeMap<String, Entry>, new: &BTreeMap<String, Entry>, version: i64) {
    for (name, entry) in new {
        let change = match old.get(name) {
            None => "source added",
            Some(before) if before != entry => "source changed",
            Some(_) => continue,
        };
        let (kind, url_from) = (entry.kind(), describe(entry));
        match entry {
            Entry::Unusable { .. } => tracing::warn!(target: "schema-sync", source = %name,
                kind, url_from, resource_version = version, "{change}, but it cannot be used"),
            _ => tracing::info!(target: "schema-sync", source = %name, kind, url_from,
                resource_version = version, "{change}"),
        }
    }
    for (name, entry) in old {
        if !new.contains_key(name) {
            tracing::info!(target: "schema-sync", source = %name, kind = entry.kind(),
                resource_version = version, "source removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::sources::Unavailable;

    fn doc(sources: &[(&str, &str)]) -> String {
        let sources: Vec<_> = sources
            .iter()
            .map(|(name, url)| {
                serde_json::json!({"name": name, "kind": "postgres",
                    "configuration": {"connection_info": {"database_url": serde_json::from_str::<serde_json::Value>(url).unwrap()}}})
            })
            .collect();
        serde_json::json!({"version": 3, "sources": sources}).to_string()
    }

    fn setup(base: Sources) -> (Apply, watch::Receiver<Arc<Sources>>) {
        let mut fallback = Sources::default();
        fallback
            .insert_database_url(&Secret::new("postgres://d@h/default"))
            .unwrap();
        let (publish, current) = watch::channel(Arc::new(Sources::default()));
        let env: Env = Arc::new(|var| (var == "SET").then(|| "postgres://e@h/env".to_owned()));
        let file = Some(PathBuf::from("databases.yaml"));
        (Apply::new(base, fallback, file, env, publish), current)
    }

    fn public(current: &watch::Receiver<Arc<Sources>>, name: &str) -> Result<String, Unavailable> {
        let sources = Arc::clone(&current.borrow());
        sources
            .get(name)
            .map(|source| source.conn.public().to_owned())
    }

    #[test]
    fn a_bad_document_or_source_keeps_the_last_good_definition() {
        let (mut apply, current) = setup(Sources::default());
        let first = doc(&[
            ("a", r#""postgres://a@h/one""#),
            ("b", r#"{"from_env": "SET"}"#),
        ]);
        apply.apply(Some(&first), 1).unwrap();
        assert_eq!(public(&current, "a").unwrap(), "postgres://a@h/one");
        assert_eq!(public(&current, "b").unwrap(), "postgres://e@h/env");
        assert_eq!(
            public(&current, "default").unwrap(),
            "postgres://d@h/default"
        );
        assert!(matches!(
            apply.apply(Some("{not json"), 2),
            Err(Fault::Invalid)
        ));
        assert_eq!(public(&current, "a").unwrap(), "postgres://a@h/one");
        let second = doc(&[("a", "[1]"), ("c", r#"{"from_env": "UNSET"}"#)]);
        assert!(!apply.apply(Some(&second), 3).unwrap());
        assert_eq!(public(&current, "a").unwrap(), "postgres://a@h/one");
        assert_eq!(public(&current, "b").unwrap_err(), Unavailable::NotFound);
        let Err(Unavailable::Unusable { reason }) = public(&current, "c") else {
            panic!("c should be unusable");
        };
        assert!(reason.contains("UNSET"), "{reason}");
    }

    #[test]
    fn a_name_in_the_sources_file_too_stops_startup_and_is_unusable_later() {
        let mut base = Sources::default();
        base.insert(
            "x",
            crate::conninfo::ConnInfo::parse("postgres://f@h/x").unwrap(),
        );
        let (mut apply, current) = setup(base);
        let document = doc(&[("x", r#""postgres://m@h/x""#)]);
        let Err(Fault::Conflict(message)) = apply.apply(Some(&document), 1) else {
            panic!("a conflict at startup");
        };
        assert!(
            message.contains("\"x\"") && message.contains("databases.yaml"),
            "{message}"
        );
        apply.started();
        apply.apply(Some(&document), 1).unwrap();
        assert!(matches!(
            public(&current, "x"),
            Err(Unavailable::Unusable { .. })
        ));
    }
}
