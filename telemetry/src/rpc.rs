//! Per-method gRPC metrics, named as the gRPC ecosystem names them
//! (`go-grpc-prometheus`, `tonic` users' dashboards):
//! - `grpc_server_handled_total{grpc_service, grpc_method, grpc_code}`;
//! - `grpc_server_handling_seconds{grpc_service, grpc_method}`, from the
//!   request's arrival to the end of the response, its last stream message
//!   included.
//!
//! The code is the response's `grpc-status`, read from its headers (an
//! error answered at once) or its trailers (every other end). A response
//! dropped before its end, as when the client goes away, counts as
//! `Canceled` (gRPC's spelling).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prometheus::{HistogramVec, IntCounterVec, Opts, Registry};

use crate::Error;

/// The counters and histograms, and the paths that get their own labels.
#[derive(Clone)]
pub struct RpcMetrics {
    handled: IntCounterVec,
    seconds: HistogramVec,
    /// Path → (service, method), split once here rather than per call.
    known: Arc<HashMap<String, Labels>>,
    unknown: Labels,
}

/// A call's `(grpc_service, grpc_method)`.
type Labels = Arc<(String, String)>;

impl RpcMetrics {
    pub(crate) fn new<I, S>(registry: &Registry, methods: I) -> Result<RpcMetrics, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "gRPC calls completed, by service, method and status code.",
            ),
            &["grpc_service", "grpc_method", "grpc_code"],
        )?;
        let seconds = crate::seconds_vec(
            "grpc_server_handling_seconds",
            "Time from a gRPC call's arrival to the end of its response.",
            &["grpc_service", "grpc_method"],
        )?;
        registry.register(Box::new(handled.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        Ok(RpcMetrics {
            handled,
            seconds,
            known: Arc::new(
                methods
                    .into_iter()
                    .map(Into::into)
                    .filter_map(|path: String| {
                        let (service, method) = path.trim_start_matches('/').split_once('/')?;
                        let labels = Arc::new((service.to_string(), method.to_string()));
                        Some((path, labels))
                    })
                    .collect(),
            ),
            unknown: Arc::new(("unknown".into(), "unknown".into())),
        })
    }

    /// `(service, method)` for a request path; a path this server does not
    /// serve is `("unknown", "unknown")`.
    fn labels(&self, path: &str) -> Labels {
        self.known.get(path).unwrap_or(&self.unknown).clone()
    }
}

/// A tower layer counting and timing every call of the service it wraps.
#[derive(Clone)]
pub struct RpcLayer {
    metrics: RpcMetrics,
}

impl RpcLayer {
    pub(crate) fn new(metrics: RpcMetrics) -> RpcLayer {
        RpcLayer { metrics }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> RpcService<S> {
        RpcService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`RpcLayer`] makes.
#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S, B, RB> tower::Service<Request<B>> for RpcService<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Timed<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut record = Record {
            metrics: self.metrics.clone(),
            labels: self.metrics.labels(req.uri().path()),
            started: Instant::now(),
            code: None,
        };
        // The clone that was made ready serves this call (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let resp = inner.call(req).await?;
            record.read(resp.headers());
            Ok(resp.map(|body| Timed {
                inner: body,
                record: Some(record),
            }))
        })
    }
}

/// A call being measured; it is counted when dropped.
struct Record {
    metrics: RpcMetrics,
    labels: Labels,
    started: Instant,
    /// The status once the response has said it.
    code: Option<&'static str>,
}

