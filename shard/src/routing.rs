//! The shard's view of the ring, and the epoch and ownership checks every
//! data request goes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lockstep_model::{Epoch, Handle, ShardId, Topology};
use tokio::sync::watch;

use crate::Error;

/// How long a request whose epoch is ahead of ours waits for our topology
/// watch to catch up before it is answered with a retryable error.
const EPOCH_CATCH_UP: Duration = Duration::from_secs(2);

pub use lockstep_model::Routing;

/// The routing for a topology the coordinator sent.
pub fn from_topology(topology: Topology) -> Result<Routing, Error> {
    Routing::new(topology).map_err(|e| Error::Storage(format!("coordinator sent a bad ring: {e}")))
}

/// The shard's lease on its ring epoch, renewed by every heartbeat the
/// coordinator acknowledges.
///
/// The coordinator grants a lease shorter than its Down threshold, counted
/// here from when the acknowledged heartbeat was *sent*. A shard cut off
/// from the coordinator therefore stops serving before the coordinator can
/// declare it Down and act on that: it never accepts a write for an epoch
/// it may no longer hold.
#[derive(Clone, Debug)]
pub struct Lease {
    origin: Instant,
    /// Milliseconds after `origin` until which the lease holds; `u64::MAX`
    /// for a lease that never lapses.
    until_ms: Arc<AtomicU64>,
    /// When the last acknowledged heartbeat was sent, in ms after `origin`.
    renewed_ms: Arc<AtomicU64>,
}

impl Lease {
    /// A lease granted for `grant` by an answer to a request sent at
    /// `sent`; a zero grant means no lease: it never lapses.
    pub fn new(sent: Instant, grant: Duration) -> Lease {
        let lease = Lease {
            origin: Instant::now(),
            until_ms: Arc::new(AtomicU64::new(0)),
            renewed_ms: Arc::new(AtomicU64::new(0)),
        };
        if grant.is_zero() {
            lease.until_ms.store(u64::MAX, Ordering::Relaxed);
        } else {
            lease.renew(sent, grant);
        }
        lease
    }

    /// A lease that never lapses (tests and single-process tools).
    pub fn unbounded() -> Lease {
        Lease::new(Instant::now(), Duration::ZERO)
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Extends the lease to `sent + grant`, where `sent` is when the
    /// acknowledged heartbeat left; a zero grant leaves the lease alone.
    pub fn renew(&self, sent: Instant, grant: Duration) {
        let sent_ms = self.ms(sent);
        self.renewed_ms.fetch_max(sent_ms, Ordering::Relaxed);
        if grant.is_zero() {
            return;
        }
        self.until_ms
            .fetch_max(sent_ms + grant.as_millis() as u64, Ordering::Relaxed);
    }

    /// How long ago the last acknowledged heartbeat was sent (or the
    /// lease granted).
    pub fn since_renewed(&self) -> Duration {
        let now = self.ms(Instant::now());
        Duration::from_millis(now.saturating_sub(self.renewed_ms.load(Ordering::Relaxed)))
    }

    /// Ok while the lease holds; otherwise how long the shard has gone
    /// without an acknowledged heartbeat.
    pub fn check(&self) -> Result<(), Duration> {
        let now = self.ms(Instant::now());
        if now <= self.until_ms.load(Ordering::Relaxed) {
            return Ok(());
        }
        Err(Duration::from_millis(
            now - self.renewed_ms.load(Ordering::Relaxed),
        ))
    }
}

/// A clonable view of the current routing, fed by the topology watch and
/// guarded by the shard's lease.
#[derive(Clone)]
pub struct RoutingView {
    me: ShardId,
    rx: watch::Receiver<Arc<Routing>>,
    lease: Lease,
}

impl RoutingView {
    pub fn new(me: ShardId, rx: watch::Receiver<Arc<Routing>>, lease: Lease) -> RoutingView {
        RoutingView { me, rx, lease }
    }

    pub fn me(&self) -> ShardId {
        self.me
    }

    pub fn current(&self) -> Arc<Routing> {
        self.rx.borrow().clone()
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The routing for a request sent at epoch `sent`: refuses while the
    /// lease has lapsed, rejects a stale epoch, and waits briefly when the
    /// request is ahead of us.
    pub async fn at(&self, sent: Epoch) -> Result<Arc<Routing>, Error> {
        let cur = self.current();
        if let Err(silent) = self.lease.check() {
            return Err(Error::Fenced {
                me: self.me,
                epoch: cur.epoch(),
                silent_ms: silent.as_millis() as u64,
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lapses_without_renewal_and_comes_back_with_one() {
        let lease = Lease::new(Instant::now(), Duration::from_millis(40));
        assert!(lease.check().is_ok());
        let start = Instant::now();
        // Poll with a deadline rather than sleeping a guessed amount.
        while lease.check().is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "lease never lapsed"
            );
            std::thread::yield_now();
        }
        let silent = lease.check().unwrap_err();
        assert!(silent >= Duration::from_millis(40), "{silent:?}");
        lease.renew(Instant::now(), Duration::from_secs(60));
        assert!(lease.check().is_ok());
        // An older acknowledgement never shortens the lease.
        lease.renew(lease.origin, Duration::from_millis(1));
        assert!(lease.check().is_ok());
        assert!(Lease::unbounded().check().is_ok());
    }
}
