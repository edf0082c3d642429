//! Guest memory (placeholder until the memory module lands).
