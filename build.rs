//! Compiles proto/ into Rust with protox (pure Rust, no system protoc) and keeps the
//! descriptor set for server reflection.
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/touchpoint/v1/common.proto",
        "proto/touchpoint/v1/decisions.proto",
        "proto/touchpoint/v1/profiles.proto",
        "proto/touchpoint/v1/experiments.proto",
        "proto/touchpoint/v1/admin.proto",
        "proto/touchpoint/v1/analytics.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("touchpoint_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
