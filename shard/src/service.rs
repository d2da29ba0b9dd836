//! The gRPC data service: validation, epoch and ownership checks, then the
//! atom store on a blocking thread.

use std::sync::{Arc, OnceLock};

use lockstep_model::{Epoch, FlatAtom, Handle, IncomingRef};
use lockstep_proto::ProtoError;
use lockstep_proto::convert::handles_from_pb;
use lockstep_proto::pb::{self, shard_server::Shard};
use tonic::{Request, Response, Status};

use crate::Error;
use crate::atoms::AtomRead;
use crate::atoms::AtomStore;
use crate::membership::{DataGate, TypeRegistrar};
use crate::routing::RoutingView;
use crate::store::KvStore;
use crate::tick::TickEngine;

/// The page size when the request says 0.
const DEFAULT_PAGE: usize = 1_000;

/// What the service needs once the shard is registered.
pub struct Ready<S: KvStore> {
    pub routing: RoutingView,
    pub engine: Arc<TickEngine<S>>,
    pub gate: DataGate,
    pub types: TypeRegistrar,
}

/// The Shard service over an atom store. It serves from before
/// registration (so the coordinator can reach the shard's health service
/// at the address it registers), answering `UNAVAILABLE: not registered
/// yet` until [`Ready`] is set.
pub struct ShardService<S: KvStore> {
    store: Arc<AtomStore<S>>,
    ready: Arc<OnceLock<Ready<S>>>,
    max_batch: usize,
    max_page: usize,
    /// Where this shard serves `/metrics`; empty when it does not.
    metrics_address: String,
}

impl<S: KvStore> ShardService<S> {
    pub fn new(
        store: Arc<AtomStore<S>>,
        ready: Arc<OnceLock<Ready<S>>>,
        max_batch: usize,
        max_page: usize,
    ) -> Self {
        ShardService {
            store,
            ready,
            max_batch,
            max_page,
            metrics_address: String::new(),
        }
    }

    /// The same service, reporting `address` as its `/metrics` endpoint.
    pub fn with_metrics_address(mut self, address: String) -> Self {
        self.metrics_address = address;
        self
    }

    fn ready(&self) -> Result<&Ready<S>, Error> {
        self.ready.get().ok_or(Error::NotReady)
    }

    fn check_len(&self, len: usize) -> Result<(), Error> {
        if len > self.max_batch {
            return Err(Error::BatchTooLarge {
                len,
                max: self.max_batch,
            });
        }
        Ok(())
    }

    /// A page size: 0 asks for the default, and more than the configured
    /// maximum is refused, naming the limit.
    fn page_limit(&self, limit: u32) -> Result<usize, Error> {
        match limit as usize {
            0 => Ok(DEFAULT_PAGE.min(self.max_page)),
            n if n > self.max_page => Err(Error::OverLimit {
                what: format!("a page of {n}"),
                limit: "max_scan_page",
                max: self.max_page as u64,
            }),
            n => Ok(n),
        }
    }

    /// Runs a store call on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AtomStore<S>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::Storage(format!("store task failed: {e}")))?
    }
}

fn cursor(raw: &[u8]) -> Result<Option<Handle>, Error> {
    if raw.is_empty() {
        Ok(None)
    } else {
        Ok(Some(Handle::from_slice(raw)?))
    }
}

#[tonic::async_trait]
impl<S: KvStore> Shard for ShardService<S> {
    async fn get_metrics(
        &self,
        _req: Request<pb::GetMetricsRequest>,
    ) -> Result<Response<pb::ShardMetrics>, Status> {
        let epoch = self.ready().map_or(0, |r| r.routing.current().epoch().0);
        let at = self.metrics_address.clone();
        let m = self
            .blocking(move |store| Ok(crate::membership::metrics(store, epoch, &at)))
            .await?;
        Ok(Response::new(m))
    }

    async fn put_atoms(
        &self,
        req: Request<pb::PutAtomsRequest>,
    ) -> Result<Response<pb::PutAtomsResponse>, Status> {
        let req = req.into_inner();
        self.check_len(req.atoms.len() + req.incoming.len())?;
        // Validate everything before touching the store, so a bad request
        // changes nothing.
        let atoms = req
            .atoms
            .into_iter()
            .map(FlatAtom::try_from)
            .collect::<Result<Vec<_>, ProtoError>>()
            .map_err(Error::from)?;
        let incoming = req
            .incoming
            .into_iter()
            .map(IncomingRef::try_from)
            .collect::<Result<Vec<_>, ProtoError>>()
            .map_err(Error::from)?;
        let r = self.ready()?;
        // The cluster is recorded as holding data before this shard's
        // first write is acknowledged.
        r.gate.ensure(&r.routing).await?;
        let routing = r.routing.at(Epoch(req.epoch)).await?;
        r.routing.check_owned(
            &routing,
            atoms
                .iter()
                .map(|a| a.handle)
                .chain(incoming.iter().map(|r| r.target)),
        )?;
        r.types.ensure(&self.store, &atoms, &incoming).await?;
        let out = self.blocking(move |s| s.put(&atoms, &incoming)).await?;
        Ok(Response::new(pb::PutAtomsResponse {
            created: out.created,
            updated: out.updated,
            incoming: out.incoming,
        }))
    }

