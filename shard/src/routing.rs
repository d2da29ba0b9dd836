//! The shard's view of the ring, and the epoch and ownership checks every
//! data request goes through.

use std::sync::Arc;
use std::time::Duration;

use lockstep_hashing::Ring;
use lockstep_proto::{Epoch, Handle, ShardId, Topology};
use tokio::sync::watch;

use crate::Error;

/// How long a request whose epoch is ahead of ours waits for our topology
/// watch to catch up before it is answered with a retryable error.
const EPOCH_CATCH_UP: Duration = Duration::from_secs(2);

/// One epoch's topology and the ring built from it.
#[derive(Debug)]
pub struct Routing {
    pub topology: Topology,
    pub ring: Option<Ring>,
}

impl Routing {
    pub fn new(topology: Topology) -> Result<Routing, Error> {
        let ring = topology
            .ring()
            .map_err(|e| Error::Storage(format!("coordinator sent a bad ring: {e}")))?;
        Ok(Routing { topology, ring })
    }

    pub fn epoch(&self) -> Epoch {
        self.topology.epoch
    }
}

/// A clonable view of the current routing, fed by the topology watch.
#[derive(Clone)]
pub struct RoutingView {
    me: ShardId,
    rx: watch::Receiver<Arc<Routing>>,
}

impl RoutingView {
    pub fn new(me: ShardId, rx: watch::Receiver<Arc<Routing>>) -> RoutingView {
        RoutingView { me, rx }
    }

    pub fn me(&self) -> ShardId {
        self.me
    }

    pub fn current(&self) -> Arc<Routing> {
        self.rx.borrow().clone()
    }

    /// The routing for a request sent at epoch `sent`: rejects a stale
    /// epoch, and waits briefly when the request is ahead of us.
    pub async fn at(&self, sent: Epoch) -> Result<Arc<Routing>, Error> {
        let cur = self.current();
        if sent == cur.epoch() {
            return Ok(cur);
        }
        if sent < cur.epoch() {
            return Err(Error::WrongEpoch {
                sent,
                current: cur.epoch(),
            });
        }
        let mut rx = self.rx.clone();
        match tokio::time::timeout(EPOCH_CATCH_UP, rx.wait_for(|r| r.epoch() >= sent)).await {
            Ok(Ok(r)) if r.epoch() == sent => Ok(r.clone()),
            Ok(Ok(r)) => Err(Error::WrongEpoch {
                sent,
                current: r.epoch(),
            }),
            _ => Err(Error::EpochAhead {
                sent,
                current: self.current().epoch(),
            }),
        }
    }

    /// Checks that this shard owns every key at `routing`'s epoch.
    pub fn check_owned(
        &self,
        routing: &Routing,
        keys: impl IntoIterator<Item = Handle>,
    ) -> Result<(), Error> {
        for key in keys {
            let owner = routing.ring.as_ref().map(|r| r.owner(key.ring_position()));
            if owner != Some(self.me) {
                return Err(Error::NotOwner {
                    me: self.me,
                    key,
                    epoch: routing.epoch(),
                    owner,
                });
            }
        }
        Ok(())
    }
}
