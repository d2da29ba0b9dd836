//! Channels from the coordinator to shards, and the health probe that
//! decides whether a shard answers at its address.

use std::time::Duration;

use lockstep_proto::channel::ChannelOptions;
use lockstep_proto::tls::Security;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::Error;

/// A lazy channel to the shard at `addr`. An address that does not parse is
/// an error, never a panic: a registry written by an older release may hold
/// one.
pub fn channel(addr: &str, security: &Security) -> Result<Channel, Error> {
    security
        .channel(addr, &ChannelOptions::PEER)
        .map_err(|e| Error::Invalid(format!("shard address {addr:?} is not dialable: {e}")))
}

/// What a health probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Serving,
    /// The health service answered, but not as serving (a shard that is
    /// still starting answers NOT_SERVING until it is registered).
    Answered,
}

/// One health check of `channel` within `timeout`. The probe has no side
/// effects, so it is safe at any point of a job.
pub async fn probe(channel: Channel, timeout: Duration) -> Result<Probe, String> {
    let mut health = HealthClient::new(channel);
    let req = HealthCheckRequest {
        service: String::new(),
    };
    match tokio::time::timeout(timeout, health.check(req)).await {
        Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => Ok(Probe::Serving),
        Ok(Ok(_)) => Ok(Probe::Answered),
        Ok(Err(st)) => Err(st.message().to_string()),
        Err(_) => Err(format!("no answer to a health check within {timeout:?}")),
    }
}

/// Checks, before a shard enters the registry, that its health service
/// answers at the address it registered: an address nobody can dial would
/// otherwise enter the ring.
pub async fn reachable(addr: &str, timeout: Duration, security: &Security) -> Result<(), Error> {
    probe(channel(addr, security)?, timeout)
        .await
        .map(|_| ())
        .map_err(|reason| Error::Unreachable {
            address: addr.to_string(),
            reason,
        })
}
