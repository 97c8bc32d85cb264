//! Compiles every `.proto` file under `<repo>/proto/` with protox (pure Rust: no system `protoc`)
//! and generates prost messages plus tonic client and server stubs.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "proto") {
            out.push(p);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.join("../../proto");
    let root = root
        .canonicalize()
        .map_err(|e| format!("{}: {e}", root.display()))?;
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect(&root, &mut files)?;
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        // The RPC is named `Connect`, which would clash with the generated
        // `AgentLinkClient::connect(endpoint)`: build clients with `AgentLinkClient::new(channel)`.
        .build_transport(false)
        // The tunnel frames live in the sans-IO `rackboot-tunnel` crate; only the service
        // stubs are generated here.
        .extern_path(".grpctunnel.v1", "::rackboot_tunnel::grpctunnel::v1")
        .extern_path(".google.rpc", "::rackboot_tunnel::google::rpc")
        .compile_fds(fds)?;
    Ok(())
}
