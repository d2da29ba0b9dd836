//! Generates the tonic/prost code with a vendored protoc, so that no system
//! install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the
    // environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/lockstep.proto");
    tonic_prost_build::configure().compile_protos(&["proto/lockstep.proto"], &["proto"])?;
    Ok(())
}
