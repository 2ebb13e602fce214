//! AES-256-GCM's fixed sizes, which every backend and the format share.

/// AES-256-GCM tag length.
pub const TAG_LEN: usize = 16;
/// AES-256-GCM nonce length.
pub const NONCE_LEN: usize = 12;
