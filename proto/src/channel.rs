//! The one channel builder behind every gRPC client in the workspace:
//! client to coordinator and shards, shard to shard, shard to
//! coordinator and coordinator to shard. TLS and the token come from
//! [`Security`], keep-alive and timeouts from [`ChannelOptions`], and the
//! message limit is the same everywhere ([`MAX_MESSAGE_BYTES`]).

use std::time::Duration;

use tonic::transport::Channel;

use crate::ProtoError;
use crate::auth::{Authed, authed};
use crate::pb::{
    coordinator_client::CoordinatorClient, replication_client::ReplicationClient,
    shard_client::ShardClient,
};
use crate::tls::Security;

/// The largest message any client or server of the cluster sends or takes.
/// Requests are capped far below it (`max_batch`, `max_scan_page`); this
/// only keeps one malformed length from allocating without bound.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// How a channel dials and notices a dead peer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelOptions {
    pub connect_timeout: Duration,
    /// HTTP/2 pings this often, and the connection is dropped when one goes
    /// unanswered for `keep_alive_timeout`: a peer cut off mid-call fails
    /// the call in seconds instead of after TCP's retransmissions.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    /// Ping an idle connection too, so a stream that waits for news (the
    /// topology watch) notices a partition.
    pub keep_alive_while_idle: bool,
    /// A limit on each request, if any.
    pub request_timeout: Option<Duration>,
}

impl ChannelOptions {
    /// Between the servers of one cluster.
    pub const PEER: ChannelOptions = ChannelOptions {
        connect_timeout: Duration::from_secs(2),
        keep_alive_interval: Duration::from_secs(1),
        keep_alive_timeout: Duration::from_secs(2),
        keep_alive_while_idle: true,
        request_timeout: None,
    };

    /// From a client: pings less eagerly, since it may hold many channels.
    pub fn client(connect_timeout: Duration) -> ChannelOptions {
        ChannelOptions {
            connect_timeout,
            keep_alive_interval: Duration::from_secs(2),
            keep_alive_timeout: Duration::from_secs(4),
            keep_alive_while_idle: false,
            request_timeout: None,
        }
    }

    /// The same, with a limit on each request.
    pub fn with_request_timeout(mut self, t: Duration) -> ChannelOptions {
        self.request_timeout = Some(t);
        self
    }
}

impl Security {
    /// A lazy channel to `addr` (`host:port`): it dials on first use, so
    /// building one never blocks, and an address that does not parse is an
    /// error, never a panic.
    pub fn channel(&self, addr: &str, opts: &ChannelOptions) -> Result<Channel, ProtoError> {
        let mut ep = self
            .endpoint(addr)?
            .connect_timeout(opts.connect_timeout)
            .http2_keep_alive_interval(opts.keep_alive_interval)
            .keep_alive_timeout(opts.keep_alive_timeout)
            .keep_alive_while_idle(opts.keep_alive_while_idle);
        if let Some(t) = opts.request_timeout {
            ep = ep.timeout(t);
        }
        Ok(ep.connect_lazy())
    }

    /// A Shard client over `channel`, carrying this process's token.
    pub fn shard_client(&self, channel: Channel) -> ShardClient<Authed> {
        ShardClient::new(authed(channel, &self.token))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A Replication client (a replica group's Raft messages) over
    /// `channel`, carrying this process's token.
    pub fn replication_client(&self, channel: Channel) -> ReplicationClient<Authed> {
        ReplicationClient::new(authed(channel, &self.token))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A Coordinator client over `channel`, carrying this process's token.
    pub fn coordinator_client(&self, channel: Channel) -> CoordinatorClient<Authed> {
        CoordinatorClient::new(authed(channel, &self.token))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_address_is_an_error_not_a_panic() {
        let s = Security::none();
        assert!(s.channel("not an address", &ChannelOptions::PEER).is_err());
        assert!(s.channel("127.0.0.1:1", &ChannelOptions::PEER).is_ok());
    }
}
