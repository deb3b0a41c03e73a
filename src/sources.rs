//! The databases that can be dumped, by name. `default` comes from
//! `HASURA_GRAPHQL_DATABASE_URL`.

use std::collections::BTreeMap;

use crate::config::Secret;
use crate::conninfo::ConnInfo;

/// One database that can be dumped.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub conn: ConnInfo,
}

/// Every configured source, by name.
#[derive(Debug, Clone, Default)]
pub struct Sources(BTreeMap<String, Source>);

impl Sources {
    /// The sources of a configuration: `default` when a database URL is set.
    pub fn from_database_url(database_url: Option<&Secret>) -> Sources {
        let mut sources = Sources::default();
        if let Some(url) = database_url {
            sources.insert("default", ConnInfo::parse(url.expose()));
        }
        sources
    }

    /// Adds (or replaces) a source.
    pub fn insert(&mut self, name: &str, conn: ConnInfo) {
        let source = Source {
            name: name.to_owned(),
            conn,
        };
        self.0.insert(name.to_owned(), source);
    }

    /// The source called `name`.
    pub fn get(&self, name: &str) -> Option<&Source> {
        self.0.get(name)
    }

    /// Whether no source is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
