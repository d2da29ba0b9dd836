//! A Lockstep shard: keeps atoms in RocksDB and serves them over gRPC.
//!
//! # Layout
//! - [`store`]: the key-value trait, its RocksDB and in-memory
//!   implementations and their conformance suite.
//! - [`atoms`]: atom semantics over a key-value store.
//! - [`column`]: the STI column, a workload's per-vertex values committed
//!   as chunked arrays.
//! - [`import`]: the operator's import folder, the only place jobs read
//!   host files from.
//! - [`routing`]: the shard's ring and the epoch/ownership checks.
//! - [`service`]: the gRPC data service.
//! - [`tick`]: the tick engine: phases, messages between shards, staged
//!   writes and two-phase commit.
//! - [`membership`]: registration, heartbeats and the topology watch.
//! - [`replica`]: a shard's data as a Raft group on openraft: the log
//!   store and the state machine (not yet serving).
//! - [`config`]: the typed configuration.
//! - [`metrics`]: the Prometheus metrics.
//!
//! [`run`] is the whole server: open the store, register, start the
//! background loops, serve until `shutdown`, then drain and flush.

pub mod atoms;
pub mod column;
pub mod config;
pub mod import;
pub mod membership;
pub mod metrics;
pub mod replica;
pub mod routing;
pub mod service;
pub mod store;
pub mod tick;

mod error;

use std::future::Future;
use std::sync::Arc;

use lockstep_proto::pb::shard_server::ShardServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tracing::info;

pub use config::ShardConfig;
pub use error::Error;

use crate::atoms::AtomStore;
use crate::routing::RoutingView;
use crate::store::KvStore;
use crate::store::rocks::{RocksOptions, RocksStore};

