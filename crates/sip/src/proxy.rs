//! Proxy rules (RFC 3261 §16). Being written.
