//! The edge as a whole: built from a configuration and sockets bound outside, so that tests
//! bind port 0 and pass the sockets in (STYLE.md habit 10).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use sip::proxy::{ListenAddr, LocalIdentity};
use sip::transaction::Transport;

use crate::admin::{AdminState, EdgeView, Metrics, token};
use crate::agents::{LiveRoster, Roster};
use crate::config::{Config, ListenTransport};
use crate::core::{Core, CoreConfig, Net};
use crate::emergency::mailer::Mailer;
use crate::presence::PresenceBook;
use crate::registrar::Policy;
use crate::routing::{DialplanError, Dialplans};
use crate::store::{SqliteStore, Store};
use crate::transport;
use crate::transport::conn::{ConnCtx, Timeouts};
use crate::transport::connect::Connector;
use crate::transport::flows::Flows;
use crate::transport::limit::Limiter;
use crate::transport::udp::UdpOut;
use crate::web::{self, WebState};

/// Sockets bound for the configured listeners.
#[derive(Debug)]
pub struct Binds {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
    /// The web listener (`[web] listen`): softphone page and SIP over WebSocket.
    pub web: TcpListener,
    /// The admin listener (`[admin] listen`): API, health and metrics.
    pub admin: TcpListener,
    /// Demo mode (`crate::demo`): set by the CLI only when no configuration file was found;
    /// [`Binds::bind`] leaves it `None`.
    pub demo: Option<crate::demo::Demo>,
    /// The media anchor's WebRTC socket (`[media] webrtc_port` on the first SIP listener's
    /// address), unless `[media] anchor = "never"`.
    pub webrtc: Option<std::net::UdpSocket>,
}

impl Binds {
    /// Binds every listener of `config`.
    pub async fn bind(config: &Config) -> std::io::Result<Binds> {
        let web = TcpListener::bind(config.web.listen).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("web {}: {e}", config.web.listen))
        })?;
        let admin = TcpListener::bind(config.admin.listen).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("admin {}: {e}", config.admin.listen))
        })?;
        let mut binds = Binds {
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            web,
            admin,
            demo: None,
            webrtc: None,
        };
        for l in &config.sip.listen {
            let err = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{l}: {e}"));
            match l.transport {
                ListenTransport::Udp => {
                    let socket = UdpSocket::bind(l.addr).await.map_err(err)?;
                    widen_buffers(&socket, l);
                    binds.udp.push(socket);
                }
                ListenTransport::Tcp => {
                    binds.tcp.push(TcpListener::bind(l.addr).await.map_err(err)?)
                }
                ListenTransport::Tls => {
                    binds.tls.push(TcpListener::bind(l.addr).await.map_err(err)?)
                }
            }
        }
        if config.media.anchor != crate::config::Anchoring::Never
            && let Some(first) = config.sip.listen.first()
        {
            let addr = SocketAddr::new(first.addr.ip(), config.media.webrtc_port);
            let socket = std::net::UdpSocket::bind(addr)
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("media webrtc_port {addr}: {e}"))
                })?;
            widen_buffers(&socket, &format_args!("media webrtc_port {addr}"));
            binds.webrtc = Some(socket);
        }
        Ok(binds)
    }

    /// The WebRTC socket's address (port 0 resolved).
    pub fn webrtc_addr(&self) -> Option<SocketAddr> {
        self.webrtc.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The addresses actually bound (port 0 resolved), for logs and tests.
    pub fn local_addrs(&self) -> Vec<(ListenTransport, SocketAddr)> {
        let udp =
            self.udp.iter().filter_map(|s| s.local_addr().ok()).map(|a| (ListenTransport::Udp, a));
        let tcp =
            self.tcp.iter().filter_map(|s| s.local_addr().ok()).map(|a| (ListenTransport::Tcp, a));
        let tls =
            self.tls.iter().filter_map(|s| s.local_addr().ok()).map(|a| (ListenTransport::Tls, a));
        udp.chain(tcp).chain(tls).collect()
    }

    /// The admin listener's address (port 0 resolved).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr().ok()
    }

    /// The web listener's address (port 0 resolved).
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.local_addr().ok()
    }
}

