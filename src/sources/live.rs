//! [`LiveSources`]: the server's current sources, a snapshot that is replaced whole when
//! Hasura's metadata changes. A request looks its source up in the snapshot of the moment and
//! keeps what it found, so a change never touches a dump in flight. A name the snapshot lacks
//! asks the metadata reader to look again, once, before it is answered `not found`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::{Source, Sources, Unavailable};

/// A request to re-read the metadata now; answered when done.
pub(crate) type RefreshRequest = oneshot::Sender<()>;

/// How long a lookup waits for a re-read before answering with what it has.
const REFRESH_WAIT: Duration = Duration::from_secs(20);

/// The current sources; cheap to read, replaced by the metadata reader.
#[derive(Debug, Clone)]
pub(crate) struct LiveSources {
    current: watch::Receiver<Arc<Sources>>,
    refresh: Option<mpsc::Sender<RefreshRequest>>,
}

impl From<Sources> for LiveSources {
    /// Sources that never change.
    fn from(sources: Sources) -> LiveSources {
        let (_, current) = watch::channel(Arc::new(sources));
        LiveSources {
            current,
            refresh: None,
        }
    }
}

impl LiveSources {
    /// Sources that follow `current`; a lookup that misses sends on `refresh` first.
    pub(crate) fn new(
        current: watch::Receiver<Arc<Sources>>,
        refresh: mpsc::Sender<RefreshRequest>,
    ) -> LiveSources {
        LiveSources {
            current,
            refresh: Some(refresh),
        }
    }

    /// The sources as they are now.
    pub(crate) fn snapshot(&self) -> Arc<Sources> {
        Arc::clone(&self.current.borrow())
    }

    /// The PostgreSQL source called `name`. When it is not known, the metadata (if any) is
    /// read again once before the answer.
    pub(crate) async fn get(&self, name: &str) -> Result<Source, Unavailable> {
        match self.snapshot().get(name) {
            Err(Unavailable::NotFound) => {}
            found => return found,
        }
        if let Some(refresh) = &self.refresh {
            let (done, reply) = oneshot::channel();
            if refresh.send(done).await.is_ok() {
                let _ = tokio::time::timeout(REFRESH_WAIT, reply).await;
            }
        }
        self.snapshot().get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conninfo::ConnInfo;

    #[tokio::test]
    async fn a_miss_asks_for_a_refresh_and_sees_its_result() {
        let (publish, current) = watch::channel(Arc::new(Sources::default()));
        let (refresh, mut requests) = mpsc::channel::<RefreshRequest>(8);
        let live = LiveSources::new(current, refresh);
        tokio::spawn(async move {
            while let Some(done) = requests.recv().await {
                let mut sources = Sources::default();
                sources.insert("new", ConnInfo::parse("postgres://u@h/db").unwrap());
                publish.send_replace(Arc::new(sources));
                let _ = done.send(());
            }
        });
        assert_eq!(live.get("new").await.unwrap().name, "new");
        assert_eq!(live.get("nope").await.unwrap_err(), Unavailable::NotFound);
    }
}
