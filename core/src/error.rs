//! The core crate's error type: one variant per operation that can fail, each naming where.

use crate::manifest::{Origin, ResourceKey};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest source is not UTF-8 (Kubernetes manifests must be).
    #[error("{source_name}: line {line}: not valid UTF-8 (byte offset {offset})")]
    DecodeUtf8 {
        source_name: String,
        line: usize,
        offset: usize,
    },

    /// A document is not valid YAML or JSON.
    #[error("{origin}: {message}")]
    ParseManifest { origin: Origin, message: String },

    /// A document parses but is not a Kubernetes object we can identify.
    #[error("{origin}: {message}")]
    InvalidManifest { origin: Origin, message: String },

    /// Two documents in the same set (desired or live) name the same object.
    #[error("{} is defined twice: at {} and at {}", .0.0, .0.1, .0.2)]
    DuplicateResource(Box<(ResourceKey, Origin, Origin)>),

    /// A policy file is not valid: names the file, the key path and the problem.
    #[error("{file}: {key_path}: {message}")]
    LoadPolicy {
        file: String,
        key_path: String,
        message: String,
    },

    /// A field path given on the command line or in a rule does not parse.
    #[error("invalid field path {path:?}: {message}")]
    ParseFieldPath { path: String, message: String },
}

impl Error {
    /// Two documents name the same object.
    pub fn duplicate(key: &ResourceKey, first: &Origin, second: &Origin) -> Error {
        Error::DuplicateResource(Box::new((key.clone(), first.clone(), second.clone())))
    }

    /// A short, stable label for metrics and Kubernetes Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::DecodeUtf8 { .. } => "decode_utf8",
            Error::ParseManifest { .. } => "parse_manifest",
            Error::InvalidManifest { .. } => "invalid_manifest",
            Error::DuplicateResource(_) => "duplicate_resource",
            Error::LoadPolicy { .. } => "load_policy",
            Error::ParseFieldPath { .. } => "parse_field_path",
        }
    }
}
