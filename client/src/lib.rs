//! The client library: caches the topology, routes batches straight to the
//! owning shards in parallel, and refreshes and retries on epoch errors. The
//! coordinator is never in the data path.
//!
//! # Cross-shard guarantees
//! - One request to one shard is atomic (one RocksDB write batch).
//! - A batch spanning shards is written in rounds by depth: every target of
//!   a link is acknowledged before the link itself is sent, so a stored link
//!   never points at a missing atom, even if the client dies mid-batch.
//! - A link's incoming-set entries go to its targets' shards in the same
//!   round as the link. If the client dies mid-round, an entry may exist for
//!   a link that was not stored (or the reverse); re-sending the batch
//!   repairs it, because every write is idempotent.
//! - Tick-level atomicity across shards comes with the tick engine.
//!
//! The crate depends on the model, the wire format, the ring, tonic and
//! tokio only: never on RocksDB or either server.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures::future::join_all;
use lockstep_hashing::Ring;
use lockstep_model::atom::AtomRecord;
use lockstep_model::{Atom, AtomType, Epoch, FlatAtom, Handle, IncomingRef, ShardId, Topology};
use lockstep_proto::auth::{Authed, Token};
use lockstep_proto::channel::ChannelOptions;
use lockstep_proto::pb::{self, coordinator_client::CoordinatorClient, shard_client::ShardClient};
use lockstep_proto::retry::RetryPolicy;
use lockstep_proto::tls::{Security, Tls};
use lockstep_proto::wire_error::epoch_error;
use parking_lot::{Mutex, RwLock};
use tonic::transport::Channel;
use tracing::debug;

mod error;

pub use error::Error;

/// The records a [`Scan`] holds at once, over all its cursors.
const SCAN_BUDGET: usize = 4_096;

/// Atoms of some types in handle order across every shard: a k-way merge
/// of one cursor per (shard, type), each holding one page from its shard's
/// by-type index. Memory stays at a few thousand records whatever the
/// store's size, so `limit` is the first N overall and a scan can resume
/// after any handle.
pub struct Scan<'a> {
    client: &'a Client,
    epoch: Epoch,
    /// The page asked for; 0 (the shard's own page size) once a shard
    /// said it is over its `max_scan_page`.
    page: std::sync::atomic::AtomicU32,
    cursors: Vec<ScanCursor>,
}

struct ScanCursor {
    ty: &'static AtomType,
    addr: String,
    buf: std::collections::VecDeque<AtomRecord>,
    /// The last handle fetched (empty: from the start).
    after: Vec<u8>,
    more: bool,
}

impl Scan<'_> {
    /// The next atom in handle order, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<AtomRecord>, Error> {
        use std::sync::atomic::Ordering;
        let (client, epoch, page) = (self.client, self.epoch, &self.page);
        let refills = self
            .cursors
            .iter_mut()
            .filter(|c| c.buf.is_empty() && c.more)
            .map(|c| async move {
                let (addr, ty, after) = (&c.addr, c.ty, &c.after);
                let ask = |limit: u32| async move {
                    client
                        .shard(addr)?
                        .scan_type(pb::ScanTypeRequest {
                            epoch: epoch.0,
                            r#type: ty.name.to_string(),
                            after: after.clone(),
                            limit,
                        })
                        .await
                        .map_err(|st| Error::rpc(addr, &st))
                };
                let limit = page.load(Ordering::Relaxed);
                let resp = match ask(limit).await {
                    // A shard configured with a smaller page than this
                    // scan's share: its own page size, from now on.
                    Err(Error::Rpc {
                        code: tonic::Code::InvalidArgument,
                        message,
                        ..
                    }) if limit > 0 && message.contains("max_scan_page") => {
                        page.store(0, Ordering::Relaxed);
                        ask(0).await?
                    }
                    r => r?,
                }
                .into_inner();
                for v in resp.atoms {
                    c.buf.push_back(AtomRecord::try_from(v)?);
                }
                c.more = resp.more && !c.buf.is_empty();
                if let Some(last) = c.buf.back() {
                    c.after = last.handle.to_bytes().to_vec();
                }
                Ok::<(), Error>(())
            });
        for r in join_all(refills).await {
            r?;
        }
        // An exhausted cursor (most of a `--subtypes` scan's types hold
        // nothing) is dropped, so later calls walk only live ones.
        self.cursors.retain(|c| c.more || !c.buf.is_empty());
        let best = self
            .cursors
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.buf.front().map(|r| (r.handle, i)))
            .min();
        Ok(best.and_then(|(_, i)| self.cursors[i].buf.pop_front()))
    }
}

