//! Test-only support (filled in by the transaction work).