/// Runs a shard on `listener` until `shutdown` completes. In-flight requests
/// finish, then the store is flushed.
pub async fn run(
    listener: TcpListener,
    config: ShardConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let config = config.validate()?;
    let security = config.security()?;
    let token = security.token.clone();
    let bound = listener.local_addr()?;
    let address = match &config.advertise {
        Some(a) => a.clone(),
        None => {
            membership::advertise_address(
                bound,
                &config.coordinator,
                std::time::Duration::from_millis(config.register_timeout_ms),
            )
            .await?
        }
    };

    // 1. Storage. A second process on the same folder fails here.
    let rocks = RocksStore::open(
        &config.data_dir,
        &RocksOptions {
            sync_writes: config.sync_writes,
            block_cache_bytes: (config.block_cache_mb as usize) << 20,
        },
    )?;
    let store = Arc::new(AtomStore::open(rocks)?);

    // Metrics: every call counted, and `/metrics` where configured. The
    // endpoint stops with the background loops.
    let telemetry = lockstep_telemetry::Telemetry::new(
        lockstep_proto::method_paths().map_err(|e| Error::Config(e.to_string()))?,
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let endpoint = lockstep_telemetry::Endpoint::start_if(
        config.metrics_listen.as_deref(),
        &telemetry,
        stop_rx.clone(),
    )
    .await?;
    let metrics_address = endpoint
        .as_ref()
        .map(|e| reachable(e.address, &address))
        .unwrap_or_default();
    let reporter = membership::Reporter {
        store: store.clone(),
        metrics_address: metrics_address.clone(),
    };

    // 2. Serve, before registering: the coordinator admits a shard only
    // once its health service answers at the address it registers. Until
    // then the health service says NOT_SERVING and every data call is
    // `UNAVAILABLE: not registered yet`.
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<ShardServer<service::ShardService<RocksStore>>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let ready = Arc::new(std::sync::OnceLock::new());
    let svc = service::ShardService::new(
        store.clone(),
        ready.clone(),
        config.max_batch,
        config.max_scan_page,
    )
    .with_metrics_address(metrics_address);
    let window = config.http2_window_mb << 20;
    let served = security
        .server()
        .map_err(|e| Error::Config(e.to_string()))?
        .layer(telemetry.rpc_layer())
        .initial_stream_window_size(window)
        .initial_connection_window_size(2 * window)
        .max_frame_size(config.http2_frame_kb << 10)
        .add_service(health_service);
    let served = lockstep_proto::add_reflection(served)
        .map_err(|e| Error::Config(e.to_string()))?
        .add_service(InterceptedService::new(
            ShardServer::new(svc)
                .max_decoding_message_size(lockstep_proto::channel::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(lockstep_proto::channel::MAX_MESSAGE_BYTES),
            token.guard(),
        ))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a response written in more than one
            // segment waits for the peer's delayed ACK: 40 ms stalls.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        );
    tokio::pin!(served);

    // 3. Identity and the first topology.
    let mut coord = membership::coordinator_channel(&config.coordinator, &security)?;
    let registering = membership::register(
        &mut coord,
        &reporter,
        &address,
        config.weight,
        std::time::Duration::from_millis(config.register_timeout_ms),
        &config.coordinator,
    );
    let reg = tokio::select! {
        r = registering => r?,
        r = &mut served => {
            let _ = stop_tx.send(true);
            if let Some(e) = endpoint {
                e.stopped().await?;
            }
            r.map_err(|e| Error::Storage(format!("server failed: {e}")))?;
            info!("shut down before registering");
            return Ok(());
        }
    };
    info!(shard = %reg.id, %address, epoch = %reg.topology.epoch, "registered");
    let (routing_tx, routing_rx) = watch::channel(Arc::new(routing::from_topology(reg.topology)?));

    // 4. Background loops, stopped through `stop`.
    let watcher = tokio::spawn(membership::watch_topology(
        coord.clone(),
        routing_tx,
        stop_rx.clone(),
    ));
    let beats = tokio::spawn(membership::heartbeat_loop(
        coord.clone(),
        reg.id,
        reporter,
        routing_rx.clone(),
        reg.lease.clone(),
        reg.heartbeat.min(config.heartbeat_interval()),
        stop_rx,
    ));

    // 5. Ready: data calls and ticks are served from here on.
    let view = RoutingView::new(reg.id, routing_rx, reg.lease);
    let types = membership::TypeRegistrar::new(&config.coordinator, coord.clone());
    let engine = Arc::new(
        tick::TickEngine::new(
            store.clone(),
            view.clone(),
            tick::Faults {
                phase_delay: std::time::Duration::from_millis(config.fault_phase_delay_ms),
                commit_delay: std::time::Duration::from_millis(config.fault_commit_delay_ms),
            },
            config.input_limits(),
            config.max_inbox_mb.saturating_mul(1 << 20) as usize,
            security.clone(),
        )
        .with_phase_metrics(metrics::registered_phase_seconds(&telemetry)?)
        .with_types(types.clone()),
    );
    metrics::mirror(&telemetry, store.clone(), view.clone())?;
    let has_atoms = store.counts().atoms() > 0;
    let gate = membership::DataGate::new(reg.id, &config.coordinator, coord, has_atoms);
    if ready
        .set(service::Ready {
            routing: view,
            engine,
            gate,
            types,
        })
        .is_err()
    {
        return Err(Error::Storage("shard service made ready twice".into()));
    }
    health
        .set_serving::<ShardServer<service::ShardService<RocksStore>>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let served = served.await;

    // 6. Drain: stop the loops, then make everything durable.
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    let _ = beats.await;
    if let Some(e) = endpoint {
        e.stopped().await?;
    }
    let flushed = tokio::task::spawn_blocking(move || store.kv().flush())
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    served.map_err(|e| Error::Storage(format!("server failed: {e}")))?;
    flushed?;
    info!("shard stopped cleanly");
    Ok(())
}

/// The metrics address to report: the bound one, or, when bound to every
/// interface, the advertised host with the bound port.
fn reachable(bound: std::net::SocketAddr, advertised: &str) -> String {
    if bound.ip().is_unspecified()
        && let Some((host, _)) = advertised.rsplit_once(':')
    {
        return format!("{host}:{}", bound.port());
    }
    bound.to_string()
}