impl Record {
    fn read(&mut self, headers: &HeaderMap) {
        if let Some(v) = headers.get("grpc-status") {
            self.code = Some(code_name(v.as_bytes()));
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let code = self.code.unwrap_or("Canceled");
        let (service, method) = &*self.labels;
        self.metrics
            .handled
            .with_label_values(&[service, method, code])
            .inc();
        self.metrics
            .seconds
            .with_label_values(&[service, method])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// gRPC's name for a status code, as `go-grpc-prometheus` writes it.
fn code_name(raw: &[u8]) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .and_then(|n| NAMES.get(n))
        .unwrap_or(&"Unknown")
}

/// A response body that finishes its call's [`Record`] at its end.
pub struct Timed<B> {
    inner: B,
    record: Option<Record>,
}

impl<B> Body for Timed<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(r) = self.record.as_mut()
                {
                    r.read(trailers);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(r) = self.record.as_mut() {
                    r.code.get_or_insert("Internal");
                }
            }
            Poll::Ready(None) => {
                // The end of a response whose status was never written:
                // count it now, as it ends, not when the body is dropped.
                if let Some(mut r) = self.record.take() {
                    r.code.get_or_insert("Unknown");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, Service};

    /// Answers every call with `status` in its headers (`trailers`
    /// false) or in its trailers.
    #[derive(Clone)]
    struct Answer {
        status: &'static str,
        trailers: bool,
    }

    type TestBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;

    impl Service<Request<()>> for Answer {
        type Response = Response<TestBody>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            let resp = if self.trailers {
                let mut t = HeaderMap::new();
                t.insert("grpc-status", self.status.parse().unwrap());
                let body = Full::new(bytes::Bytes::from_static(b"x"))
                    .with_trailers(async move { Some(Ok(t)) });
                Response::new(body.boxed())
            } else {
                let mut r = Response::new(Full::new(bytes::Bytes::new()).boxed());
                r.headers_mut()
                    .insert("grpc-status", self.status.parse().unwrap());
                r
            };
            std::future::ready(Ok(resp))
        }
    }

    async fn call(layer: &RpcLayer, answer: Answer, path: &str, read: bool) {
        let mut svc = layer.layer(answer);
        let req = Request::builder().uri(path).body(()).unwrap();
        let resp = svc.call(req).await.unwrap();
        if read {
            resp.into_body().collect().await.unwrap();
        }
    }

    #[tokio::test]
    async fn calls_are_counted_by_the_status_they_ended_with() {
        let registry = Registry::new();
        let m = RpcMetrics::new(&registry, ["/s.S/Get"]).unwrap();
        let layer = RpcLayer::new(m.clone());
        let at_once = Answer {
            status: "5",
            trailers: false,
        };
        let at_end = Answer {
            status: "0",
            trailers: true,
        };
        call(&layer, at_once.clone(), "/s.S/Get", true).await;
        call(&layer, at_end.clone(), "/s.S/Get", true).await;
        call(&layer, at_end.clone(), "/s.S/Get", true).await;
        // Dropped before its trailers: the client went away.
        call(&layer, at_end, "/s.S/Get", false).await;
        call(&layer, at_once, "/s.S/Nope", true).await;
        let n = |method: &str, code: &str| {
            m.handled
                .with_label_values(&[
                    if method == "unknown" {
                        "unknown"
                    } else {
                        "s.S"
                    },
                    method,
                    code,
                ])
                .get()
        };
        assert_eq!(n("Get", "NotFound"), 1);
        assert_eq!(n("Get", "OK"), 2);
        assert_eq!(n("Get", "Canceled"), 1);
        assert_eq!(n("unknown", "NotFound"), 1);
        assert_eq!(
            m.seconds
                .with_label_values(&["s.S", "Get"])
                .get_sample_count(),
            4
        );
    }

    #[test]
    fn codes_are_named_and_unknown_paths_collapse() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"14"), "Unavailable");
        assert_eq!(code_name(b"99"), "Unknown");
        assert_eq!(code_name(b"x"), "Unknown");
        let m = RpcMetrics::new(&Registry::new(), ["/lockstep.v1.Shard/Put"]).unwrap();
        assert_eq!(
            *m.labels("/lockstep.v1.Shard/Put"),
            ("lockstep.v1.Shard".into(), "Put".into())
        );
        assert_eq!(
            *m.labels("/lockstep.v1.Shard/Anything"),
            ("unknown".into(), "unknown".into())
        );
    }
}