/// Client tuning, with defaults.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Attempts per request after the first, on epoch errors and
    /// unavailable shards.
    pub retries: u32,
    /// First backoff between attempts; doubles up to one second, each pause
    /// with a random jitter of up to its own length.
    pub backoff: Duration,
    /// The most items sent in one request (also capped by the topology).
    pub max_batch: usize,
    pub connect_timeout: Duration,
    /// How long one request to a shard may take before it is abandoned and
    /// retried: a shard that stopped answering (SIGSTOP, a dead host not
    /// yet declared Down) costs this, not TCP's minutes.
    pub request_timeout: Duration,
    /// The cluster token every call carries (none by default).
    pub token: Token,
    /// TLS for every connection, coordinator and shards alike (none by
    /// default: plaintext).
    pub tls: Option<Tls>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            retries: 8,
            backoff: Duration::from_millis(50),
            max_batch: 5_000,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            token: Token::none(),
            tls: None,
        }
    }
}

/// The handles acknowledged so far in one bulk load, shared by its
/// concurrent batches (see [`Client::put_bulk`]). Only atoms acknowledged
/// before a batch is flattened are skipped, so a target is never skipped on
/// the strength of a write still in flight. At most `capacity` handles are
/// remembered; past that, targets are simply sent again.
#[derive(Debug)]
pub struct BulkLoad {
    acked: Mutex<std::collections::HashSet<Handle>>,
    capacity: usize,
}

impl BulkLoad {
    /// Remembers up to this many handles by default (about 40 bytes each).
    pub const DEFAULT_CAPACITY: usize = 8_000_000;

    pub fn new(capacity: usize) -> BulkLoad {
        BulkLoad {
            acked: Mutex::new(std::collections::HashSet::new()),
            capacity,
        }
    }

    /// Removes atoms that carry nothing to merge and were acknowledged
    /// earlier in this load.
    fn drop_known(&self, unique: &mut Vec<(FlatAtom, usize)>) {
        let acked = self.acked.lock();
        if acked.is_empty() {
            return;
        }
        unique.retain(|(a, _)| {
            let bare = a.tv.is_none() && a.av.is_none() && a.values.is_empty();
            !(bare && acked.contains(&a.handle))
        });
    }

    fn acknowledged(&self, handles: &[Handle]) {
        let mut acked = self.acked.lock();
        for h in handles {
            if acked.len() >= self.capacity {
                return;
            }
            acked.insert(*h);
        }
    }
}

impl Default for BulkLoad {
    fn default() -> Self {
        BulkLoad::new(BulkLoad::DEFAULT_CAPACITY)
    }
}

pub use lockstep_model::Routing;

/// What the client asks of a routing: its ring, and where a member is.
trait Route {
    fn ring(&self) -> Result<&Ring, Error>;
    fn address(&self, id: ShardId) -> Result<&str, Error>;
}

impl Route for Routing {
    fn ring(&self) -> Result<&Ring, Error> {
        self.ring.as_ref().ok_or(Error::NoShards)
    }

    /// The address of ring member `id`, unless the topology says it is
    /// Down: then nothing is sent, and the caller's retries (each after a
    /// topology refresh) run out within the stated budget instead of each
    /// waiting on a dead connection.
    fn address(&self, id: ShardId) -> Result<&str, Error> {
        let s = self
            .topology
            .shard(id)
            .ok_or_else(|| Error::Config(format!("{id} is in the ring but not in the topology")))?;
        if s.liveness == lockstep_model::Liveness::Down {
            return Err(Error::ShardDown {
                shard: id,
                addr: s.address.clone(),
                silent_ms: None,
                attempts: 0,
            });
        }
        Ok(s.address.as_str())
    }
}

/// What a put did, summed over shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutStats {
    /// Distinct atoms sent (targets included).
    pub atoms: u64,
    pub created: u64,
    pub updated: u64,
    pub incoming: u64,
}

impl std::ops::AddAssign for PutStats {
    fn add_assign(&mut self, o: PutStats) {
        self.atoms += o.atoms;
        self.created += o.created;
        self.updated += o.updated;
        self.incoming += o.incoming;
    }
}

/// One write routed by key.
enum Item {
    Atom(FlatAtom),
    Incoming(IncomingRef),
}

impl Item {
    fn key(&self) -> Handle {
        match self {
            Item::Atom(a) => a.handle,
            Item::Incoming(r) => r.target,
        }
    }
}

/// How one attempt at one shard went.
enum Outcome<T> {
    Done(T),
    Retry(Error),
}

/// Where one operation is in its retries.
struct Retries {
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    attempt: u32,
}

/// A connection to a cluster.
pub struct Client {
    coordinator: String,
    coord: CoordinatorClient<Authed>,
    routing: RwLock<Arc<Routing>>,
    /// One lazy channel per shard address.
    shards: DashMap<String, ShardClient<Authed>>,
    opts: ClientOptions,
}

/// How this client dials: its TLS and token.
fn security(opts: &ClientOptions) -> Security {
    Security {
        token: opts.token.clone(),
        tls: opts.tls.clone(),
    }
}

fn channel(addr: &str, opts: &ChannelOptions, security: &Security) -> Result<Channel, Error> {
    security
        .channel(addr, opts)
        .map_err(|e| Error::Config(e.to_string()))
}