/// Starts the media anchor (`[media]`) on the WebRTC socket [`Binds::bind`] bound. An edge
/// whose anchor cannot start (no IP to announce) still routes every call (emergency calls
/// above all): browsers' SDP then passes unchanged, and the error says why.
fn start_media(
    config: &Config,
    socket: Option<std::net::UdpSocket>,
    metrics: &Arc<crate::admin::metrics::Metrics>,
    core: &crate::core::CoreHandle,
) -> Option<Arc<crate::media::engine::Media>> {
    use crate::media::engine::{Media, MediaConfig};
    let socket = socket?;
    let bind = socket.local_addr().ok()?.ip();
    let mut media_config = MediaConfig::new(&config.media, bind);
    if media_config.public.is_unspecified() {
        match config.sip.public_address.as_deref().unwrap_or_default().parse() {
            Ok(ip) => media_config.public = ip,
            Err(_) => {
                tracing::error!(
                    "media anchoring off: SIP listens on {bind} and neither [media] public_ip \
                     nor [sip] public_address gives an IP to put in SDP"
                );
                return None;
            }
        }
    }
    match Media::start(media_config, socket, metrics.clone()) {
        Ok((media, mut ended)) => {
            let core = core.clone();
            tokio::spawn(async move {
                while let Some(leg) = ended.recv().await {
                    core.media_ended(leg).await;
                }
            });
            Some(media)
        }
        Err(e) => {
            tracing::error!(error = %e, "media anchoring off: the WebRTC socket failed");
            None
        }
    }
}

