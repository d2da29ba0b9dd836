//! Generates the tonic/prost code with a vendored protoc, so that no system
//! install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the
    // environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/lockstep.proto");
    // The descriptor set is what the servers' gRPC reflection serves.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("lockstep_descriptor.bin"))
        .compile_protos(&["proto/lockstep.proto"], &["proto"])?;
    Ok(())
}
