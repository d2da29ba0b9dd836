//! How the job driver talks to shards: the [`ShardNet`] trait, and
//! [`GrpcNet`], its implementation over tonic.
//!
//! The driver's logic (deadlines, aborts, the commit point, blame) only sees
//! this trait, so its unit tests run it against a scripted fake network
//! under tokio's paused clock (`jobs::tests`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lockstep_proto::pb::{self, shard_client::ShardClient};
use lockstep_proto::tls::Security;
use parking_lot::Mutex;
use tonic::Status;
use tonic::transport::Channel;

use crate::peers;

/// Why a call to a shard did not return its answer.
#[derive(Debug)]
pub enum CallError {
    /// The shard's address cannot be dialled at all (a registry written by
    /// an older release may hold one): no retry changes that.
    Undialable(String),
    /// The shard answered with an error, or the transport failed.
    Status(Status),
}

/// The driver's calls to one shard, by address. Deadlines are the driver's:
/// an implementation may take as long as the shard does.
pub trait ShardNet: Send + Sync + 'static {
    /// Runs one phase of a tick on the shard.
    fn start_phase(
        &self,
        addr: &str,
        req: pb::StartPhaseRequest,
    ) -> BoxFuture<'static, Result<pb::PhaseDone, CallError>>;

    /// Tells the shard to drop what an attempt staged.
    fn abort_tick(
        &self,
        addr: &str,
        req: pb::AbortTickRequest,
    ) -> BoxFuture<'static, Result<(), CallError>>;

    /// Whether the shard answers its health check as serving. It has no side
    /// effects, so it is safe at any point of a job, the commit included.
    fn serving(&self, addr: &str) -> BoxFuture<'static, bool>;
}

/// [`ShardNet`] over gRPC, with one cached lazy channel per address.
pub struct GrpcNet {
    security: Security,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcNet {
    pub fn new(security: Security) -> Arc<GrpcNet> {
        Arc::new(GrpcNet {
            security,
            channels: Mutex::new(HashMap::new()),
        })
    }

    fn channel(&self, addr: &str) -> Result<Channel, CallError> {
        if let Some(c) = self.channels.lock().get(addr) {
            return Ok(c.clone());
        }
        let c = peers::channel(addr, &self.security)
            .map_err(|e| CallError::Undialable(e.to_string()))?;
        self.channels.lock().insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn client(&self, addr: &str) -> Result<ShardClient<lockstep_proto::auth::Authed>, CallError> {
        Ok(self.security.shard_client(self.channel(addr)?))
    }
}

impl GrpcNet {
    /// The shard's counts as of now (`status` reads them).
    pub fn metrics(&self, addr: &str) -> BoxFuture<'static, Result<pb::ShardMetrics, CallError>> {
        let client = self.client(addr);
        Box::pin(async move {
            let mut c = client?;
            c.get_metrics(pb::GetMetricsRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(CallError::Status)
        })
    }
}

impl ShardNet for GrpcNet {
    fn start_phase(
        &self,
        addr: &str,
        req: pb::StartPhaseRequest,
    ) -> BoxFuture<'static, Result<pb::PhaseDone, CallError>> {
        let client = self.client(addr);
        Box::pin(async move {
            let mut c = client?;
            c.start_phase(req)
                .await
                .map(tonic::Response::into_inner)
                .map_err(CallError::Status)
        })
    }

    fn abort_tick(
        &self,
        addr: &str,
        req: pb::AbortTickRequest,
    ) -> BoxFuture<'static, Result<(), CallError>> {
        let client = self.client(addr);
        Box::pin(async move {
            let mut c = client?;
            c.abort_tick(req)
                .await
                .map(|_| ())
                .map_err(CallError::Status)
        })
    }

    fn serving(&self, addr: &str) -> BoxFuture<'static, bool> {
        let ch = self.channel(addr);
        Box::pin(async move {
            let Ok(ch) = ch else {
                return false;
            };
            peers::probe(ch, Duration::from_secs(1)).await == Ok(peers::Probe::Serving)
        })
    }
}
