//! The state file: a snapshot of the persistent namespaces (everything but
//! `infra-provider-ephemeral`), rewritten atomically (temp file + rename) after each change.
//!
//! Format: JSON `{"format":1,"resources":["<base64 of a protobuf cosi.resource.Resource>",…]}`;
//! resources keep their versions, owners and timestamps, so a restore is exact.

use std::path::Path;

use base64::Engine as _;
use prost::Message as _;
use rackboot_proto::cosi::resource::Resource;

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("state file {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {0} is not a snapshot")]
    Format(String),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    format: u32,
    resources: Vec<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `resources` to `path` atomically.
pub fn save(path: &Path, resources: &[Resource]) -> Result<(), PersistError> {
    let snap = Snapshot {
        format: 1,
        resources: resources
            .iter()
            .map(|r| base64::engine::general_purpose::STANDARD.encode(r.encode_to_vec()))
            .collect(),
    };
    let text = serde_json::to_vec_pretty(&snap)
        .map_err(|_| PersistError::Format(path.display().to_string()))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Reads the snapshot at `path`.
pub fn load(path: &Path) -> Result<Vec<Resource>, PersistError> {
    let text = std::fs::read(path).map_err(io(path))?;
    let bad = || PersistError::Format(path.display().to_string());
    let snap: Snapshot = serde_json::from_slice(&text).map_err(|_| bad())?;
    if snap.format != 1 {
        return Err(bad());
    }
    snap.resources
        .iter()
        .map(|b| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| bad())?;
            Resource::decode(bytes.as_slice()).map_err(|_| bad())
        })
        .collect()
}
