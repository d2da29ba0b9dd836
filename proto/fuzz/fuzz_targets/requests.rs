//! Every request message the shard and coordinator services take, decoded
//! from arbitrary bytes and put through the same validation the services
//! run before touching any state: the first byte picks the message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_model::aggregate::Aggregates;
use lockstep_proto::convert::handles_from_pb;
use lockstep_proto::pb;
use lockstep_model::workload::Workload;
use lockstep_model::{FlatAtom, Handle, IncomingRef, Topology};
use prost::Message;

fn handle(b: &[u8]) {
    if !b.is_empty() {
        let _ = Handle::from_slice(b);
    }
}

fn job(spec: pb::JobSpec) {
    if let Ok(w) = Workload::try_from(&spec) {
        let _ = w.setup_phases();
        let _ = w.tick_phases(spec.ticks);
        // What converts back must be the same workload.
        let again = lockstep_proto::convert::job_spec(&w, spec.ticks);
        assert_eq!(Workload::try_from(&again).ok(), Some(w));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 12 {
        0 => {
            if let Ok(r) = pb::PutAtomsRequest::decode(body) {
                for a in r.atoms {
                    if let Ok(a) = FlatAtom::try_from(a) {
                        let _ = a.incoming_refs();
                    }
                }
                for i in r.incoming {
                    let _ = IncomingRef::try_from(i);
                }
            }
        }
        1 => {
            if let Ok(r) = pb::GetAtomsRequest::decode(body) {
                let _ = handles_from_pb(&r.handles);
            }
        }
        2 => {
            if let Ok(r) = pb::DeleteAtomsRequest::decode(body) {
                let _ = handles_from_pb(&r.handles);
            }
        }
        3 => {
            if let Ok(r) = pb::RemoveIncomingRequest::decode(body) {
                for i in r.entries {
                    let _ = IncomingRef::try_from(i);
                }
            }
        }
        4 => {
            if let Ok(r) = pb::GetIncomingRequest::decode(body) {
                handle(&r.target);
                handle(&r.after);
            }
        }
        5 => {
            if let Ok(r) = pb::ScanTypeRequest::decode(body) {
                let _ = lockstep_proto::convert::type_from_pb(&r.r#type);
                handle(&r.after);
            }
        }
        6 => {
            if let Ok(r) = pb::StartPhaseRequest::decode(body) {
                if let Some(spec) = r.job.and_then(|j| j.spec) {
                    job(spec);
                }
                let mut a: Aggregates = r.globals.unwrap_or_default().into();
                let b = a.clone();
                a.merge(b);
                let _ = pb::Aggregates::from(&a);
            }
        }
        7 => {
            if let Ok(r) = pb::DeliverRequest::decode(body) {
                for m in r.messages {
                    handle(&m.key);
                }
            }
        }
        8 => {
            if let Ok(r) = pb::AbortTickRequest::decode(body) {
                let _ = (r.job_id, r.tick, r.attempt);
            }
        }
        9 => {
            if let Ok(r) = pb::RegisterRequest::decode(body) {
                let _ = lockstep_coordinator::registry::validate_address(&r.address);
            }
        }
        10 => {
            if let Ok(spec) = pb::JobSpec::decode(body) {
                job(spec);
            }
        }
        _ => {
            // What a shard and a client take from the coordinator.
            if let Ok(t) = pb::Topology::decode(body) {
                let t: Topology = t.into();
                let _ = t.ring();
            }
        }
    }
});
