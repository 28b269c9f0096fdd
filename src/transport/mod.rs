//! Transports: UDP, TCP and TLS listeners, connections the edge opens (TCP, and TLS toward
//! trunks: [`tls_client`]), the flow table, and trunk host names resolved off the core
//! ([`dns`]).
//! (WebSocket connections arrive through the web listener, [`crate::web`].)
//!
//! A transport turns bytes into whole messages (a datagram on UDP; [`sip::framing::check`] on
//! streams), parses them on its own task, and hands them to the core
//! ([`crate::core::CoreHandle`]). Answers go back over the flow a request came on: the source
//! ip:port on UDP, the connection otherwise (DESIGN.md, "Decisions").

pub mod conn;
pub mod connect;
pub mod dns;
pub mod flows;
pub mod limit;
pub mod tcp;
pub mod tls;
pub mod tls_client;
pub mod udp;
