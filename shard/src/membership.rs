//! Registration with the coordinator, heartbeats carrying metrics, and the
//! topology watch that keeps this shard's ring current.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lockstep_model::{ShardId, Topology};
use lockstep_proto::auth::Authed;
use lockstep_proto::pb::{self, coordinator_client::CoordinatorClient};
use lockstep_proto::tls::Security;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::Error;
use crate::atoms::AtomStore;
use crate::routing::{Lease, Routing};
use crate::store::KvStore;
use lockstep_proto::retry::RetryPolicy;

/// What this shard says about itself in registrations and heartbeats:
/// its counts, and where it serves `/metrics`.
pub struct Reporter<S: KvStore> {
    pub store: Arc<AtomStore<S>>,
    /// Empty when the shard serves no metrics endpoint.
    pub metrics_address: String,
}

impl<S: KvStore> Clone for Reporter<S> {
    fn clone(&self) -> Self {
        Reporter {
            store: self.store.clone(),
            metrics_address: self.metrics_address.clone(),
        }
    }
}

impl<S: KvStore> Reporter<S> {
    pub fn report(&self, epoch: u64) -> pb::ShardMetrics {
        metrics(&self.store, epoch, &self.metrics_address)
    }
}

/// The metrics a heartbeat carries.
pub fn metrics<S: KvStore>(
    store: &AtomStore<S>,
    epoch: u64,
    metrics_address: &str,
) -> pb::ShardMetrics {
    let counts = store.counts();
    let types = crate::atoms::AtomRead::types(store);
    pb::ShardMetrics {
        atoms: counts.atoms(),
        live_bytes: store.kv().live_bytes(),
        rss_bytes: rss_bytes(),
        type_counts: counts
            .by_type
            .iter()
            .filter(|(_, n)| **n > 0)
            .filter_map(|(id, n)| types.by_id(*id).map(|t| (t.name.to_string(), *n)))
            .collect(),
        epoch,
        incoming: counts.incoming,
        last_tick: store.last_tick().unwrap_or(0),
        metrics_address: metrics_address.to_string(),
    }
}

/// Resident set size of this process, from /proc; 0 where unavailable.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// The address to register when none is configured: the bound address, or,
/// when listening on every interface (0.0.0.0 or ::, as in a container), the
/// local IP this host uses to reach the coordinator, with the bound port.
/// Nothing is sent: a UDP `connect` only picks the route.
pub async fn advertise_address(
    bound: SocketAddr,
    coordinator: &str,
    deadline: Duration,
) -> Result<String, Error> {
    if !bound.ip().is_unspecified() {
        return Ok(bound.to_string());
    }
    let unresolved = || {
        Error::Config(format!(
            "cannot work out an address to advertise: coordinator {coordinator:?} does not resolve; set --advertise"
        ))
    };
    // A container may start before its coordinator's name resolves.
    let started = tokio::time::Instant::now();
    let target = loop {
        match tokio::net::lookup_host(coordinator)
            .await
            .map(|mut a| a.next())
        {
            Ok(Some(a)) => break a,
            _ if started.elapsed() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            _ => return Err(unresolved()),
        }
    };
    let any: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let probe = tokio::net::UdpSocket::bind(any).await?;
    probe.connect(target).await?;
    let ip = probe.local_addr()?.ip();
    Ok(SocketAddr::new(ip, bound.port()).to_string())
}

/// Opens a lazy channel to the coordinator.
pub fn coordinator_channel(
    addr: &str,
    security: &Security,
) -> Result<CoordinatorClient<Authed>, Error> {
    // Pinging while idle notices a cut-off coordinator in seconds, so the
    // topology stream reconnects when the partition heals.
    let channel = security
        .channel(addr, &lockstep_proto::channel::ChannelOptions::PEER)
        .map_err(|e| Error::Config(format!("bad coordinator address {addr:?}: {e}")))?;
    Ok(security.coordinator_client(channel))
}

/// What registration returned.
pub struct Registered {
    pub id: ShardId,
    pub topology: Topology,
    pub heartbeat: Duration,
    /// The lease granted, counted from when the registration was sent.
    pub lease: Lease,
}

