//! How many pg_dump processes may run per source, and how many requests may wait for one. A
//! dump is the heaviest thing a client can ask of a database: at most `max_concurrent` run
//! per source; up to `max_queue` more wait in line (leaving it if their client goes away);
//! beyond that a request is turned away at once. A source's line is made the first time it
//! is used, so that sources added while the server runs (from Hasura's metadata) get one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of every source.
#[derive(Debug)]
pub(crate) struct Limits {
    max_concurrent: usize,
    max_queue: usize,
    /// Lines are never removed: a source that leaves may still have dumps running, and the
    /// names are those of configured sources only.
    sources: Mutex<HashMap<String, Arc<SourceLimit>>>,
}

#[derive(Debug)]
struct SourceLimit {
    running: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
}

/// The right to run one pg_dump; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// A source's line is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy {
    pub running: usize,
    pub queued: usize,
}

/// Counts a waiting request for as long as it waits (also when its future is dropped).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Limits {
    /// Limits for `sources` (more are added when first used); `max_concurrent` is at least 1.
    pub(crate) fn new<'a>(
        sources: impl IntoIterator<Item = &'a str>,
        max_concurrent: usize,
        max_queue: usize,
    ) -> Limits {
        let limits = Limits {
            max_concurrent: max_concurrent.max(1),
            max_queue,
            sources: Mutex::new(HashMap::new()),
        };
        for name in sources {
            limits.line(name);
        }
        limits
    }

    /// The line of `source`, made now if it has none yet.
    fn line(&self, source: &str) -> Arc<SourceLimit> {
        let mut sources = self
            .sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let limit = sources.entry(source.to_owned()).or_insert_with(|| {
            Arc::new(SourceLimit {
                running: Arc::new(Semaphore::new(self.max_concurrent)),
                queued: Arc::new(AtomicUsize::new(0)),
            })
        });
        Arc::clone(limit)
    }

    /// Waits for a place to run a pg_dump against `source`, or refuses when the line is full.
    pub(crate) async fn acquire(&self, source: &str) -> Result<Slot, Busy> {
        let limit = self.line(source);
        if let Ok(permit) = Arc::clone(&limit.running).try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let queued = limit.queued.fetch_add(1, Ordering::SeqCst);
        let waiting = Waiting(Arc::clone(&limit.queued));
        if queued >= self.max_queue {
            drop(waiting);
            return Err(Busy {
                running: self.max_concurrent,
                queued,
            });
        }
        let permit = Arc::clone(&limit.running)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        drop(waiting);
        Ok(Slot { _permit: permit })
    }

    /// `(running, queued)` for `source`, for metrics.
    pub(crate) fn load(&self, source: &str) -> (usize, usize) {
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sources.get(source).map_or((0, 0), |limit| {
            (
                self.max_concurrent - limit.running.available_permits(),
                limit.queued.load(Ordering::SeqCst),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_queues_then_refuses() {
        let limits = Limits::new(["db"], 1, 1);
        let first = limits.acquire("db").await.unwrap();
        assert_eq!(limits.load("db"), (1, 0));
        let second = limits.acquire("db");
        tokio::pin!(second);
        assert!(futures_util::poll!(second.as_mut()).is_pending());
        assert_eq!(limits.load("db"), (1, 1));
        assert_eq!(
            limits.acquire("db").await.unwrap_err(),
            Busy {
                running: 1,
                queued: 1
            }
        );
        drop(first);
        let _second = second.await.unwrap();
        assert_eq!(limits.load("db"), (1, 0));
    }

    #[tokio::test]
    async fn a_request_that_leaves_the_queue_frees_its_place() {
        let limits = Limits::new(["db"], 1, 1);
        let _running = limits.acquire("db").await.unwrap();
        {
            let waiting = limits.acquire("db");
            tokio::pin!(waiting);
            assert!(futures_util::poll!(waiting.as_mut()).is_pending());
            assert_eq!(limits.load("db"), (1, 1));
        }
        assert_eq!(limits.load("db"), (1, 0));
    }

    #[tokio::test]
    async fn a_source_added_later_gets_a_line_of_its_own() {
        let limits = Limits::new(["db"], 1, 0);
        assert_eq!(limits.load("new"), (0, 0));
        let _running = limits.acquire("new").await.unwrap();
        assert_eq!(limits.load("new"), (1, 0));
        assert!(limits.acquire("new").await.is_err());
        let _other = limits.acquire("db").await.unwrap();
    }
}
