//! Operability shared by both servers: a Prometheus registry per server
//! process (never the global one, so an in-process test cluster keeps one
//! set of figures per server), the tower layer that counts and times every
//! gRPC call, and the HTTP `/metrics` endpoint.
//!
//! # Layout
//! - [`Telemetry`]: the registry, its metric constructors and the hooks
//!   that refresh gauges just before a scrape.
//! - [`rpc`]: `grpc_server_handled_total` and
//!   `grpc_server_handling_seconds`, by service, method and code.
//! - [`serve`]: the `/metrics` endpoint.
#![forbid(unsafe_code)]

pub mod rpc;

mod error;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use parking_lot::Mutex;
use prometheus::{Encoder, Registry};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::warn;

pub use error::Error;
pub use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts,
};

type Hook = Box<dyn Fn() + Send + Sync>;

/// One server's metrics. Clones share the registry.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    hooks: Arc<Mutex<Vec<Hook>>>,
    rpc: rpc::RpcMetrics,
}

/// Buckets for durations from 100 µs to about 100 s.
pub fn duration_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(1e-4, 2.0, 21)
        .unwrap_or_else(|_| prometheus::DEFAULT_BUCKETS.to_vec())
}

/// A histogram of durations in seconds, with labels, registered nowhere
/// yet (see [`Telemetry::register`]).
pub fn seconds_vec(
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(duration_buckets()),
        labels,
    )
}

impl Telemetry {
    /// A fresh registry with the gRPC metrics in it. `methods` are the
    /// full paths (`/lockstep.v1.Shard/Put`) this server serves: any other
    /// path is counted as method `unknown`, so a client cannot grow the
    /// label set.
    pub fn new<I, S>(methods: I) -> Result<Telemetry, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let registry = Registry::new();
        let rpc = rpc::RpcMetrics::new(&registry, methods)?;
        Ok(Telemetry {
            registry,
            hooks: Arc::default(),
            rpc,
        })
    }

    /// The layer to put on a tonic server so every call is counted and
    /// timed.
    pub fn rpc_layer(&self) -> rpc::RpcLayer {
        rpc::RpcLayer::new(self.rpc.clone())
    }

    /// Registers `metric` and returns it.
    pub fn register<C>(&self, metric: C) -> Result<C, Error>
    where
        C: prometheus::core::Collector + Clone + 'static,
    {
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    /// A gauge, registered.
    pub fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, Error> {
        self.register(IntGauge::new(name, help)?)
    }

    /// A gauge with labels, registered.
    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, Error> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    /// A gauge of a real number (seconds, ratios), registered.
    pub fn float_gauge(&self, name: &str, help: &str) -> Result<Gauge, Error> {
        self.register(Gauge::new(name, help)?)
    }

    /// A gauge of a real number (seconds, ratios) with labels, registered.
    pub fn float_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<GaugeVec, Error> {
        self.register(GaugeVec::new(Opts::new(name, help), labels)?)
    }

    /// Runs `hook` before every scrape: gauges that mirror state held
    /// elsewhere (counts, epochs, heartbeat ages) are set there, so they are
    /// as fresh as the scrape.
    pub fn on_scrape(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.hooks.lock().push(Box::new(hook));
    }

    /// Every metric, in the Prometheus text format.
    pub fn render(&self) -> Result<String, Error> {
        for hook in self.hooks.lock().iter() {
            hook();
        }
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| Error::Encode(e.to_string()))
    }
}

/// A running `/metrics` endpoint.
pub struct Endpoint {
    /// Where it listens (the port chosen when the configured one was 0).
    pub address: SocketAddr,
    task: JoinHandle<Result<(), Error>>,
}

impl Endpoint {
    /// Binds `address` and serves there until `shutdown` completes.
    pub async fn start(
        address: &str,
        telemetry: Telemetry,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Endpoint, Error> {
        let bind = |e: std::io::Error| Error::Bind {
            address: address.to_string(),
            reason: e.to_string(),
        };
        let listener = TcpListener::bind(address).await.map_err(bind)?;
        let bound = listener.local_addr().map_err(bind)?;
        Ok(Endpoint {
            address: bound,
            task: tokio::spawn(serve(listener, telemetry, shutdown)),
        })
    }

    /// Starts an endpoint on `address` when one is configured; it stops
    /// once `stop` says true.
    pub async fn start_if(
        address: Option<&str>,
        telemetry: &Telemetry,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Option<Endpoint>, Error> {
        let Some(address) = address else {
            return Ok(None);
        };
        let e = Endpoint::start(address, telemetry.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await?;
        tracing::info!(address = %e.address, "serving /metrics");
        Ok(Some(e))
    }

    /// Waits for the endpoint to stop, after its shutdown.
    pub async fn stopped(self) -> Result<(), Error> {
        self.task.await.map_err(|e| Error::Serve(e.to_string()))?
    }
}

/// Checks a configured `metrics_listen`: absent (no endpoint) or a
/// non-empty address.
pub fn check_listen(address: Option<&str>) -> Result<(), String> {
    match address {
        Some(a) if a.trim().is_empty() => {
            Err("metrics_listen must be host:port; leave it out for no metrics endpoint".into())
        }
        _ => Ok(()),
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes. The
/// endpoint carries counts and timings, never data, and needs no token.
pub async fn serve(
    listener: TcpListener,
    telemetry: Telemetry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let t = telemetry.clone();
            async move {
                match t.render() {
                    Ok(text) => ([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
                    Err(e) => {
                        warn!(error = %e, "rendering metrics failed");
                        (http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                    }
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Serve(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_run_before_each_render() {
        let t = Telemetry::new(["/a.B/C"]).unwrap();
        let g = t.gauge("lockstep_test_value", "a test gauge").unwrap();
        let n = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let seen = n.clone();
        t.on_scrape(move || {
            g.set(seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
        });
        assert!(t.render().unwrap().contains("lockstep_test_value 1"));
        assert!(t.render().unwrap().contains("lockstep_test_value 2"));
    }

    #[tokio::test]
    async fn an_endpoint_starts_only_where_configured_and_stops_on_its_signal() {
        assert!(check_listen(Some(" ")).is_err());
        assert!(check_listen(None).is_ok() && check_listen(Some("127.0.0.1:0")).is_ok());
        let t = Telemetry::new(Vec::<String>::new()).unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        assert!(
            Endpoint::start_if(None, &t, rx.clone())
                .await
                .unwrap()
                .is_none()
        );
        let e = Endpoint::start_if(Some("127.0.0.1:0"), &t, rx)
            .await
            .unwrap()
            .expect("an endpoint");
        assert_ne!(e.address.port(), 0);
        stop.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), e.stopped())
            .await
            .expect("the endpoint stops on its signal")
            .unwrap();
    }

    #[test]
    fn a_name_registered_twice_is_an_error() {
        let t = Telemetry::new(Vec::<String>::new()).unwrap();
        t.gauge("lockstep_twice", "x").unwrap();
        assert!(t.gauge("lockstep_twice", "x").is_err());
    }
}