/// Registers, retrying while the coordinator is unreachable, until
/// `deadline`. Stores the identity on first registration.
pub async fn register<S: KvStore>(
    client: &mut CoordinatorClient<Authed>,
    reporter: &Reporter<S>,
    address: &str,
    weight: f64,
    deadline: Duration,
    coordinator: &str,
) -> Result<Registered, Error> {
    let identity = reporter.store.identity()?;
    let started = tokio::time::Instant::now();
    let mut delays = RetryPolicy::RECONNECT.delays();
    loop {
        let req = pb::RegisterRequest {
            shard_id: identity.as_ref().map(|(id, _)| id.0),
            address: address.to_string(),
            weight,
            cluster_id: identity
                .as_ref()
                .map(|(_, c)| c.clone())
                .unwrap_or_default(),
            metrics: Some(reporter.report(0)),
        };
        let sent = std::time::Instant::now();
        match client.register(req).await {
            Ok(resp) => {
                let resp = resp.into_inner();
                let id = ShardId(resp.shard_id);
                match &identity {
                    Some((old, cluster)) if *old == id && *cluster == resp.cluster_id => {}
                    Some((_, cluster)) if *cluster != resp.cluster_id => {
                        return Err(Error::WrongCluster {
                            stored: cluster.clone(),
                            coordinator: resp.cluster_id,
                        });
                    }
                    _ => reporter.store.set_identity(id, &resp.cluster_id)?,
                }
                let topology: Topology = resp
                    .topology
                    .ok_or_else(|| Error::Storage("register response without topology".into()))?
                    .into();
                let lease = Lease::new(sent, Duration::from_millis(resp.lease_ms));
                return Ok(Registered {
                    id,
                    topology,
                    heartbeat: Duration::from_millis(resp.heartbeat_interval_ms.max(1)),
                    lease,
                });
            }
            Err(st)
                if matches!(
                    st.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                ) && started.elapsed() < deadline =>
            {
                debug!(error = %st.message(), "coordinator not reachable yet; retrying");
                // RECONNECT never runs out; the deadline above ends this.
                tokio::time::sleep(delays.next().unwrap_or(RetryPolicy::RECONNECT.max)).await;
            }
            Err(st) => {
                return Err(Error::Coordinator {
                    addr: coordinator.to_string(),
                    reason: st.message().to_string(),
                });
            }
        }
    }
}

/// The gate every client write passes before its shard accepts it: the
/// coordinator must have recorded that the cluster holds data, and this
/// shard's ring must be at the epoch it was recorded under. Joins are then
/// decided from the coordinator's own record, not from heartbeats: a shard
/// that registers afterwards is Joining, and a write routed on a ring from
/// before a join that made it in time is refused as stale.
#[derive(Clone)]
pub struct DataGate {
    me: ShardId,
    coordinator: String,
    client: CoordinatorClient<Authed>,
    declared: Arc<std::sync::atomic::AtomicBool>,
}

impl DataGate {
    /// `declared`: already known to hold data (this shard has atoms, which
    /// its registration reported).
    pub fn new(
        me: ShardId,
        coordinator: &str,
        client: CoordinatorClient<Authed>,
        declared: bool,
    ) -> DataGate {
        DataGate {
            me,
            coordinator: coordinator.to_string(),
            client,
            declared: Arc::new(std::sync::atomic::AtomicBool::new(declared)),
        }
    }

    /// Ok once the cluster is recorded as holding data and `routing` has
    /// caught up with the epoch it was recorded at. One coordinator call
    /// per shard process, on its first write.
    pub async fn ensure(&self, routing: &crate::routing::RoutingView) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        if self.declared.load(Ordering::Acquire) {
            return Ok(());
        }
        let resp = self
            .client
            .clone()
            .declare_data(pb::DeclareDataRequest {
                shard_id: self.me.0,
            })
            .await
            .map_err(|st| Error::Coordinator {
                addr: self.coordinator.clone(),
                reason: st.message().to_string(),
            })?;
        match routing
            .at(lockstep_model::Epoch(resp.into_inner().epoch))
            .await
        {
            // Already past that epoch is as good.
            Ok(_) | Err(Error::WrongEpoch { .. }) => {}
            Err(e) => return Err(e),
        }
        self.declared.store(true, Ordering::Release);
        Ok(())
    }
}

/// Gets the cluster's ids for the new atom types a write names, before the
/// write: the coordinator gives each name one id for the cluster's life,
/// and the store keeps it (see [`AtomStore::add_types`]). One coordinator
/// call per batch that names a type this shard has not held before.
#[derive(Clone)]
pub struct TypeRegistrar {
    coordinator: String,
    client: CoordinatorClient<Authed>,
}

impl TypeRegistrar {
    pub fn new(coordinator: &str, client: CoordinatorClient<Authed>) -> TypeRegistrar {
        TypeRegistrar {
            coordinator: coordinator.to_string(),
            client,
        }
    }

