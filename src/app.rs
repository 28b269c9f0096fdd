//! The edge as a whole: built from a configuration and sockets bound outside, so that tests
//! bind port 0 and pass the sockets in (STYLE.md habit 10).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::config::{Config, ListenTransport};
use crate::core::Core;
use crate::transport;

/// Sockets bound for the configured listeners.
#[derive(Debug)]
pub struct Binds {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
}

impl Binds {
    /// Binds every listener of `config`.
    pub async fn bind(config: &Config) -> std::io::Result<Binds> {
        let mut binds = Binds {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for l in &config.sip.listen {
            let err = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{l}: {e}"));
            match l.transport {
                ListenTransport::Udp => binds.udp.push(UdpSocket::bind(l.addr).await.map_err(err)?),
                ListenTransport::Tcp => binds
                    .tcp
                    .push(TcpListener::bind(l.addr).await.map_err(err)?),
                ListenTransport::Tls => {
                    // Configured and validated, but not served yet: say so, never ignore it.
                    tracing::warn!(listener = %l, "TLS listeners are not served yet (issue 5)");
                }
            }
        }
        Ok(binds)
    }

    /// The addresses actually bound (port 0 resolved), for logs and tests.
    pub fn local_addrs(&self) -> Vec<(ListenTransport, SocketAddr)> {
        let udp = self
            .udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .map(|a| (ListenTransport::Udp, a));
        let tcp = self
            .tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .map(|a| (ListenTransport::Tcp, a));
        udp.chain(tcp).collect()
    }
}

/// Runs the edge on `binds` until `shutdown` resolves, then stops accepting and returns.
pub async fn run(config: &Config, binds: Binds, shutdown: impl Future<Output = ()>) {
    let core = Arc::new(Core::new(&config.node.name));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (transport, addr) in binds.local_addrs() {
        tracing::info!(?transport, %addr, "listening");
    }
    for socket in binds.udp {
        let mut rx = stop_rx.clone();
        let stopped = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        tasks.spawn(transport::udp::serve(
            socket,
            core.clone(),
            config.limits.max_message_bytes,
            stopped,
        ));
    }
    for listener in binds.tcp {
        tasks.spawn(transport::tcp::serve(
            listener,
            core.clone(),
            config.limits.max_message_bytes,
            stop_rx.clone(),
        ));
    }
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
}
