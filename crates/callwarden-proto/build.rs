//! Compiles `proto/callwarden/v1/*.proto` in Rust (protox), so no system `protoc` is needed, and
//! keeps the descriptor set for gRPC reflection.
use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build does not emit this itself.
    println!("cargo:rerun-if-changed=../../proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(["callwarden/v1/callwarden.proto"], ["../../proto"])?;
    fs::write(
        out_dir.join("callwarden_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
