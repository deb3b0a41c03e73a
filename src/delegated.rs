//! Requests whose answer waits on another service — passed through to the upstream Hasura,
//! judged by the auth webhook or by the upstream — and the connections they may hold: never
//! the last ones of the connection cap, so that however many such requests anyone keeps
//! waiting (WebSockets held open, a webhook that hangs, slow uploads), a caller with the admin
//! secret still reaches pgdump-api's own routes.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections such requests never hold (half the cap when it is small).
const RESERVED_CONNECTIONS: usize = 64;

/// The places for requests that wait on another service.
#[derive(Debug)]
pub(crate) struct Delegated {
    places: Arc<Semaphore>,
    /// How many may wait at once.
    limit: usize,
}

/// Every place is taken: the request is turned away (503, to retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    pub limit: usize,
}

impl Delegated {
    /// The places on a server that keeps at most `max_connections` open.
    pub(crate) fn new(max_connections: usize) -> Delegated {
        let reserved = RESERVED_CONNECTIONS.min(max_connections / 2);
        let limit = max_connections.saturating_sub(reserved).max(1);
        Delegated {
            places: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A place, held until the permit is dropped; never waits.
    pub(crate) fn hold(&self) -> Result<OwnedSemaphorePermit, Full> {
        Arc::clone(&self.places)
            .try_acquire_owned()
            .map_err(|_| Full { limit: self.limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_connections_are_kept() {
        assert_eq!(Delegated::new(1000).limit, 936);
        assert_eq!(Delegated::new(16).limit, 8);
        assert_eq!(Delegated::new(1).limit, 1);
        let delegated = Delegated::new(4);
        let held: Vec<_> = (0..2).map(|_| delegated.hold().unwrap()).collect();
        assert_eq!(delegated.hold().unwrap_err(), Full { limit: 2 });
        drop(held);
        assert!(delegated.hold().is_ok());
    }
}
