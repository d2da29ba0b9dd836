//! Lockstep's wire format: the generated gRPC code, every proto<->domain
//! conversion, and what travels with a call (the token, TLS, typed errors
//! inside a `Status`). The domain types themselves live in
//! `lockstep-model`.
//!
//! # Layout
//! - [`pb`]: the generated tonic/prost code. This is the only place it is
//!   included.
//! - [`convert`]: every proto<->domain conversion, one file per type.
//! - [`auth`]: the cluster token, added to calls and checked by servers.
//! - [`channel`]: the one channel builder every gRPC client uses.
//! - [`retry`]: the one retry policy (exponential backoff with jitter).
//! - [`tls`]: certificates, and the endpoints and servers that use them.
//! - [`wire_error`]: how typed errors (wrong epoch, not owner) travel inside a
//!   gRPC `Status`, shared by servers and clients.
#![forbid(unsafe_code)]

pub mod auth;
pub mod channel;
pub mod convert;
pub mod retry;
pub mod tls;
pub mod wire_error;

mod error;

pub use error::ProtoError;

/// Generated protobuf and gRPC code.
#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("lockstep.v1");

    /// The encoded descriptors of every message and service above.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("lockstep_descriptor");
}

/// Adds gRPC server reflection, v1 and the v1alpha that Python's
/// reflection client and older `grpcurl`s still speak, for the Lockstep
/// services and the health service. It serves the schema only, never data,
/// so it needs no token.
pub fn add_reflection<L>(
    router: tonic::transport::server::Router<L>,
) -> Result<tonic::transport::server::Router<L>, ProtoError> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let bad = |e: tonic_reflection::server::Error| {
        ProtoError::BadParam(format!("reflection descriptors: {e}"))
    };
    Ok(router
        .add_service(builder().build_v1().map_err(bad)?)
        .add_service(builder().build_v1alpha().map_err(bad)?))
}

/// The full path (`/lockstep.v1.Shard/Put`) of every gRPC method a Lockstep
/// server serves: its own services', the health service's and
/// reflection's. Metrics label calls by these paths and no others.
pub fn method_paths() -> Result<Vec<String>, ProtoError> {
    use prost::Message;
    let mut paths = vec![
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo".to_string(),
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo".to_string(),
    ];
    for encoded in [
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(encoded)
            .map_err(|e| ProtoError::BadParam(format!("service descriptors: {e}")))?;
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    #[test]
    fn method_paths_name_every_service() {
        let paths = super::method_paths().unwrap();
        for p in [
            "/lockstep.v1.Shard/PutAtoms",
            "/lockstep.v1.Coordinator/Register",
            "/grpc.health.v1.Health/Check",
        ] {
            assert!(paths.iter().any(|x| x == p), "{p} missing from {paths:?}");
        }
    }
}
