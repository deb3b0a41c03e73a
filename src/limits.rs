//! How many pg_dump processes may run per source, and how many requests may wait for one. A
//! dump is the heaviest thing a client can ask of a database: at most `max_concurrent` run
//! per source; up to `max_queue` more wait in line (leaving it if their client goes away);
//! beyond that a request is turned away at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of every source.
#[derive(Debug)]
pub(crate) struct Limits {
    max_concurrent: usize,
    max_queue: usize,
    sources: HashMap<String, SourceLimit>,
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
    /// Limits for `sources`; `max_concurrent` is at least 1.
    pub(crate) fn new<'a>(
        sources: impl IntoIterator<Item = &'a str>,
        max_concurrent: usize,
        max_queue: usize,
    ) -> Limits {
        let max_concurrent = max_concurrent.max(1);
        let sources = sources
            .into_iter()
            .map(|name| {
                let limit = SourceLimit {
                    running: Arc::new(Semaphore::new(max_concurrent)),
                    queued: Arc::new(AtomicUsize::new(0)),
                };
                (name.to_owned(), limit)
            })
            .collect();
        Limits {
            max_concurrent,
            max_queue,
            sources,
        }
    }

    /// Waits for a place to run a pg_dump against `source`, or refuses when the line is full.
    pub(crate) async fn acquire(&self, source: &str) -> Result<Slot, Busy> {
        let Some(limit) = self.sources.get(source) else {
            // Sources are fixed at startup; an unknown one never reaches pg_dump.
            return Err(Busy {
                running: 0,
                queued: 0,
            });
        };
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
        self.sources.get(source).map_or((0, 0), |limit| {
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
}
