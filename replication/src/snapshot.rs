//! The snapshot format: the core's image plus the cluster's state.
//!
//! ```text
//! [magic "GLRSNAP\x01"][body length u64 LE][CRC-32 of the length and the body, u32 LE][body]
//! body = postcard { meta: openraft SnapshotMeta, cluster: ClusterState, image: bytes }
//! ```
//!
//! `image` is the core's own image (`graph_lifecycle::Image::encode`,
//! checksummed itself). A snapshot is checked whole before it is used
//! ([`decode`]): the frame's checksum, the body, the image's checksum and
//! format, the rules a restore checks (on a scratch engine of the node's
//! configuration), and that the cluster state assigns exactly the image's
//! graphs. openraft stops a node on any storage error, so a damaged or
//! hostile snapshot must be refused before it gets there.

use graph_lifecycle::{Config, Engine, Image};
use serde::{Deserialize, Serialize};

use crate::cluster::ClusterState;
use crate::types::SnapshotMeta;

const MAGIC: &[u8; 8] = b"GLRSNAP\x01";
const HEADER_LEN: usize = 8 + 8 + 4;

/// Why bytes are not a usable snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The frame is wrong: magic, length or checksum.
    #[error("the snapshot is damaged: {0}")]
    Damaged(&'static str),
    /// The body does not decode.
    #[error("the snapshot does not decode: {0}")]
    Malformed(String),
    /// The image inside is damaged or breaks a rule of the core.
    #[error("the snapshot's image cannot be restored: {0}")]
    Image(String),
    /// The cluster state does not fit the image.
    #[error("the snapshot's cluster state does not fit its image: {0}")]
    Cluster(String),
}

#[derive(Serialize)]
struct BodyRef<'a> {
    meta: &'a SnapshotMeta,
    cluster: &'a ClusterState,
    image: &'a [u8],
}

#[derive(Deserialize)]
struct Body {
    meta: SnapshotMeta,
    cluster: ClusterState,
    image: Vec<u8>,
}

/// A snapshot, decoded and checked.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// openraft's metadata: the last log id and membership it holds.
    pub meta: SnapshotMeta,
    /// The cluster's state.
    pub cluster: ClusterState,
    /// The core's image.
    pub image: Image,
}

/// Encodes a snapshot.
///
/// # Errors
///
/// The encoder's, which writing into memory does not have in practice.
pub fn encode(
    meta: &SnapshotMeta,
    cluster: &ClusterState,
    image: &[u8],
) -> Result<Vec<u8>, postcard::Error> {
    let body = postcard::to_allocvec(&BodyRef {
        meta,
        cluster,
        image,
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&(body.len() as u64).to_le_bytes());
    h.update(&body);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes and checks a snapshot for an engine configured with `config`.
/// Any bytes give a snapshot or an error, never a panic.
///
/// # Errors
///
/// [`SnapshotError`] saying what is wrong.
pub fn decode(bytes: &[u8], config: &Config) -> Result<Decoded, SnapshotError> {
    let Some(head) = bytes.get(..HEADER_LEN) else {
        return Err(SnapshotError::Damaged("shorter than its header"));
    };
    if &head[..8] != MAGIC {
        return Err(SnapshotError::Damaged("not a snapshot of this format"));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[8..16]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&head[16..20]);
    let body = &bytes[HEADER_LEN..];
    if body.len() as u64 != u64::from_le_bytes(len) {
        return Err(SnapshotError::Damaged(
            "its length does not match its header",
        ));
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(body);
    if h.finalize() != u32::from_le_bytes(crc) {
        return Err(SnapshotError::Damaged("its checksum does not match"));
    }
    let b: Body =
        postcard::from_bytes(body).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
    let image = Image::decode(&b.image).map_err(|e| SnapshotError::Image(e.to_string()))?;
    let (scratch, _jobs) = Engine::builder()
        .config(config.clone())
        .restore(&image)
        .map_err(|e| SnapshotError::Image(e.to_string()))?;
    let mut cluster = b.cluster;
    cluster
        .matches(&scratch.keys())
        .map_err(SnapshotError::Cluster)?;
    cluster.rebuild();
    Ok(Decoded {
        meta: b.meta,
        cluster,
        image,
    })
}
