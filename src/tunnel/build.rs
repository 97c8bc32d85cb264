//! The tunnel frames (`proto/grpctunnel/v1/tunnel.proto` and `google.rpc.Status`) as plain prost
//! messages — no tonic, so this sans-IO crate stays free of tokio. `rackboot-proto` generates
//! the `TunnelService` stubs over these types (`extern_path`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    let files = [
        root.join("grpctunnel/v1/tunnel.proto"),
        root.join("google/rpc/status.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