/// How long live transactions may take to finish once shutdown begins.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the edge could not start.
#[derive(Debug)]
pub enum StartError {
    /// The TLS certificate or key is unusable (a configuration problem: exit 64).
    Tls(transport::tls::TlsError),
    /// The admin token file is unreadable, or none could be generated.
    Token(crate::admin::token::TokenError),
    /// A dialplan file is invalid (each problem with file:line).
    Dialplan(Vec<DialplanError>),
    /// The agents seed file is invalid (each problem with file:line).
    Seed(String),
    /// The store could not be opened or read.
    Store(crate::store::StoreError),
    /// The core's runtime could not be made, or a UDP socket not moved to it.
    Runtime(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Tls(e) => write!(f, "tls: {e}"),
            StartError::Token(e) => write!(f, "admin token: {e}"),
            StartError::Seed(errors) => f.write_str(errors),
            StartError::Store(e) => write!(f, "store: {e}"),
            StartError::Runtime(e) => write!(f, "core runtime: {e}"),
            StartError::Dialplan(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for StartError {}

/// The edge, built from a configuration and sockets bound outside (tests bind port 0).
pub struct App {
    config: Config,
    binds: Binds,
    tls: Option<TlsAcceptor>,
    admin: AdminState,
    /// Agents (who may authenticate) and groups; the admin API swaps it.
    roster: Arc<LiveRoster>,
    /// Every agent's presence (routing reads it, the admin API writes it).
    presence: Arc<PresenceBook>,
    store: Arc<dyn Store>,
    dialplans: Arc<Dialplans>,
    /// The dialplan files as loaded, to notice changes from.
    dialplan_files: Fingerprint,
    /// The core's own runtime and the UDP sockets' one: see [`thread_runtimes`].
    core_rt: ThreadRuntime,
    udp_rt: ThreadRuntime,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("binds", &self.binds)
            .field("tls", &self.tls.is_some())
            .field("admin", &self.admin.ready)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Loads what the configuration names (TLS files) and prepares the edge; binds nothing.
    pub fn build(config: Config, binds: Binds) -> Result<App, StartError> {
        let tls = match &config.tls {
            Some(t) => {
                let server = transport::tls::server_config(
                    &config.resolve(&t.cert),
                    &config.resolve(&t.key),
                )
                .map_err(StartError::Tls)?;
                Some(TlsAcceptor::from(server))
            }
            None => None,
        };
        let token = match &config.admin.token_file {
            Some(path) => token::read(&config.resolve(path)).map_err(StartError::Token)?,
            None => {
                let dir = config.resolve(&config.node.data_dir);
                let (token, path) = token::generated(&dir).map_err(StartError::Token)?;
                tracing::info!(path = %path.display(), "admin token (generated)");
                token
            }
        };
        let admin = AdminState {
            token: token.into(),
            ready: Arc::new(AtomicBool::new(false)),
            metrics: Arc::new(Metrics::new()),
            edge: None,
            demo: None,
        };
        let dir = config.resolve(&config.dialplan.dir);
        let dialplan_files = fingerprint(&dir);
        let dialplans = Arc::new(Dialplans::load(&dir).map_err(StartError::Dialplan)?);
        let plan = dialplans.current();
        tracing::info!(
            dir = %dir.display(),
            files = plan.files.len(),
            trunks = plan.trunks.len(),
            routes = plan.routes.len(),
            "dialplan loaded"
        );
        // The store: agents (HA1 only), groups, and what must survive a restart.
        let data_dir = config.resolve(&config.node.data_dir);
        // Demo mode keeps its agents (guessable passwords) in a file of its own.
        let store: Arc<dyn Store> = Arc::new(
            match binds.demo {
                Some(_) => SqliteStore::open(&data_dir.join(crate::demo::STORE_FILE)),
                None => SqliteStore::open_in(&data_dir),
            }
            .map_err(StartError::Store)?,
        );
        if let Some(path) = &config.agents.seed {
            let report = crate::store::seed::import(
                store.as_ref(),
                &config.resolve(path),
                &config.sip.domain,
            )
            .map_err(|e| StartError::Seed(e.to_string()))?;
            for w in &report.warnings {
                tracing::warn!(warning = %w, "agents seed");
            }
            tracing::info!(agents = report.agents, groups = report.groups, "agents seed imported");
        }
        if binds.demo.is_some() {
            let report = crate::demo::seed(store.as_ref(), &config.sip.domain)
                .map_err(|e| StartError::Seed(e.to_string()))?;
            tracing::info!(agents = report.agents, groups = report.groups, "demo agents seeded");
        }
        let roster = Roster::load(store.as_ref()).map_err(StartError::Store)?;
        tracing::info!(agents = roster.agents.len(), groups = roster.groups.len(), "agents loaded");
        let roster = Arc::new(LiveRoster::new(roster));
        let presence = Arc::new(PresenceBook::load(store.clone()).map_err(StartError::Store)?);
        // An emergency a crash interrupted: its forced DND goes back to the state before. A
        // failure here must not keep the edge (and emergency calls) down: logged, not fatal.
        match presence.restore_interrupted() {
            Ok(0) => {}
            Ok(n) => tracing::info!(agents = n, "presence restored after an interrupted emergency"),
            Err(e) => tracing::error!(error = %e, "presence: interrupted emergencies not restored"),
        }
        let (core_rt, udp_rt, binds) = thread_runtimes(binds).map_err(StartError::Runtime)?;
        Ok(App {
            config,
            binds,
            tls,
            admin,
            roster,
            presence,
            store,
            dialplans,
            dialplan_files,
            core_rt,
            udp_rt,
        })
    }

    /// Whether the edge reports ready (`/ready`): set once it serves.
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.admin.ready.clone()
    }

    /// Runs the edge until `shutdown` resolves; then stops accepting, lets live transactions
    /// finish for up to [`SHUTDOWN_GRACE`], and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let App {
            config,
            binds,
            tls,
            mut admin,
            roster,
            presence,
            store,
            dialplans,
            dialplan_files,
            core_rt,
            udp_rt,
        } = self;
        let server: Arc<str> =
            format!("lifeline/{} ({})", env!("CARGO_PKG_VERSION"), config.node.name).into();
        let (stop_tx, stop_rx) = watch::channel(false);
        let flows = Arc::new(Flows::new());
        let (handle, inbox) = Core::channel();
        let urgent = Arc::new(crate::core::emergency::UrgentCalls::default());
        let ctx = ConnCtx {
            flows: flows.clone(),
            core: handle,
            max_message: config.limits.max_message_bytes,
            timeouts: Timeouts {
                message: config.limits.message_timeout,
                idle: config.limits.idle_timeout,
            },
            server: server.clone(),
            shutdown: stop_rx.clone(),
            metrics: admin.metrics.clone(),
            limiter: Arc::new(Limiter::with_urgent(
                config.limits.per_source_rps,
                Some(dialplans.clone()),
                urgent.clone(),
            )),
        };
        let web_addr = binds.web_addr();
        let listening = binds.local_addrs();
        for (transport, addr) in binds.local_addrs() {
            tracing::info!(transport = transport.as_str(), %addr, "listening");
        }
        let edge_udp = listening.iter().find(|(t, _)| *t == ListenTransport::Udp).map(|(_, a)| *a);
        let udp: Vec<Arc<UdpSocket>> = binds.udp.into_iter().map(Arc::new).collect();
        // Trunk host names, resolved off the core and read by it (src/transport/dns.rs); TLS
        // toward trunks verifies them (src/transport/tls_client.rs).
        // NAPTR may choose only a transport the edge has a listen address for.
        let sendable: Vec<Transport> = listening.iter().map(|(t, _)| sip_transport(*t)).collect();
        let trunk_hosts = Arc::new(transport::dns::TrunkHosts::offering(&sendable));
        let tls_client =
            transport::tls_client::TlsClient::new(dialplans.clone(), trunk_hosts.clone());
        let connector = Connector::new(ctx.clone()).with_tls(tls_client);
        // The core queues its datagrams; the UDP thread writes them (src/transport/udp.rs).
        let (udp_outs, udp_queues): (Vec<_>, Vec<_>) = udp
            .iter()
            .map(|socket| UdpOut::new(socket.local_addr().map_or(true, |a| a.is_ipv4())))
            .unzip();
        let net = Net::new(udp_outs, flows, Some(connector));
        // Its first look at the outbox is at once: mail queued before a restart goes out.
        let mailer =
            Mailer::spawn(store.clone(), &config.smtp, admin.metrics.clone(), stop_rx.clone());
        let media = start_media(&config, binds.webrtc, &admin.metrics, &ctx.core);
        let core_config = CoreConfig {
            server: server.to_string(),
            registrar: Policy {
                aliases: listening.iter().map(|(_, a)| a.ip().to_string()).collect(),
                ..Policy::new(&config.sip.domain)
            },
            metrics: admin.metrics.clone(),
            roster: roster.clone(),
            presence: presence.clone(),
            dialplans: dialplans.clone(),
            store: store.clone(),
            urgent: urgent.clone(),
            max_dialogs: usize::try_from(config.limits.max_dialogs).unwrap_or(usize::MAX),
            media,
            digest: config.sip.digest_algorithms.clone(),
            notify: crate::core::emergency::NotifyConfig {
                mailer: Some(mailer.clone()),
                smtp_from: config.smtp.from.clone(),
                node: config.node.name.clone(),
            },
            local: local_identity(&config, &listening, web_addr, tls.is_some()),
            trunk_hosts: trunk_hosts.clone(),
        };
        let core = Core::new(core_config, net, &ctx.core);

        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(transport::dns::refresh(
            trunk_hosts.clone(),
            dialplans.clone(),
            config.dns.servers.clone(),
            stop_rx.clone(),
        ));
        for listener in binds.tcp {
            tasks.spawn(transport::tcp::serve(listener, None, ctx.clone()));
        }
        for listener in binds.tls {
            // Config validation guarantees [tls] when a tls: listener exists.
            let Some(acceptor) = tls.clone() else {
                continue;
            };
            tasks.spawn(transport::tcp::serve(listener, Some(acceptor), ctx.clone()));
        }
        if let Some(addr) = web_addr {
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(url = %format!("{scheme}://{addr}/"), "web listener");
        }
        let state = WebState {
            conn: ctx.clone(),
            allowed_origins: config.web.allowed_origins.clone().into(),
            secure: tls.is_some(),
            domain: config.sip.domain.clone().into(),
        };
        let mut rx = stop_rx.clone();
        let web_stopped = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        tasks.spawn(web::serve(binds.web, tls.clone(), state, web_stopped));
        if let Ok(addr) = binds.admin.local_addr() {
            tracing::info!(url = %format!("http://{addr}/"), "admin listener");
        }
        let mut rx = stop_rx.clone();
        let admin_stopped = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        admin.edge = Some(EdgeView {
            core: ctx.core.clone(),
            dialplans: dialplans.clone(),
            roster,
            presence,
            store: store.clone(),
            realm: config.sip.domain.clone(),
            trunk_hosts,
        });
        if let (Some(demo), Some(edge)) = (binds.demo, edge_udp)
            && let Some((handle, carrier)) =
                demo.spawn(loopback_if_unspecified(edge), stop_rx.clone())
        {
            tasks.spawn(carrier);
            admin.demo = Some(handle);
        }
        let ready = admin.ready.clone();
        let admin_metrics = admin.metrics.clone();
        tasks.spawn(crate::admin::serve(binds.admin, admin, admin_stopped));
        let udp_ctx = ctx.clone();
        drop(ctx);
        tasks.spawn(purge_leases(store.clone(), stop_rx.clone()));
        tasks.spawn(reload_on_sighup(dialplans, admin_metrics, stop_rx.clone(), dialplan_files));
        // The core and the UDP sockets run on threads of their own (`thread_runtimes`).
        let udp_core = udp_ctx.core.clone();
        let udp_thread = std::thread::Builder::new().name("lifeline-udp".into()).spawn(move || {
            let Some(udp_rt) = udp_rt.take() else { return };
            udp_rt.block_on(async move {
                let mut udp_tasks = tokio::task::JoinSet::new();
                for (socket, queue) in udp.into_iter().zip(udp_queues) {
                    udp_tasks.spawn(transport::udp::serve(socket.clone(), udp_ctx.clone()));
                    udp_tasks.spawn(transport::udp::send(socket, queue, udp_core.clone()));
                }
                drop((udp_ctx, udp_core));
                // The receivers stop at shutdown; the senders once the core is gone.
                while udp_tasks.join_next().await.is_some() {}
            });
        });
        let (core_done, core_stopped) = tokio::sync::oneshot::channel::<()>();
        let core_thread =
            std::thread::Builder::new().name("lifeline-core".into()).spawn(move || {
                let Some(core_rt) = core_rt.take() else { return };
                core_rt.block_on(core.run(inbox, stop_rx, SHUTDOWN_GRACE));
                let _ = core_done.send(());
            });
        match (&core_thread, &udp_thread) {
            // Every listener is bound (Binds) and serving: ready.
            (Ok(_), Ok(_)) => ready.store(true, Ordering::Release),
            // Without its core or its UDP thread the edge does not serve SIP: never ready
            // (`/ready` says so).
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "the core's or the UDP thread could not start");
            }
        }
        shutdown.await;
        tracing::info!("shutting down");
        ready.store(false, Ordering::Release);
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        if let Ok(thread) = core_thread {
            let _ = core_stopped.await;
            let _ = thread.join();
        }
        if let Ok(thread) = udp_thread {
            // Its receivers stopped with the signal and its senders with the core: at once.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        mailer.stopped().await;
    }
}