    async fn get_atoms(
        &self,
        req: Request<pb::GetAtomsRequest>,
    ) -> Result<Response<pb::GetAtomsResponse>, Status> {
        let req = req.into_inner();
        self.check_len(req.handles.len())?;
        let handles = handles_from_pb(&req.handles).map_err(Error::from)?;
        let r = self.ready()?;
        let routing = r.routing.at(Epoch(req.epoch)).await?;
        r.routing.check_owned(&routing, handles.iter().copied())?;
        let recs = self.blocking(move |s| s.get(&handles)).await?;
        Ok(Response::new(pb::GetAtomsResponse {
            atoms: recs
                .iter()
                .map(|r| pb::MaybeAtom {
                    atom: r.as_ref().map(Into::into),
                })
                .collect(),
        }))
    }

    async fn delete_atoms(
        &self,
        req: Request<pb::DeleteAtomsRequest>,
    ) -> Result<Response<pb::DeleteAtomsResponse>, Status> {
        let req = req.into_inner();
        self.check_len(req.handles.len())?;
        let handles = handles_from_pb(&req.handles).map_err(Error::from)?;
        let r = self.ready()?;
        let routing = r.routing.at(Epoch(req.epoch)).await?;
        r.routing.check_owned(&routing, handles.iter().copied())?;
        let deleted = self.blocking(move |s| s.delete(&handles)).await?;
        Ok(Response::new(pb::DeleteAtomsResponse {
            deleted: deleted.iter().map(Into::into).collect(),
        }))
    }

    async fn remove_incoming(
        &self,
        req: Request<pb::RemoveIncomingRequest>,
    ) -> Result<Response<pb::RemoveIncomingResponse>, Status> {
        let req = req.into_inner();
        self.check_len(req.entries.len())?;
        let refs = req
            .entries
            .into_iter()
            .map(IncomingRef::try_from)
            .collect::<Result<Vec<_>, ProtoError>>()
            .map_err(Error::from)?;
        let r = self.ready()?;
        let routing = r.routing.at(Epoch(req.epoch)).await?;
        r.routing
            .check_owned(&routing, refs.iter().map(|r| r.target))?;
        let removed = self.blocking(move |s| s.remove_incoming(&refs)).await?;
        Ok(Response::new(pb::RemoveIncomingResponse { removed }))
    }

    async fn get_incoming(
        &self,
        req: Request<pb::GetIncomingRequest>,
    ) -> Result<Response<pb::GetIncomingResponse>, Status> {
        let req = req.into_inner();
        let target = Handle::from_slice(&req.target).map_err(Error::from)?;
        let after = cursor(&req.after)?;
        let limit = self.page_limit(req.limit)?;
        let r = self.ready()?;
        let routing = r.routing.at(Epoch(req.epoch)).await?;
        r.routing.check_owned(&routing, [target])?;
        let (refs, more) = self
            .blocking(move |s| s.incoming(target, after, limit))
            .await?;
        Ok(Response::new(pb::GetIncomingResponse {
            entries: refs.iter().map(Into::into).collect(),
            more,
        }))
    }

    async fn scan_type(
        &self,
        req: Request<pb::ScanTypeRequest>,
    ) -> Result<Response<pb::ScanTypeResponse>, Status> {
        let req = req.into_inner();
        let ty = lockstep_proto::convert::type_from_pb(&req.r#type).map_err(Error::from)?;
        let after = cursor(&req.after)?;
        let limit = self.page_limit(req.limit)?;
        // A scan reads whatever this shard holds; the epoch still has to be
        // current so that the caller's view of "all shards" is complete.
        self.ready()?.routing.at(Epoch(req.epoch)).await?;
        let (recs, more) = self
            .blocking(move |s| s.scan_type(ty, after, limit))
            .await?;
        Ok(Response::new(pb::ScanTypeResponse {
            atoms: recs.iter().map(Into::into).collect(),
            more,
        }))
    }

    async fn start_phase(
        &self,
        req: Request<pb::StartPhaseRequest>,
    ) -> Result<Response<pb::PhaseDone>, Status> {
        Ok(Response::new(
            self.ready()?.engine.start_phase(req.into_inner()).await?,
        ))
    }

    async fn abort_tick(
        &self,
        req: Request<pb::AbortTickRequest>,
    ) -> Result<Response<pb::AbortTickResponse>, Status> {
        self.ready()?.engine.abort(req.into_inner()).await?;
        Ok(Response::new(pb::AbortTickResponse {}))
    }

    async fn deliver(
        &self,
        req: Request<pb::DeliverRequest>,
    ) -> Result<Response<pb::DeliverResponse>, Status> {
        self.ready()?.engine.deliver(req.into_inner()).await?;
        Ok(Response::new(pb::DeliverResponse {}))
    }
}
