//! The delivery worker: one tokio task that sends the store's outbox through the SMTP relay
//! (`[smtp] url`) with lettre, deletes each row once the relay took it, and retries the rest.
//!
//! # Contract
//!
//! - **Durable, at least once.** The outbox is the only state: rows queued before a crash or
//!   restart are sent by the next worker. A relay that took a message whose row delete was
//!   lost gets it again; the `Message-ID` is the same on every attempt
//!   (`<lifeline-notify-{id}-{created_at}@{sender's domain}>`), so mail clients can fold
//!   duplicates.
//! - **When.** At once after [`MailerHandle::wake`] (called right after an enqueue), otherwise
//!   when the earliest row falls due, checked at least every [`Tuning::poll`].
//! - **Retries** (times in whole seconds, as the store keeps them): a failure the relay may get
//!   over (connection refused, timeout, TLS, an SMTP 4xx) is retried after 5 s, doubling per
//!   failed attempt up to 10 min. A permanent one (an SMTP 5xx, or a message the relay cannot be
//!   given at all) is retried every 30 min: it usually needs an operator to fix the relay, the
//!   sender's permission or a contact's address, and then the mail must still go out; it is
//!   never dropped. One row per contact ([`super::notify`]) keeps a refused address from
//!   holding back the others.
//! - **Sender.** `From` is the agent's mailbox ([`super::notify::sender`]); when that is not
//!   `[smtp] from`, the mail also carries `Sender: [smtp] from`, which lettre makes the
//!   envelope's `MAIL FROM` as well: the relay sees its own site's sender, bounces come back
//!   to it, and the contacts still see who called (RFC 5322 §3.6.2).
//! - **Redaction.** Logs and the stored `last_error` carry the outbox id, counts and the error
//!   class (`connect`, `timeout`, `tls`, `smtp 451`, `smtp 550`, `client`, `message`,
//!   `config`), never an address, a subject or the relay's reply text (which often quotes the
//!   address).
//! - **Metrics** ([`Metrics`]): `lifeline_mail_sent_total`, `lifeline_mail_failures_total`
//!   (failed attempts), `lifeline_mail_queued` (undelivered rows).
//!
//! TLS follows lettre's URL forms: `smtp://host:port` (plain), `smtp://host:587?tls=required`
//! (STARTTLS), `smtps://host:465` (TLS), by rustls on aws-lc-rs with the system's roots;
//! credentials in the URL (`smtp://user:pass@host`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};

use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::{Notify, watch};

use crate::admin::Metrics;
use crate::config;
use crate::core::emergency::unix_now;
use crate::store::{OutboxEntry, OutboxMessage, Store, StoreError};

/// The worker's timings; [`Tuning::default`] is what the edge runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// The longest wait between two looks at the outbox.
    pub poll: Duration,
    /// The wait after the first failed attempt; doubled per further failure.
    pub first_retry: Duration,
    /// The longest wait after a failure the relay may get over.
    pub max_retry: Duration,
    /// The wait after a permanent failure (SMTP 5xx).
    pub permanent_retry: Duration,
    /// The limit on one SMTP exchange (connect, TLS, every command).
    pub timeout: Duration,
    /// Rows taken from the store per look.
    pub batch: u32,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            poll: Duration::from_secs(5),
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(600),
            permanent_retry: Duration::from_secs(1800),
            timeout: Duration::from_secs(30),
            batch: 16,
        }
    }
}

impl Tuning {
    /// How long to wait after a failed attempt, given the failures before it.
    pub fn retry_after(&self, failure: Failure, failures_before: u32) -> Duration {
        if failure.is_permanent() {
            return self.permanent_retry;
        }
        let factor = 1u32.checked_shl(failures_before.min(31)).unwrap_or(u32::MAX);
        self.first_retry.saturating_mul(factor).min(self.max_retry)
    }
}

/// Why an attempt failed, as logged and stored: no address, no reply text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The relay could not be reached or dropped the connection.
    Connect,
    Timeout,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// An SMTP 4xx reply: try again later.
    Transient(u16),
    /// An SMTP 5xx reply: the relay refuses (sender, recipient, authentication, size).
    Permanent(u16),
    /// lettre refused before sending (e.g. 8-bit text to a relay without 8BITMIME).
    Client,
    /// The stored message cannot be made into a mail (an address that does not parse).
    Message,
    /// `[smtp] url` is unusable; nothing can be sent until it is fixed.
    Config,
}

