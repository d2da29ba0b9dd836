//! The gRPC Coordinator service over a [`Registry`].

use lockstep_proto::tls::Security;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::Stream;
use lockstep_model::ShardId;
use lockstep_proto::pb::{self, coordinator_server::Coordinator};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use crate::handle::Registry;
use crate::jobs::Jobs;
use crate::jobs::net::GrpcNet;
use crate::registry::Registration;
use std::sync::Arc;

/// The most type names one RegisterTypes call may carry: as many as the
/// distinct types of one full batch could need.
const MAX_TYPES_PER_CALL: usize = 4096;

/// How long the service waits on shards.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For a registering shard's health service to answer.
    pub probe: Duration,
    /// For each shard's current counts in `status`.
    pub status: Duration,
}

/// The Coordinator service.
pub struct CoordinatorService {
    registry: Registry,
    jobs: Jobs,
    timeouts: Timeouts,
    /// How the registration probe dials: the cluster's TLS.
    security: Security,
    /// Calls to shards (their current counts for `status`).
    net: Arc<GrpcNet>,
    /// Where this coordinator serves `/metrics`, if it does.
    metrics_address: Option<String>,
}

impl CoordinatorService {
    pub fn new(
        registry: Registry,
        jobs: Jobs,
        timeouts: Timeouts,
        security: Security,
        net: Arc<GrpcNet>,
    ) -> Self {
        CoordinatorService {
            registry,
            jobs,
            timeouts,
            security,
            net,
            metrics_address: None,
        }
    }

    /// The same service, reporting `address` as its `/metrics` endpoint.
    pub fn with_metrics_address(mut self, address: Option<String>) -> Self {
        self.metrics_address = address;
        self
    }