/// What to add to a failed connection's reason when TLS is the likely
/// cause: a plaintext client at a TLS server sees its connection closed,
/// and a TLS client at a plaintext server sees bytes that are not TLS.
pub fn tls_hint(reason: &str, tls: bool) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if !tls
        && (r.contains("connection reset")
            || r.contains("broken pipe")
            || r.contains("connection closed")
            || r.contains("frame with invalid size")
            || r.contains("unexpected end of file")
            || r.contains("operation was canceled")
            || r.contains("protocol error"))
    {
        " (a cluster with TLS refuses plaintext: give --tls-cert, --tls-key and --tls-ca)"
    } else if tls && (r.contains("corrupt message") || r.contains("invalidcontenttype")) {
        " (the server does not speak TLS)"
    } else if tls && r.contains("invalid peer certificate") {
        " (the server's certificate is not signed by the CA given with --tls-ca)"
    } else if tls
        && (r.contains("unknownca")
            || r.contains("badcertificate")
            || r.contains("broken pipe")
            || r.contains("connection closed")
            || r.contains("operation was canceled")
            || r.contains("connection reset"))
    {
        // Under TLS 1.3 a server refuses a client's certificate after the
        // client thinks the handshake is done: the client may see only its
        // connection drop.
        " (the server refused this client's certificate: it must be signed by the cluster's CA)"
    } else {
        ""
    }
}

fn unreachable(addr: &str, st: &tonic::Status, tls: bool) -> Error {
    // A transport failure shows up as Unavailable with the cause in the source
    // chain; the message alone says "tcp connect error".
    let mut reason = st.message().to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(st);
    while let Some(e) = src {
        reason = e.to_string();
        src = e.source();
    }
    let hint = tls_hint(&reason, tls);
    Error::Unreachable {
        addr: addr.to_string(),
        reason: format!("{reason}{hint}"),
    }
}

impl Client {
    /// Connects to the coordinator at `addr` and fetches the topology.
    pub async fn connect(addr: &str) -> Result<Client, Error> {
        Client::connect_with(addr, ClientOptions::default()).await
    }

    pub async fn connect_with(addr: &str, opts: ClientOptions) -> Result<Client, Error> {
        let security = security(&opts);
        let coord = security.coordinator_client(channel(
            addr,
            &ChannelOptions::client(opts.connect_timeout),
            &security,
        )?);
        let client = Client {
            coordinator: addr.to_string(),
            coord,
            routing: RwLock::new(Arc::new(Routing::empty())),
            shards: DashMap::new(),
            opts,
        };
        client.refresh().await?;
        Ok(client)
    }

    /// The coordinator's address.
    pub fn coordinator(&self) -> &str {
        &self.coordinator
    }