impl Failure {
    fn of(e: &lettre::transport::smtp::Error) -> Failure {
        let code = || e.status().and_then(|c| c.to_string().parse().ok()).unwrap_or(0);
        if e.is_permanent() {
            Failure::Permanent(code())
        } else if e.is_transient() {
            Failure::Transient(code())
        } else if e.is_timeout() {
            Failure::Timeout
        } else if e.is_tls() {
            Failure::Tls
        } else if e.is_client() {
            Failure::Client
        } else {
            Failure::Connect
        }
    }

    /// Retried at the slow, fixed pace ([`Tuning::permanent_retry`]).
    pub fn is_permanent(self) -> bool {
        matches!(self, Failure::Permanent(_) | Failure::Client | Failure::Message | Failure::Config)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect => f.write_str("connect"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Tls => f.write_str("tls"),
            Failure::Transient(code) | Failure::Permanent(code) => write!(f, "smtp {code}"),
            Failure::Client => f.write_str("client"),
            Failure::Message => f.write_str("message"),
            Failure::Config => f.write_str("config"),
        }
    }
}

/// The transport for `[smtp] url` (lettre's URL forms; see the module docs).
pub fn transport(
    url: &str,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    Ok(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.timeout(Some(timeout)).build())
}

/// The mail for an outbox row: text, or text and HTML as `multipart/alternative`; dated when it
/// was queued, with a `Message-ID` that is the same on every attempt; `relay` (`[smtp] from`)
/// as `Sender` and envelope sender when it is not the `From`.
pub fn mail(entry: &OutboxEntry, relay: Option<&Mailbox>) -> Result<Message, Failure> {
    let m: &OutboxMessage = &entry.message;
    let from: Mailbox = m.from.parse().map_err(|_| Failure::Message)?;
    let domain = from.email.domain().to_owned();
    let sender = relay.filter(|r| r.email != from.email).cloned();
    let date =
        u64::try_from(entry.created_at).map_or(UNIX_EPOCH, |s| UNIX_EPOCH + Duration::from_secs(s));
    let mut builder =
        Message::builder().from(from).subject(m.subject.as_str()).date(date).message_id(Some(
            format!("<lifeline-notify-{}-{}@{domain}>", entry.id.0, entry.created_at),
        ));
    if let Some(sender) = sender {
        builder = builder.sender(sender);
    }
    for to in &m.to {
        builder = builder.to(to.as_str().parse().map_err(|_| Failure::Message)?);
    }
    let built = match &m.html {
        Some(html) => {
            builder.multipart(MultiPart::alternative_plain_html(m.text.clone(), html.clone()))
        }
        None => builder.singlepart(SinglePart::plain(m.text.clone())),
    };
    built.map_err(|_| Failure::Message)
}

/// The delivery worker; see the module docs.
pub struct Mailer {
    store: Arc<dyn Store>,
    /// `Err` when `[smtp] url` is unusable: every attempt then fails as [`Failure::Config`].
    transport: Result<AsyncSmtpTransport<Tokio1Executor>, String>,
    /// `[smtp] from`, the `Sender` of mail from an agent's mailbox.
    relay_sender: Option<Mailbox>,
    metrics: Arc<Metrics>,
    tuning: Tuning,
    wake: Arc<Notify>,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The transport holds the relay's credentials: not shown.
        f.debug_struct("Mailer").field("tuning", &self.tuning).finish_non_exhaustive()
    }
}

/// Wakes the worker and tells when it stopped. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MailerHandle {
    wake: Arc<Notify>,
    /// Closed when the worker's task ends.
    done: watch::Receiver<()>,
}

impl MailerHandle {
    /// Looks at the outbox now (call it right after an enqueue).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Returns once the worker has stopped (after `stop` turned true, or the task ended).
    pub async fn stopped(&self) {
        let mut done = self.done.clone();
        while done.changed().await.is_ok() {}
    }
}