/// The core's runtime, and the UDP sockets' runtime with the sockets moved to its reactor.
///
/// Each runs alone on a thread of its own. The core's holds only the core (its queue and its
/// timers). The UDP thread reads and parses datagrams and writes the core's, batched
/// (`recvmmsg`, `sendmmsg`: [`transport::udp`]); under load the two threads carry about half
/// the SIP work each, where the kernel's send and receive paths are the larger part. TCP, TLS,
/// WebSocket, the admin API and the mailer stay on the main runtime; the media engine has its
/// own thread.
fn thread_runtimes(mut binds: Binds) -> std::io::Result<(ThreadRuntime, ThreadRuntime, Binds)> {
    let core = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let udp_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let udp = std::mem::take(&mut binds.udp);
    {
        let _in_udp = udp_rt.enter();
        for socket in udp {
            binds.udp.push(UdpSocket::from_std(socket.into_std()?)?);
        }
    }
    Ok((ThreadRuntime(Some(core)), ThreadRuntime(Some(udp_rt)), binds))
}

/// A runtime until its thread takes it. Dropped unused (an `App` built and not run, a thread
/// that could not start), it shuts down without blocking: a runtime must not be dropped where
/// blocking is not allowed, as in the main runtime's tasks.
#[derive(Debug)]
struct ThreadRuntime(Option<tokio::runtime::Runtime>);

