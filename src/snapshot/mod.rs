//! Snapshot files: a [`Window`](crate::Window) and its claim cutoffs as a byte-specified,
//! checksummed, optionally signed file that verifiers check in place (`docs/FORMAT.md`).
//!
//! ```
//! use revbloom::snapshot::{self, OpenOptions, SnapshotMeta, SnapshotView};
//! use revbloom::{CutoffSet, Verdict, Window, WindowConfig};
//!
//! let now = 1_767_225_600;
//! let mut window = Window::new(WindowConfig::default(), now)?;
//! window.insert("token-42", Some(now + 600));
//! window.fit_to_entries(0.0);
//!
//! let bytes = snapshot::encode_to_vec(&window, &CutoffSet::new(), &SnapshotMeta::first(now), None)?;
//! let view = SnapshotView::open(bytes, &OpenOptions::new())?;
//! assert_eq!(view.check("token-42", Some(now + 600)), Verdict::MaybeRevoked);
//! assert_eq!(view.check("token-43", Some(now + 600)), Verdict::Clear);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bytes;
#[cfg(test)]
mod check_tests;
mod error;
#[cfg(test)]
mod ext_tests;
pub(crate) mod format;
mod keys;
mod options;
mod read;
mod seal;
mod write;

pub use bytes::AlignedBytes;
pub use error::{EncodeError, MetaError, SnapshotError};
pub use format::{FORMAT_VERSION, MAGIC};
pub use keys::{read_signing_key, read_verifying_key, KeyFileError};
pub use options::{OpenOptions, SignatureStatus};
pub use read::SnapshotView;
pub use seal::{
    is_sealed, seal, sealed_key_id, unseal, unseal_prefix, SealError, SealKey, SealKeyError,
    SealKeyId, SEAL_HEADER_BYTES, SEAL_MAGIC, SEAL_TAG_BYTES, SEAL_VERSION,
};
pub use write::{encode, encode_to_vec, layout_id};

/// Which generation a snapshot is, and when it was made: the header fields that do not come
/// from the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Generation number, at least 1, increasing with every publication.
    pub generation: u64,
    /// The generation this one follows (0 for the first); less than `generation`.
    pub parent: u64,
    /// When it was produced, unix seconds: verifiers judge staleness from it.
    pub created_at: u64,
    /// Revocations made up to this unix time are included.
    pub coverage: u64,
}

impl SnapshotMeta {
    /// Generation 1 with no parent, created and covering up to `now`.
    pub fn first(now: u64) -> Self {
        Self {
            generation: 1,
            parent: 0,
            created_at: now,
            coverage: now,
        }
    }

    /// The generation after this one, created and covering up to `now`.
    pub fn next(&self, now: u64) -> Self {
        Self {
            generation: self.generation.saturating_add(1),
            parent: self.generation,
            created_at: now,
            coverage: now,
        }
    }

    /// Whether the generation numbers are valid: `generation >= 1`, `parent < generation`.
    pub fn validate(&self) -> Result<(), MetaError> {
        if self.generation == 0 {
            return Err(MetaError::GenerationZero);
        }
        if self.parent >= self.generation {
            return Err(MetaError::ParentNotBefore {
                generation: self.generation,
                parent: self.parent,
            });
        }
        Ok(())
    }
}
