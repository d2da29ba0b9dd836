//! The Lockstep coordinator: shard registry, liveness, ring epochs and
//! topology distribution.
//!
//! # Layout
//! - [`registry`]: the registry as a pure state machine, tested without I/O.
//! - [`handle`]: [`Registry`], the clonable handle that persists and
//!   publishes.
//! - [`jobs`]: the job driver: phases, barriers, aggregation, aborts and
//!   the commit point.
//! - [`peers`]: channels to shards and the health probe.
//! - [`service`]: the gRPC service.
//! - [`config`]: the typed configuration.
//! - [`metrics`]: the Prometheus metrics: the driver's and the registry's.
//!
//! [`run`] is the whole server.
#![forbid(unsafe_code)]

pub mod config;
pub mod handle;
pub mod jobs;
pub mod metrics;
pub mod peers;
pub mod registry;
pub mod service;

mod error;

use std::future::Future;
use std::time::Duration;

use lockstep_proto::pb::coordinator_server::CoordinatorServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

pub use config::CoordinatorConfig;
pub use error::Error;
pub use handle::Registry;

use crate::registry::Settings;

/// Runs the coordinator on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let config = config.validate()?;
    let security = config.security()?;
    let token = security.token.clone();

    // 1. The registry, from disk when there is one.
    let registry = Registry::open(
        &config.data_dir,
        Settings {
            vnodes: config.vnodes,
            max_batch: config.max_batch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            thresholds: config.thresholds(),
            max_types: config.max_types,
        },
    )?;
    info!(cluster = %registry.topology().cluster_id, epoch = %registry.topology().epoch, "registry loaded");

    // 2. Liveness: checked four times per suspect threshold.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut live_stop = stop_rx.clone();
    let period = Duration::from_millis((config.suspect_after_ms / 4).max(10));
    let live = registry.clone();
    let liveness = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(e) = live.refresh_liveness() {
                        warn!(error = %e, "liveness update failed");
                    }
                }
                _ = live_stop.changed() => return,
            }
        }
    });

    // 3. Metrics: every call counted, and `/metrics` where configured.
    let telemetry = lockstep_telemetry::Telemetry::new(
        lockstep_proto::method_paths().map_err(|e| Error::Config(e.to_string()))?,
    )?;
    let driver_metrics = metrics::DriverMetrics::registered(&telemetry)?;
    metrics::mirror_registry(&telemetry, registry.clone())?;
    let endpoint = lockstep_telemetry::Endpoint::start_if(
        config.metrics_listen.as_deref(),
        &telemetry,
        stop_rx.clone(),
    )
    .await?;

    // 4. Serve. The job driver and `status` share one channel per shard.
    let net = jobs::net::GrpcNet::new(security.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<CoordinatorServer<service::CoordinatorService>>()
        .await;
    let served = security
        .server()
        .map_err(|e| Error::Config(e.to_string()))?
        .layer(telemetry.rpc_layer())
        .add_service(health_service);
    let served = lockstep_proto::add_reflection(served)
        .map_err(|e| Error::Config(e.to_string()))?
        .add_service(InterceptedService::new(
            CoordinatorServer::new(
                service::CoordinatorService::new(
                    registry.clone(),
                    jobs::Jobs::with_net(registry.clone(), config.job_settings(), net.clone())
                        .with_metrics(driver_metrics),
                    service::Timeouts {
                        probe: Duration::from_millis(config.probe_timeout_ms),
                        status: Duration::from_millis(config.status_timeout_ms),
                    },
                    security.clone(),
                    net,
                )
                .with_metrics_address(endpoint.as_ref().map(|e| e.address.to_string())),
            )
            .max_decoding_message_size(lockstep_proto::channel::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(lockstep_proto::channel::MAX_MESSAGE_BYTES),
            token.guard(),
        ))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a response written in more than one
            // segment waits for the peer's delayed ACK: 40 ms stalls.
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;

    // 5. Drain.
    let _ = stop_tx.send(true);
    let _ = liveness.await;
    if let Some(e) = endpoint {
        e.stopped().await?;
    }
    registry.persist()?;
    served.map_err(|e| Error::Serve(e.to_string()))?;
    info!("coordinator stopped cleanly");
    Ok(())
}