impl ThreadRuntime {
    fn take(mut self) -> Option<tokio::runtime::Runtime> {
        self.0.take()
    }
}

impl Drop for ThreadRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Where a local peer reaches a listener bound on an unspecified address (`0.0.0.0:5060`).
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// How often callback leases whose quarantine ended are forgotten.
const LEASE_PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Forgets callback leases whose quarantine ended (DESIGN.md, privacy: the lease holds only
/// what routing needs, and only as long as it needs it), every [`LEASE_PURGE_EVERY`].
async fn purge_leases(store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
    loop {
        let s = store.clone();
        let now = crate::core::emergency::unix_now();
        match tokio::task::spawn_blocking(move || s.purge_expired(now)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(leases = n, "expired callback leases forgotten"),
            Ok(Err(e)) => tracing::warn!(error = %e, "callback leases not purged"),
            Err(e) => tracing::warn!(error = %e, "callback lease purge failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(LEASE_PURGE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The edge as the proxy rules see it: every SIP listener (and the web listener as WS or WSS),
/// under `[sip] public_address` when set, and `[sip] domain`.
/// The SIP transport of a listen address.
fn sip_transport(t: ListenTransport) -> Transport {
    match t {
        ListenTransport::Udp => Transport::Udp,
        ListenTransport::Tcp => Transport::Tcp,
        ListenTransport::Tls => Transport::Tls,
    }
}

fn local_identity(
    config: &Config,
    listening: &[(ListenTransport, SocketAddr)],
    web: Option<SocketAddr>,
    secure_web: bool,
) -> LocalIdentity {
    let public = config.sip.public_address.as_deref();
    let mut addrs = Vec::new();
    let mut push = |transport, addr: SocketAddr| {
        if addr.ip().is_unspecified() && public.is_none() {
            tracing::warn!(%addr, "listening on an unspecified address without [sip] public_address: Via and Record-Route will name it");
        }
        let host = public.map_or_else(|| addr.ip().to_string(), str::to_owned);
        match ListenAddr::new(transport, &host, addr.port()) {
            Ok(a) => addrs.push(a),
            Err(e) => tracing::warn!(%host, error = %e, "not a usable listen address"),
        }
    };
    for (t, addr) in listening {
        push(sip_transport(*t), *addr);
    }
    if let Some(addr) = web {
        push(if secure_web { Transport::Wss } else { Transport::Ws }, addr);
    }
    let mut local = LocalIdentity::new(addrs);
    // The listening addresses count as served domains too: agents are reached as
    // `sip:alice@<edge IP>` as well as `sip:alice@<domain>`, whatever port the caller wrote.
    for (_, addr) in listening {
        if let Ok(l) = local.clone().with_alias(&addr.ip().to_string()) {
            local = l;
        }
        if let Ok(l) = local.clone().with_domain(&addr.ip().to_string()) {
            local = l;
        }
    }
    match local.clone().with_domain(&config.sip.domain) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(domain = %config.sip.domain, error = %e, "[sip] domain is not a host name");
            local
        }
    }
}

/// How often the dialplan directory is checked for changed files.
pub const DIALPLAN_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads the dialplan on SIGHUP (`systemctl reload`) and when a file in its directory
/// changes (checked every [`DIALPLAN_POLL`]); a bad file keeps the running table.
async fn reload_on_sighup(
    dialplans: Arc<Dialplans>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    mut seen: Fingerprint,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: dialplan reload on file change and API only");
            None
        }
    };
    let mut tick = tokio::time::interval(DIALPLAN_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = hangup => {
                // Failures are logged and counted inside; nothing else to do here.
                let _ = reload(&dialplans, &metrics);
                seen = fingerprint(dialplans.dir());
            }
            _ = tick.tick() => {
                let now = fingerprint(dialplans.dir());
                if now != seen {
                    seen = now;
                    tracing::info!("dialplan files changed");
                    let _ = reload(&dialplans, &metrics);
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// The dialplan files with their size and modification time: what a change shows in.
type Fingerprint = Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)>;

/// Reads the [`Fingerprint`] of a dialplan directory.
fn fingerprint(dir: &std::path::Path) -> Fingerprint {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    Some((e.path(), m.len(), m.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Reloads the dialplan and reports the outcome in the log and the metrics.
pub fn reload(dialplans: &Dialplans, metrics: &Metrics) -> Result<(), Vec<DialplanError>> {
    match dialplans.reload() {
        Ok(plan) => {
            metrics.dialplan_reloads_ok.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                trunks = plan.trunks.len(),
                routes = plan.routes.len(),
                "dialplan reloaded"
            );
            Ok(())
        }
        Err(errors) => {
            metrics.dialplan_reloads_failed.fetch_add(1, Ordering::Relaxed);
            for e in &errors {
                tracing::error!(error = %e, "dialplan reload refused; the running table stays");
            }
            Err(errors)
        }
    }
}

/// UDP socket buffers for bursts: the kernel default (about 200 KB) overflows when the receive
/// task is descheduled for a few milliseconds at thousands of messages per second, and every
/// drop costs a retransmission. The kernel caps the request at `net.core.rmem_max`.
pub const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Widens the buffers of a SIP listener's socket or of the media anchor's WebRTC socket (every
/// browser leg's packets, 50 per second per call each way, meet in it).
fn widen_buffers(socket: &impl std::os::fd::AsFd, socket_of: &dyn std::fmt::Display) {
    let s = socket2::SockRef::from(socket);
    if let Err(e) = s
        .set_recv_buffer_size(UDP_BUFFER_BYTES)
        .and_then(|()| s.set_send_buffer_size(UDP_BUFFER_BYTES))
    {
        tracing::warn!(socket = %socket_of, error = %e, "cannot widen the UDP socket buffers");
    }
}