    /// The cached routing.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.read().clone()
    }

    /// The cached epoch.
    pub fn epoch(&self) -> Epoch {
        self.routing().topology.epoch
    }

    /// Fetches the topology from the coordinator.
    pub async fn refresh(&self) -> Result<Arc<Routing>, Error> {
        let t: Topology = self
            .coord
            .clone()
            .get_topology(pb::GetTopologyRequest {})
            .await
            .map_err(|st| unreachable_or_rpc(&self.coordinator, &st, self.opts.tls.is_some()))?
            .into_inner()
            .into();
        let r = Arc::new(
            Routing::new(t)
                .map_err(|e| Error::Config(format!("coordinator sent a bad ring: {e}")))?,
        );
        *self.routing.write() = r.clone();
        Ok(r)
    }

    /// Pins the cached topology (used by tests to simulate a stale client).
    pub fn set_routing(&self, r: Routing) {
        *self.routing.write() = Arc::new(r);
    }

    fn shard(&self, addr: &str) -> Result<ShardClient<Authed>, Error> {
        // Every request of a parallel fan-out looks its shard up here; a
        // sharded map keeps those lookups from queueing behind one lock.
        if let Some(c) = self.shards.get(addr) {
            return Ok(c.clone());
        }
        let security = security(&self.opts);
        let opts = ChannelOptions::client(self.opts.connect_timeout)
            .with_request_timeout(self.opts.request_timeout);
        let c = security.shard_client(channel(addr, &opts, &security)?);
        // Two callers racing here build two lazy channels; one is kept.
        Ok(self
            .shards
            .entry(addr.to_string())
            .or_insert(c)
            .value()
            .clone())
    }

    fn batch_limit(&self, r: &Routing) -> usize {
        match r.topology.max_batch as usize {
            0 => self.opts.max_batch,
            n => n.min(self.opts.max_batch),
        }
    }

    /// Classifies a failed shard call: epoch errors and unavailable shards
    /// are retried after a refresh; anything else is final.
    fn classify<T>(&self, addr: &str, st: tonic::Status) -> Result<Outcome<T>, Error> {
        if let Some((kind, epoch)) = epoch_error(&st) {
            debug!(%addr, ?kind, %epoch, "epoch error; will refresh");
            return Ok(Outcome::Retry(Error::rpc(addr, &st)));
        }
        let e = Error::rpc(addr, &st);
        if e.retryable() {
            Ok(Outcome::Retry(e))
        } else {
            Err(e)
        }
    }

    /// The retries of one operation, under the client's policy.
    fn retries(&self) -> Retries {
        Retries {
            delays: Box::new(
                RetryPolicy {
                    first: self.opts.backoff,
                    max: Duration::from_secs(1),
                    retries: Some(self.opts.retries as usize),
                }
                .delays(),
            ),
            attempt: 0,
        }
    }

    /// Waits before the next attempt after the retryable `last`, or gives
    /// up when the operation's retries are spent.
    async fn backoff(&self, retries: &mut Retries, last: Error) -> Result<(), Error> {
        retries.attempt += 1;
        let attempt = retries.attempt;
        let Some(wait) = retries.delays.next() else {
            return Err(match last {
                Error::ShardDown { shard, addr, .. } => Error::ShardDown {
                    silent_ms: self.silence(shard).await,
                    shard,
                    addr,
                    attempts: attempt,
                },
                last => Error::RetriesExhausted {
                    attempts: attempt,
                    last: last.to_string(),
                },
            });
        };
        tokio::time::sleep(wait).await;
        // A refresh that fails is retried on the next round too.
        if let Err(e) = self.refresh().await {
            debug!(error = %e, "topology refresh failed");
        }
        Ok(())
    }

    /// How long the coordinator has not heard from `shard`, if it says.
    async fn silence(&self, shard: ShardId) -> Option<u64> {
        let st = self.status().await.ok()?;
        st.shards
            .iter()
            .find(|s| s.shard.as_ref().is_some_and(|e| e.id == shard.0))
            .map(|s| s.ms_since_heartbeat)
            .filter(|ms| *ms != u64::MAX)
    }

    /// Writes items, grouped by owner at the current epoch, all shards in
    /// parallel; failed groups are regrouped and retried.
    async fn write_items(&self, items: &[Item]) -> Result<PutStats, Error> {
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut stats = PutStats::default();
        let mut retries = self.retries();
        while !pending.is_empty() {
            let routing = self.routing();
            let ring = routing.ring()?;
            let positions: Vec<u64> = pending
                .iter()
                .map(|&i| items[i].key().ring_position())
                .collect();
            let limit = self.batch_limit(&routing);
            let mut calls = Vec::new();
            let mut failed = Vec::new();
            let mut last = None;
            for (shard, idx) in ring.group_by_owner(&positions) {
                let addr = match routing.address(shard) {
                    Ok(a) => a.to_string(),
                    // A Down owner: its items wait for the next round.
                    Err(e) if e.retryable() => {
                        failed.extend(idx.iter().map(|&j| pending[j]));
                        last = Some(e);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for chunk in idx.chunks(limit) {
                    let chunk: Vec<usize> = chunk.iter().map(|&j| pending[j]).collect();
                    calls.push(self.put_chunk(addr.clone(), routing.topology.epoch, items, chunk));
                }
            }
            for (chunk, res) in join_all(calls).await {
                match res? {
                    Outcome::Done(s) => stats += s,
                    Outcome::Retry(e) => {
                        failed.extend(chunk);
                        last = Some(e);
                    }
                }
            }
            pending = failed;
            if let Some(e) = last {
                self.backoff(&mut retries, e).await?;
            }
        }
        Ok(stats)
    }

    async fn put_chunk(
        &self,
        addr: String,
        epoch: Epoch,
        items: &[Item],
        chunk: Vec<usize>,
    ) -> (Vec<usize>, Result<Outcome<PutStats>, Error>) {
        let mut req = pb::PutAtomsRequest {
            epoch: epoch.0,
            atoms: Vec::new(),
            incoming: Vec::new(),
        };
        for &i in &chunk {
            match &items[i] {
                Item::Atom(a) => req.atoms.push(a.into()),
                Item::Incoming(r) => req.incoming.push(r.into()),
            }
        }
        let atoms = req.atoms.len() as u64;
        let mut client = match self.shard(&addr) {
            Ok(c) => c,
            Err(e) => return (chunk, Err(e)),
        };
        let res = match client.put_atoms(req).await {
            Ok(r) => {
                let r = r.into_inner();
                Ok(Outcome::Done(PutStats {
                    atoms,
                    created: r.created,
                    updated: r.updated,
                    incoming: r.incoming,
                }))
            }
            Err(st) => self.classify(&addr, st),
        };
        (chunk, res)
    }

    /// Adds atoms (and, through nesting, their targets), with their incoming
    /// sets. See the module docs for the cross-shard guarantees.
    pub async fn put(&self, atoms: &[Atom]) -> Result<PutStats, Error> {
        self.put_flat(lockstep_model::atom::flatten_batch(atoms))
            .await
    }

    /// Adds atoms as one batch of a bulk load: like [`Client::put`], but a
    /// link's targets that `load` has already seen acknowledged, and that
    /// this batch carries no values for, are not sent again. Re-sending
    /// them would change nothing (an upsert without values keeps the stored
    /// atom) but costs the owner a read of each one, which dominates a load
    /// of links between a few hot nodes.
    pub async fn put_bulk(&self, load: &BulkLoad, atoms: &[Atom]) -> Result<PutStats, Error> {
        let mut unique = lockstep_model::atom::flatten_batch(atoms);
        load.drop_known(&mut unique);
        let handles: Vec<Handle> = unique.iter().map(|(a, _)| a.handle).collect();
        let stats = self.put_flat(unique).await?;
        load.acknowledged(&handles);
        Ok(stats)
    }

    /// Adds distinct flattened atoms, each with its depth, as
    /// [`lockstep_model::atom::flatten_batch`] makes them.
    pub async fn put_flat(&self, unique: Vec<(FlatAtom, usize)>) -> Result<PutStats, Error> {
        let max_depth = unique.iter().map(|(_, d)| *d).max().unwrap_or(0);
        let mut rounds: Vec<Vec<Item>> = (0..=max_depth).map(|_| Vec::new()).collect();
        for (a, depth) in unique {
            rounds[depth].extend(a.incoming_refs().into_iter().map(Item::Incoming));
            rounds[depth].push(Item::Atom(a));
        }
        let mut stats = PutStats::default();
        for round in rounds {
            if !round.is_empty() {
                stats += self.write_items(&round).await?;
            }
        }
        Ok(stats)
    }

    /// Reads atoms by handle; one entry per handle, in order.
    pub async fn get(&self, handles: &[Handle]) -> Result<Vec<Option<AtomRecord>>, Error> {
        let mut retries = self.retries();
        loop {
            match self.try_get(handles).await? {
                Outcome::Done(v) => return Ok(v),
                Outcome::Retry(e) => {
                    self.backoff(&mut retries, e).await?;
                }
            }
        }
    }

    async fn try_get(&self, handles: &[Handle]) -> Result<Outcome<Vec<Option<AtomRecord>>>, Error> {
        let routing = self.routing();
        let ring = routing.ring()?;
        let positions: Vec<u64> = handles.iter().map(|h| h.ring_position()).collect();
        let limit = self.batch_limit(&routing);
        let mut calls = Vec::new();
        for (shard, idx) in ring.group_by_owner(&positions) {
            let addr = match routing.address(shard) {
                Ok(a) => a.to_string(),
                Err(e) if e.retryable() => return Ok(Outcome::Retry(e)),
                Err(e) => return Err(e),
            };
            for chunk in idx.chunks(limit) {
                let chunk = chunk.to_vec();
                let req = pb::GetAtomsRequest {
                    epoch: routing.topology.epoch.0,
                    handles: chunk
                        .iter()
                        .map(|&i| handles[i].to_bytes().to_vec())
                        .collect(),
                };
                let mut client = self.shard(&addr)?;
                let addr = addr.clone();
                calls.push(async move { (chunk, addr, client.get_atoms(req).await) });
            }
        }
        let mut out: Vec<Option<AtomRecord>> = vec![None; handles.len()];
        for (chunk, addr, res) in join_all(calls).await {
            match res {
                Ok(resp) => {
                    for (&i, m) in chunk.iter().zip(resp.into_inner().atoms) {
                        out[i] = m.atom.map(AtomRecord::try_from).transpose()?;
                    }
                }
                Err(st) => match self.classify(&addr, st)? {
                    Outcome::Retry(e) => return Ok(Outcome::Retry(e)),
                    Outcome::Done(()) => unreachable!("classify never returns Done"),
                },
            }
        }
        Ok(Outcome::Done(out))
    }

    /// Runs `call` against the owner of `key`, refreshing and retrying on
    /// epoch errors and unavailable shards.
    async fn on_owner<T, F, Fut>(&self, key: Handle, call: F) -> Result<T, Error>
    where
        F: Fn(ShardClient<Authed>, Epoch) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut retries = self.retries();
        loop {
            let routing = self.routing();
            let owner = routing.ring()?.owner(key.ring_position());
            let addr = match routing.address(owner) {
                Ok(a) => a.to_string(),
                Err(e) if e.retryable() => {
                    self.backoff(&mut retries, e).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match call(self.shard(&addr)?, routing.topology.epoch).await {
                Ok(v) => return Ok(v),
                Err(st) => match self.classify::<()>(&addr, st)? {
                    Outcome::Retry(e) => {
                        self.backoff(&mut retries, e).await?;
                    }
                    Outcome::Done(()) => unreachable!("classify never returns Done"),
                },
            }
        }
    }

    /// The whole incoming set of `target`.
    pub async fn incoming(&self, target: Handle) -> Result<Vec<IncomingRef>, Error> {
        let mut out = Vec::new();
        let mut after = Vec::new();
        loop {
            let page = self
                .on_owner(target, |mut c, epoch| {
                    let after = after.clone();
                    async move {
                        c.get_incoming(pb::GetIncomingRequest {
                            epoch: epoch.0,
                            target: target.to_bytes().to_vec(),
                            after,
                            // 0: the shard's own page size, which never
                            // exceeds its max_scan_page.
                            limit: 0,
                        })
                        .await
                        .map(|r| r.into_inner())
                    }
                })
                .await?;
            for e in page.entries {
                let outgoing = lockstep_proto::convert::handles_from_pb(&e.outgoing)?;
                out.push(IncomingRef {
                    target,
                    link: Handle::from_slice(&e.link)?,
                    link_type: lockstep_proto::convert::type_from_pb(&e.link_type)?,
                    outgoing,
                });
            }
            match (page.more, out.last()) {
                (true, Some(last)) => after = last.link.to_bytes().to_vec(),
                _ => return Ok(out),
            }
        }
    }

    /// Deletes an atom. Without `recursive`, an atom with a non-empty
    /// incoming set is refused; with it, every link that contains the atom
    /// (transitively) is deleted first. Returns the number of atoms deleted.
    pub async fn delete(&self, handle: Handle, recursive: bool) -> Result<usize, Error> {
        let order = if recursive {
            let mut order = Vec::new();
            let mut seen = std::collections::HashSet::new();
            self.collect_containers(handle, &mut seen, &mut order)
                .await?;
            order
        } else {
            vec![handle]
        };
        let mut deleted = 0;
        for h in order {
            deleted += self.delete_one(h).await?;
        }
        Ok(deleted)
    }

    /// Post-order over the incoming graph: containers before what they contain.
    async fn collect_containers(
        &self,
        root: Handle,
        seen: &mut std::collections::HashSet<Handle>,
        order: &mut Vec<Handle>,
    ) -> Result<(), Error> {
        // Iterative DFS so a deep chain of links cannot overflow the stack.
        let mut stack: Vec<(Handle, bool)> = vec![(root, false)];
        while let Some((h, expanded)) = stack.pop() {
            if expanded {
                order.push(h);
                continue;
            }
            if !seen.insert(h) {
                continue;
            }
            stack.push((h, true));
            for r in self.incoming(h).await? {
                if !seen.contains(&r.link) {
                    stack.push((r.link, false));
                }
            }
        }
        Ok(())
    }

    async fn delete_one(&self, h: Handle) -> Result<usize, Error> {
        let resp = self
            .on_owner(h, |mut c, epoch| async move {
                c.delete_atoms(pb::DeleteAtomsRequest {
                    epoch: epoch.0,
                    handles: vec![h.to_bytes().to_vec()],
                })
                .await
                .map(|r| r.into_inner())
            })
            .await?;
        let mut n = 0;
        for view in resp.deleted {
            n += 1;
            let rec = AtomRecord::try_from(view)?;
            let link = FlatAtom::new(rec.ty, rec.name.clone(), rec.outgoing.clone())?;
            for r in &link.incoming_refs() {
                let entry: pb::IncomingWrite = r.into();
                self.on_owner(r.target, |mut c, epoch| {
                    let entry = entry.clone();
                    async move {
                        c.remove_incoming(pb::RemoveIncomingRequest {
                            epoch: epoch.0,
                            entries: vec![entry],
                        })
                        .await
                        .map(|r| r.into_inner())
                    }
                })
                .await?;
            }
        }
        Ok(n)
    }

    /// The nested atoms of `recs`, their outgoing atoms fetched level by
    /// level, one batched read per level, down to the nodes. With
    /// `child_values` every outgoing atom carries its own values (as `get`
    /// shows them); without, only the roots do, so that a dump writes each
    /// atom's values once, where the atom itself is written. Built without
    /// recursion: a deep chain of links costs heap only.
    pub async fn nested(
        &self,
        recs: &[AtomRecord],
        child_values: bool,
    ) -> Result<Vec<Atom>, Error> {
        let mut known: std::collections::HashMap<Handle, AtomRecord> =
            std::collections::HashMap::new();
        // (atom to fetch, the link that contains it)
        let mut wanted: Vec<(Handle, Handle)> = recs
            .iter()
            .flat_map(|r| r.outgoing.iter().map(|o| (*o, r.handle)))
            .collect();
        while !wanted.is_empty() {
            wanted.sort_unstable();
            wanted.dedup_by_key(|(h, _)| *h);
            wanted.retain(|(h, _)| !known.contains_key(h));
            let handles: Vec<Handle> = wanted.iter().map(|(h, _)| *h).collect();
            let mut next = Vec::new();
            for (&(h, link), rec) in wanted.iter().zip(self.get(&handles).await?) {
                let rec = rec.ok_or(Error::Dangling { link, missing: h })?;
                next.extend(rec.outgoing.iter().map(|o| (*o, h)));
                known.insert(h, rec);
            }
            wanted = next;
        }
        let atom_of = |rec: &AtomRecord, values: bool, outgoing: Vec<Atom>| Atom {
            ty: rec.ty,
            name: rec.name.clone(),
            outgoing,
            tv: (values && rec.tv != Default::default()).then_some(rec.tv),
            av: (values && rec.av != Default::default()).then_some(rec.av),
            values: if values {
                rec.values.clone()
            } else {
                Default::default()
            },
        };
        let mut out = Vec::with_capacity(recs.len());
        for root in recs {
            // Post-order with an explicit stack: (record, built children).
            let mut stack: Vec<(&AtomRecord, Vec<Atom>)> = vec![(root, Vec::new())];
            while let Some((rec, done)) = stack.last().map(|(r, d)| (*r, d.len())) {
                if let Some(&h) = rec.outgoing.get(done) {
                    let child = known.get(&h).ok_or(Error::Dangling {
                        link: rec.handle,
                        missing: h,
                    })?;
                    stack.push((child, Vec::new()));
                    continue;
                }
                // Every outgoing atom is built: build this one.
                let Some((rec, children)) = stack.pop() else {
                    break;
                };
                let atom = atom_of(rec, child_values || stack.is_empty(), children);
                match stack.last_mut() {
                    Some((_, siblings)) => siblings.push(atom),
                    None => out.push(atom),
                }
            }
        }
        Ok(out)
    }

    /// The value of the atom `handle` under `key` (a PredicateNode's name
    /// or any key atom's Atomese), if the atom exists and has one: the
    /// StorageNode's fetch-value.
    pub async fn value(
        &self,
        handle: Handle,
        key: &str,
    ) -> Result<Option<lockstep_model::Value>, Error> {
        let key = lockstep_model::value::normalize_key(key)?;
        Ok(self
            .get(&[handle])
            .await?
            .pop()
            .flatten()
            .and_then(|mut r| r.values.remove(&key)))
    }

    /// Sets one value of `atom` (which is created if missing), leaving its
    /// other values and its truth and attention values as they are: the
    /// StorageNode's store-value.
    pub async fn set_value(
        &self,
        atom: &Atom,
        key: &str,
        value: lockstep_model::Value,
    ) -> Result<(), Error> {
        value.validate()?;
        let mut bare = lockstep_model::value::bare(atom);
        bare.values
            .insert(lockstep_model::value::normalize_key(key)?, value);
        self.put(&[bare]).await.map(|_| ())
    }

    /// The links of type `ty` that contain `target`: the StorageNode's
    /// fetch-incoming-by-type.
    pub async fn incoming_of_type(
        &self,
        target: Handle,
        ty: &'static AtomType,
    ) -> Result<Vec<IncomingRef>, Error> {
        let mut all = self.incoming(target).await?;
        all.retain(|r| std::ptr::eq(r.link_type, ty));
        Ok(all)
    }

    /// The first `limit` atoms of type `ty` in handle order across every
    /// shard (see [`Scan`]).
    pub async fn scan_type(
        &self,
        ty: &'static AtomType,
        limit: usize,
    ) -> Result<Vec<AtomRecord>, Error> {
        let mut scan = self.scan(&[ty], None)?;
        let mut out = Vec::new();
        while out.len() < limit {
            match scan.next().await? {
                Some(r) => out.push(r),
                None => break,
            }
        }
        Ok(out)
    }

    /// A scan of the atoms of `types`, in handle order across every shard
    /// and every type, from just after `after` (see [`Scan`]).
    pub fn scan(
        &self,
        types: &[&'static AtomType],
        after: Option<Handle>,
    ) -> Result<Scan<'_>, Error> {
        let routing = self.routing();
        let mut cursors = Vec::new();
        for shard in routing.ring()?.members() {
            let addr = routing.address(shard.id)?.to_string();
            for &ty in types {
                cursors.push(ScanCursor {
                    ty,
                    addr: addr.clone(),
                    buf: std::collections::VecDeque::new(),
                    after: after.map(|h| h.to_bytes().to_vec()).unwrap_or_default(),
                    more: true,
                });
            }
        }
        // Every cursor holds at most one page: a few thousand records in
        // all, however many types and shards. A scan of one type asks for
        // the shard's own page size (0), which never passes its limit.
        let page = match SCAN_BUDGET / cursors.len().max(1) {
            n if n >= 1_000 => 0,
            n => n.max(16) as u32,
        };
        Ok(Scan {
            client: self,
            epoch: routing.topology.epoch,
            page: std::sync::atomic::AtomicU32::new(page),
            cursors,
        })
    }

    /// Submits a job; its events arrive on the returned stream.
    pub async fn submit_job(
        &self,
        spec: pb::JobSpec,
    ) -> Result<tonic::Streaming<pb::JobEvent>, Error> {
        Ok(self
            .coord
            .clone()
            .submit_job(spec)
            .await
            .map_err(|st| unreachable_or_rpc(&self.coordinator, &st, self.opts.tls.is_some()))?
            .into_inner())
    }

    /// Asks a running job to stop; returns the last committed tick.
    pub async fn cancel_job(&self, job_id: u64) -> Result<u64, Error> {
        Ok(self
            .coord
            .clone()
            .cancel_job(pb::CancelJobRequest { job_id })
            .await
            .map_err(|st| unreachable_or_rpc(&self.coordinator, &st, self.opts.tls.is_some()))?
            .into_inner()
            .committed_tick)
    }

    /// Removes a shard from the registry (refused while it owns data);
    /// returns the ring epoch after it.
    pub async fn remove_shard(&self, shard: ShardId) -> Result<Epoch, Error> {
        Ok(Epoch(
            self.coord
                .clone()
                .remove_shard(pb::RemoveShardRequest { shard_id: shard.0 })
                .await
                .map_err(|st| unreachable_or_rpc(&self.coordinator, &st, self.opts.tls.is_some()))?
                .into_inner()
                .epoch,
        ))
    }

    /// Running and finished jobs.
    pub async fn jobs(&self) -> Result<Vec<pb::JobSummary>, Error> {
        Ok(self
            .coord
            .clone()
            .list_jobs(pb::ListJobsRequest {})
            .await
            .map_err(|st| unreachable_or_rpc(&self.coordinator, &st, self.opts.tls.is_some()))?
            .into_inner()
            .jobs)
    }

    /// The cluster's status, from the coordinator.
    pub async fn status(&self) -> Result<pb::ClusterStatusResponse, Error> {
        Ok(self
            .coord
            .clone()
            .cluster_status(pb::ClusterStatusRequest {})
            .await
            .map_err(|st| unreachable_or_rpc(&self.coordinator, &st, self.opts.tls.is_some()))?
            .into_inner())
    }
}

/// The status's message and every cause under it, outermost first.
pub fn causes(st: &tonic::Status) -> String {
    let mut out = st.message().to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(st);
    while let Some(e) = src {
        out.push_str(": ");
        out.push_str(&e.to_string());
        src = e.source();
    }
    out
}

fn unreachable_or_rpc(addr: &str, st: &tonic::Status, tls: bool) -> Error {
    if st.code() == tonic::Code::Unavailable {
        return unreachable(addr, st, tls);
    }
    if std::error::Error::source(st).is_some() {
        // A transport failure (a status from the server has no source):
        // its causes say what happened, for example the TLS alert or the
        // broken connection a plaintext client at a TLS server gets.
        let reason = causes(st);
        let hint = tls_hint(&reason, tls);
        return Error::Rpc {
            addr: addr.to_string(),
            code: st.code(),
            message: format!("{reason}{hint}"),
        };
    }
    Error::rpc(addr, st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_model::TruthValue;
    use lockstep_model::atom::flatten_batch;

    fn concept(name: &str) -> Atom {
        Atom::node(AtomType::by_name("ConceptNode").unwrap(), name).unwrap()
    }

    fn link(a: &Atom, b: &Atom) -> Atom {
        Atom::link(
            AtomType::by_name("InheritanceLink").unwrap(),
            vec![a.clone(), b.clone()],
        )
        .unwrap()
    }

    fn names(unique: &[(FlatAtom, usize)]) -> Vec<String> {
        unique
            .iter()
            .map(|(a, _)| {
                if a.name.is_empty() {
                    format!("link/{}", a.outgoing.len())
                } else {
                    a.name.clone()
                }
            })
            .collect()
    }

    #[test]
    fn a_bulk_load_skips_only_bare_targets_already_acknowledged() {
        let (a, b, c) = (concept("a"), concept("b"), concept("c"));
        let load = BulkLoad::default();

        // Nothing acknowledged yet: every target is sent.
        let mut first = flatten_batch(&[link(&a, &b)]);
        load.drop_known(&mut first);
        assert_eq!(names(&first), ["a", "b", "link/2"]);

        load.acknowledged(&[a.handle(), b.handle()]);
        // `a` and `b` are known and bare; `c` is new; a target that carries
        // a truth value must still be sent, or its value would be lost.
        let b_tv = b.clone().with_tv(TruthValue::new(0.5, 0.5).unwrap());
        let mut next = flatten_batch(&[link(&a, &c), link(&c, &b_tv)]);
        load.drop_known(&mut next);
        assert_eq!(names(&next), ["c", "link/2", "b", "link/2"]);
    }

    #[test]
    fn a_bulk_load_remembers_at_most_its_capacity() {
        let load = BulkLoad::new(2);
        let atoms: Vec<Atom> = ["a", "b", "c"].iter().map(|n| concept(n)).collect();
        load.acknowledged(&atoms.iter().map(Atom::handle).collect::<Vec<_>>());
        let mut again = flatten_batch(&[link(&atoms[0], &atoms[2])]);
        load.drop_known(&mut again);
        assert_eq!(names(&again), ["c", "link/2"]);
    }
}