    /// Ok once every type of `atoms` and `incoming` has an id in `store`.
    pub async fn ensure<S: KvStore>(
        &self,
        store: &Arc<AtomStore<S>>,
        atoms: &[lockstep_model::FlatAtom],
        incoming: &[lockstep_model::IncomingRef],
    ) -> Result<(), Error> {
        let missing = store.unregistered(atoms, incoming);
        if missing.is_empty() {
            return Ok(());
        }
        let resp = self
            .client
            .clone()
            .register_types(pb::RegisterTypesRequest {
                names: missing.iter().map(|t| t.name.to_string()).collect(),
            })
            .await
            .map_err(|st| match st.code() {
                // A name the coordinator refuses (the cluster's type limit)
                // is the request's fault, not the coordinator's absence.
                tonic::Code::InvalidArgument => Error::Import(st.message().to_string()),
                _ => Error::Coordinator {
                    addr: self.coordinator.clone(),
                    reason: st.message().to_string(),
                },
            })?;
        let entries = resp
            .into_inner()
            .types
            .into_iter()
            .map(|t| {
                u16::try_from(t.id)
                    .map(|id| (id, t.name))
                    .map_err(|_| Error::Coordinator {
                        addr: self.coordinator.clone(),
                        reason: format!("type id {} out of range", t.id),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.add_types(&entries))
            .await
            .map_err(|e| Error::Storage(format!("store task failed: {e}")))??;
        Ok(())
    }
}

/// Sends a heartbeat every `interval` until `stop` flips, renewing `lease`
/// with each one the coordinator acknowledges.
pub async fn heartbeat_loop<S: KvStore>(
    mut client: CoordinatorClient<Authed>,
    id: ShardId,
    reporter: Reporter<S>,
    routing: watch::Receiver<Arc<Routing>>,
    lease: Lease,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let epoch = routing.borrow().epoch().0;
        let st = {
            let reporter = reporter.clone();
            tokio::task::spawn_blocking(move || reporter.report(epoch)).await
        };
        let Ok(m) = st else { continue };
        let req = pb::HeartbeatRequest {
            shard_id: id.0,
            metrics: Some(m),
        };
        let sent = std::time::Instant::now();
        // Bounded, so a heartbeat lost in a partition does not stall the loop.
        match tokio::time::timeout(interval * 4, client.heartbeat(req)).await {
            Ok(Ok(resp)) => lease.renew(sent, Duration::from_millis(resp.get_ref().lease_ms)),
            Ok(Err(st)) => debug!(code = ?st.code(), error = %st.message(), "heartbeat failed"),
            Err(_) => debug!("heartbeat timed out"),
        }
    }
}

/// Follows the coordinator's topology stream, reconnecting with backoff,
/// and publishes each topology to `tx`.
pub async fn watch_topology(
    mut client: CoordinatorClient<Authed>,
    tx: watch::Sender<Arc<Routing>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut delays = RetryPolicy::RECONNECT.delays();
    loop {
        let stream = tokio::select! {
            r = client.watch_topology(pb::GetTopologyRequest {}) => r,
            _ = stop.changed() => return,
        };
        match stream {
            Ok(resp) => {
                // Connected: the next break starts the backoff over.
                delays = RetryPolicy::RECONNECT.delays();
                let mut stream = resp.into_inner();
                loop {
                    let msg = tokio::select! {
                        m = stream.message() => m,
                        _ = stop.changed() => return,
                    };
                    match msg {
                        Ok(Some(t)) => publish(&tx, t.into()),
                        Ok(None) => break,
                        Err(st) => {
                            debug!(error = %st.message(), "topology stream broke");
                            break;
                        }
                    }
                }
            }
            Err(st) => debug!(error = %st.message(), "topology watch failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delays.next().unwrap_or(RetryPolicy::RECONNECT.max)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Publishes a topology unless it is older than the current one.
pub fn publish(tx: &watch::Sender<Arc<Routing>>, t: Topology) {
    let current = tx.borrow().epoch();
    if t.epoch < current {
        return;
    }
    match crate::routing::from_topology(t) {
        Ok(r) => {
            if r.epoch() > current {
                info!(epoch = %r.epoch(), "ring epoch changed");
            }
            tx.send_replace(Arc::new(r));
        }
        Err(e) => warn!(error = %e, "ignoring a bad topology"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wildcard_listener_advertises_the_route_to_the_coordinator() {
        let wait = Duration::from_secs(1);
        // A specific bound address is advertised as it is.
        let bound: SocketAddr = "127.0.0.2:4100".parse().unwrap();
        assert_eq!(
            advertise_address(bound, "127.0.0.1:7400", wait)
                .await
                .unwrap(),
            "127.0.0.2:4100"
        );
        // 0.0.0.0: the local address that reaches the coordinator, bound port.
        let any: SocketAddr = "0.0.0.0:4101".parse().unwrap();
        assert_eq!(
            advertise_address(any, "127.0.0.1:7400", wait)
                .await
                .unwrap(),
            "127.0.0.1:4101"
        );
        // A coordinator name that never resolves is a config error naming it.
        let err = advertise_address(any, "no-such-host.invalid:7400", wait)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
    }
}
