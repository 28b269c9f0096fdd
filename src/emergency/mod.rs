//! Emergency calls made by agents: dialstrings, trunk choice, callback leases, location.

pub mod location;