    /// Each shard's counts as of now, read concurrently; `None` for a shard
    /// that is Down or does not answer within the status timeout.
    async fn fresh_metrics(
        &self,
        shards: &[crate::registry::ShardRecord],
    ) -> Vec<Option<pb::ShardMetrics>> {
        let calls = shards.iter().map(|r| {
            let call = (r.liveness != lockstep_model::Liveness::Down)
                .then(|| self.net.metrics(&r.address));
            let limit = self.timeouts.status;
            async move {
                match tokio::time::timeout(limit, call?).await {
                    Ok(Ok(m)) => Some(m),
                    _ => None,
                }
            }
        });
        futures::future::join_all(calls).await
    }
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;

type TopologyStream = Pin<Box<dyn Stream<Item = Result<pb::Topology, Status>> + Send>>;

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = req.into_inner();
        let reg = Registration {
            shard_id: req.shard_id.map(ShardId),
            cluster_id: req.cluster_id,
            address: req.address,
            weight: req.weight,
            atoms: req.metrics.map(|m| m.atoms).unwrap_or(0),
        };
        // Only an address that parses, and at which the shard's health
        // service answers, enters the registry.
        crate::registry::validate_address(&reg.address)?;
        crate::peers::reachable(&reg.address, self.timeouts.probe, &self.security).await?;
        let (id, topology) = self.registry.register(reg)?;
        tracing::info!(shard = %id, epoch = %topology.epoch, "shard registered");
        let settings = self.registry.settings();
        Ok(Response::new(pb::RegisterResponse {
            shard_id: id.0,
            cluster_id: topology.cluster_id.clone(),
            topology: Some((&topology).into()),
            heartbeat_interval_ms: settings.heartbeat_interval_ms,
            lease_ms: settings.thresholds.lease().as_millis() as u64,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        self.registry
            .heartbeat(ShardId(req.shard_id), req.metrics.unwrap_or_default())?;
        Ok(Response::new(pb::HeartbeatResponse {
            epoch: self.registry.topology().epoch.0,
            lease_ms: self.registry.settings().thresholds.lease().as_millis() as u64,
        }))
    }

    async fn get_topology(
        &self,
        _req: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::Topology>, Status> {
        Ok(Response::new((&self.registry.topology()).into()))
    }

    type WatchTopologyStream = TopologyStream;

    async fn watch_topology(
        &self,
        _req: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<Self::WatchTopologyStream>, Status> {
        // The first item is the current topology, then one per change.
        let stream = WatchStream::new(self.registry.subscribe()).map(|t| Ok((&t).into()));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let mut view = self.registry.status();
        // Counts read now rather than at the last heartbeat, so that what
        // was acknowledged before this call is in its answer.
        let fresh = self.fresh_metrics(&view.shards).await;
        let now = Instant::now();
        let shards: Vec<pb::ShardStatus> = view
            .shards
            .iter_mut()
            .zip(fresh)
            .map(|(r, m)| {
                let is_fresh = m.is_some();
                if let Some(m) = m {
                    r.metrics = m;
                }
                pb::ShardStatus {
                    shard: Some((&r.entry()).into()),
                    metrics: Some(r.metrics.clone()),
                    ms_since_heartbeat: r
                        .last_seen
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64)
                        .unwrap_or(u64::MAX),
                    fresh: is_fresh,
                }
            })
            .collect();
        let in_ring: Vec<u64> = view
            .shards
            .iter()
            .filter(|r| r.in_ring)
            .map(|r| r.metrics.atoms)
            .collect();
        let total_atoms: u64 = view.shards.iter().map(|r| r.metrics.atoms).sum();
        let balance = if in_ring.is_empty() || in_ring.iter().all(|&a| a == 0) {
            0.0
        } else {
            let max = *in_ring.iter().max().expect("non-empty") as f64;
            let mean = in_ring.iter().sum::<u64>() as f64 / in_ring.len() as f64;
            max / mean
        };
        Ok(Response::new(pb::ClusterStatusResponse {
            topology: Some((&view.topology).into()),
            shards,
            total_atoms,
            total_live_bytes: view.shards.iter().map(|r| r.metrics.live_bytes).sum(),
            balance,
            has_data: view.has_data,
            committed_tick: view.committed_tick,
            metrics_address: self.metrics_address.clone().unwrap_or_default(),
        }))
    }

    type SubmitJobStream = JobStream;

    async fn submit_job(
        &self,
        req: Request<pb::JobSpec>,
    ) -> Result<Response<Self::SubmitJobStream>, Status> {
        let (_, rx) = self.jobs.submit(req.into_inner())?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn cancel_job(
        &self,
        req: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let committed_tick = self.jobs.cancel(req.into_inner().job_id)?;
        Ok(Response::new(pb::CancelJobResponse { committed_tick }))
    }

    async fn declare_data(
        &self,
        _req: Request<pb::DeclareDataRequest>,
    ) -> Result<Response<pb::DeclareDataResponse>, Status> {
        let epoch = self.registry.declare_data()?;
        Ok(Response::new(pb::DeclareDataResponse { epoch: epoch.0 }))
    }

    async fn register_types(
        &self,
        req: Request<pb::RegisterTypesRequest>,
    ) -> Result<Response<pb::RegisterTypesResponse>, Status> {
        let names = req.into_inner().names;
        if names.len() > MAX_TYPES_PER_CALL {
            return Err(crate::Error::Invalid(format!(
                "{} type names in one call; at most {MAX_TYPES_PER_CALL}",
                names.len()
            ))
            .into());
        }
        let types = self.registry.register_types(&names)?;
        Ok(Response::new(pb::RegisterTypesResponse {
            types: types
                .into_iter()
                .map(|(id, name)| pb::RegisteredType {
                    id: u32::from(id),
                    name,
                })
                .collect(),
        }))
    }

    async fn remove_shard(
        &self,
        req: Request<pb::RemoveShardRequest>,
    ) -> Result<Response<pb::RemoveShardResponse>, Status> {
        let id = ShardId(req.into_inner().shard_id);
        if self.jobs.running().is_some() {
            return Err(
                crate::Error::Invalid(format!("{id} cannot be removed while a job runs")).into(),
            );
        }
        let epoch = self.registry.remove(id)?;
        tracing::info!(shard = %id, %epoch, "shard removed");
        Ok(Response::new(pb::RemoveShardResponse { epoch: epoch.0 }))
    }

    async fn list_jobs(
        &self,
        _req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        Ok(Response::new(pb::ListJobsResponse {
            jobs: self.jobs.list(),
        }))
    }
}