impl Mailer {
    /// Starts the worker on the current tokio runtime with [`Tuning::default`]. It runs until
    /// `stop` turns true (or its sender is dropped); an attempt in flight is then abandoned
    /// and its row stays queued.
    pub fn spawn(
        store: Arc<dyn Store>,
        smtp: &config::Smtp,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> MailerHandle {
        Mailer::spawn_tuned(store, smtp, metrics, stop, Tuning::default())
    }

    /// [`Mailer::spawn`] with other timings (tests).
    pub fn spawn_tuned(
        store: Arc<dyn Store>,
        smtp: &config::Smtp,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
        tuning: Tuning,
    ) -> MailerHandle {
        let transport = transport(&smtp.url, tuning.timeout).map_err(|e| {
            // lettre's error names the scheme or parameter at fault, not the credentials.
            tracing::error!(error = %e, "[smtp] url is unusable: notifications stay queued");
            e.to_string()
        });
        let relay_sender = match smtp.from.parse::<Mailbox>() {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "[smtp] from is not a mailbox: mail goes without Sender");
                None
            }
        };
        let wake = Arc::new(Notify::new());
        let (done_tx, done) = watch::channel(());
        let mailer = Mailer { store, transport, relay_sender, metrics, tuning, wake: wake.clone() };
        tokio::spawn(async move {
            mailer.run(stop).await;
            drop(done_tx);
        });
        MailerHandle { wake, done }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            let wait = tokio::select! {
                wait = self.pass() => wait,
                _ = stop.changed() => return,
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                changed = stop.changed() => if changed.is_err() { return },
            }
        }
    }

    /// One look at the outbox: sends what is due; returns how long to wait before the next.
    async fn pass(&self) -> Duration {
        let now = unix_now();
        let batch = self.tuning.batch;
        let due = match self.blocking(move |s| s.due(now, batch)).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "mailer: cannot read the outbox");
                return self.tuning.poll;
            }
        };
        let full = due.len() >= batch as usize;
        for entry in due {
            self.deliver(entry).await;
        }
        if full {
            return Duration::ZERO;
        }
        match self.blocking(|s| s.outbox_status()).await {
            Ok(status) => {
                let queued = i64::try_from(status.pending()).unwrap_or(i64::MAX);
                self.metrics.mail_queued.store(queued, Ordering::Relaxed);
                let next = status.rows.iter().map(|r| r.next_attempt_at).min();
                let until = next.map_or(self.tuning.poll, |at| {
                    Duration::from_secs(u64::try_from(at - unix_now()).unwrap_or(0))
                });
                // At least a second: a row that stays due (its delete failed) must not spin.
                until.clamp(Duration::from_secs(1), self.tuning.poll)
            }
            Err(e) => {
                tracing::error!(error = %e, "mailer: cannot read the outbox status");
                self.tuning.poll
            }
        }
    }

    /// One attempt at one row.
    async fn deliver(&self, entry: OutboxEntry) {
        let id = entry.id;
        let recipients = entry.message.to.len();
        let sent = match (&self.transport, mail(&entry, self.relay_sender.as_ref())) {
            (Err(_), _) => Err(Failure::Config),
            (Ok(_), Err(f)) => Err(f),
            (Ok(t), Ok(m)) => t.send(m).await.map(drop).map_err(|e| Failure::of(&e)),
        };
        match sent {
            Ok(()) => {
                self.metrics.mail_sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    id = id.0,
                    recipients,
                    attempts = entry.attempts + 1,
                    "notification delivered"
                );
                if let Err(e) = self.blocking(move |s| s.delete_outbox(id)).await {
                    // It will be sent again: at least once.
                    tracing::error!(id = id.0, error = %e, "mailer: delivered row not deleted");
                }
            }
            Err(failure) => {
                self.metrics.mail_failed.fetch_add(1, Ordering::Relaxed);
                let wait = self.tuning.retry_after(failure, entry.attempts);
                let next =
                    unix_now().saturating_add(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX));
                tracing::warn!(
                    id = id.0,
                    recipients,
                    attempts = entry.attempts + 1,
                    error = %failure,
                    retry_in_s = wait.as_secs(),
                    "notification not delivered"
                );
                let error = failure.to_string();
                if let Err(e) = self.blocking(move |s| s.mark_failed(id, &error, next)).await {
                    tracing::error!(id = id.0, error = %e, "mailer: failed attempt not recorded");
                }
            }
        }
    }

    /// Runs a store call on the blocking pool (the store's thread model).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .unwrap_or_else(|e| Err(StoreError::Backend(format!("store task: {e}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Email, OutboxId};

    fn entry(html: Option<&str>) -> OutboxEntry {
        OutboxEntry {
            id: OutboxId(7),
            created_at: 1_772_373_909,
            attempts: 0,
            next_attempt_at: 1_772_373_909,
            last_error: None,
            message: OutboxMessage {
                to: vec!["security@example.com".parse::<Email>().unwrap()],
                from: "alice@example.com".into(),
                subject: "Emergency call 911 by Alice".into(),
                text: "Callback number: +15550100900\n".into(),
                html: html.map(str::to_owned),
            },
        }
    }

    #[test]
    fn transient_failures_back_off_and_permanent_ones_wait_long() {
        let t = Tuning::default();
        let secs = |f, n| t.retry_after(f, n).as_secs();
        assert_eq!(secs(Failure::Connect, 0), 5);
        assert_eq!(secs(Failure::Connect, 1), 10);
        assert_eq!(secs(Failure::Transient(451), 4), 80);
        assert_eq!(secs(Failure::Timeout, 7), 600, "capped");
        assert_eq!(secs(Failure::Tls, 200), 600, "no overflow");
        assert_eq!(secs(Failure::Permanent(550), 0), 1800);
        assert_eq!(secs(Failure::Config, 3), 1800);
    }

    #[test]
    fn failures_show_a_class_and_a_code_only() {
        assert_eq!(Failure::Permanent(550).to_string(), "smtp 550");
        assert_eq!(Failure::Transient(451).to_string(), "smtp 451");
        assert_eq!(Failure::Connect.to_string(), "connect");
    }

    #[test]
    fn mails_are_dated_when_queued_with_a_stable_message_id() {
        let text = String::from_utf8(mail(&entry(None), None).unwrap().formatted()).unwrap();
        assert!(text.contains("Message-ID: <lifeline-notify-7-1772373909@example.com>"), "{text}");
        assert!(text.contains("Date: Sun, 01 Mar 2026 14:05:09 +0000"), "{text}");
        assert!(text.contains("To: security@example.com"), "{text}");
        assert!(text.contains("Content-Type: text/plain"), "{text}");
        let text =
            String::from_utf8(mail(&entry(Some("<p>x</p>")), None).unwrap().formatted()).unwrap();
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(!text.contains("Sender:"), "{text}");
    }

    #[test]
    fn the_relay_sender_is_the_envelope_sender_when_the_agent_is_the_from() {
        let relay: Mailbox = "Lifeline <lifeline@example.com>".parse().unwrap();
        let m = mail(&entry(None), Some(&relay)).unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        assert!(text.contains("From: alice@example.com"), "{text}");
        assert!(text.contains("Sender: Lifeline <lifeline@example.com>"), "{text}");
        assert_eq!(
            m.envelope().from().map(ToString::to_string),
            Some("lifeline@example.com".into())
        );
        let mut own = entry(None);
        own.message.from = "lifeline@example.com".into();
        let text = String::from_utf8(mail(&own, Some(&relay)).unwrap().formatted()).unwrap();
        assert!(!text.contains("Sender:"), "the relay's own mail: {text}");
    }

    #[test]
    fn an_unusable_sender_is_a_message_failure() {
        let mut e = entry(None);
        e.message.from = "not an address".into();
        assert_eq!(mail(&e, None).unwrap_err(), Failure::Message);
    }

    #[test]
    fn url_forms() {
        let t = Duration::from_secs(1);
        assert!(transport("smtp://127.0.0.1:2525", t).is_ok());
        assert!(transport("smtp://user:pass@relay.example.com:587?tls=required", t).is_ok());
        assert!(transport("smtps://relay.example.com", t).is_ok());
        assert!(transport("smtp://relay.example.com?tls=sometimes", t).is_err());
        assert!(transport("http://relay.example.com", t).is_err());
    }
}
