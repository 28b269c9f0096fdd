//! SRTP for the relayed audio of a WebRTC leg, done by the anchor itself once DTLS is up, so
//! that a relayed packet costs its cipher and a header, not a pass through str0m's RTP stack.
//!
//! # Contract
//!
//! - str0m keeps ICE and DTLS. The DTLS-SRTP keying material (RFC 5764 §4.2)
//!   comes out of the DTLS instance str0m drives: [`provider`] is aws-lc-rs's
//!   [`CryptoProvider`] whose DTLS provider wraps aws-lc-rs's and copies the keying material
//!   and profile as the handshake hands them to str0m ([`build`] gives the leg's slot).
//!   Nothing else changes: the cipher work is aws-lc-rs's, through str0m's provider traits.
//! - The profiles str0m negotiates: `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 3711), and
//!   `SRTP_AEAD_AES_128_GCM` / `SRTP_AEAD_AES_256_GCM` (RFC 7714). Session keys and salts are
//!   derived with the AES-CM PRF (RFC 3711 §4.3.1, §4.3.3; RFC 7714 §11); the client's write
//!   key is the first half (RFC 5764 §4.2).
//! - Sending ([`Srtp::protect`]): the packet index is the caller's extended sequence number
//!   (rollover counter in its upper bits, RFC 3711 §3.3.1). An index is never encrypted twice
//!   (a keystream or GCM nonce used twice would leak, RFC 3711 §9.1, RFC 7714 §8.1): a sent
//!   index, or one older than the window, is refused.
//! - Receiving ([`Srtp::unprotect`]): per SSRC, the index is estimated from the highest one
//!   authenticated (RFC 3711 §3.3.1, appendix A), replays and packets older than the window
//!   are refused before the cipher runs (§3.3.2), and the window moves only for a packet that
//!   authenticated.
//! - SRTCP (RFC 3711 §3.4; RFC 7714 §9 for AEAD) with the same master keys and the RTCP
//!   labels 3, 4, 5 (§4.3.2): [`Srtp::protect_rtcp`] always encrypts (E-bit set), with an
//!   SRTCP index from 0, one up per packet, never reused (2^31 packets, then it refuses).
//!   [`Srtp::unprotect_rtcp`] keeps a replay window per sender SSRC (the first SSRC of the
//!   compound), checked before the cipher runs and moved only by an authentic packet; an
//!   authentic unencrypted packet (E-bit clear) is taken too.
//! - Nothing here panics on bytes from the network; a refused packet is `None` (`false`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
    SrtpProfile,
};
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256Gcm, AeadAes256GcmCipher, Aes128CmSha1_80,
    Aes128CmSha1_80Cipher, CryptoProvider, Sha1HmacProvider, SrtpProvider,
};
use str0m::{Rtc, RtcConfig};

/// The RTP fixed header (RFC 3550 §5.1).
const FIXED_HEADER: usize = 12;

/// How far back an index may be and still be taken (RFC 3711 §3.3.2 asks for at least 64).
const WINDOW: u64 = 128;

/// The most streams (SSRCs) of the browser tracked; a new one beyond replaces the oldest.
const STREAMS: usize = 8;

/// What DTLS gave for SRTP: the exported keying material, the profile, and whether this end
/// was the DTLS client.
#[derive(Clone)]
pub struct Keys {
    material: Vec<u8>,
    profile: SrtpProfile,
    active: bool,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("profile", &self.profile)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Where a leg's DTLS instance puts its keys once the handshake is done.
pub type KeySlot = Arc<Mutex<Option<Keys>>>;

thread_local! {
    /// The slot the next DTLS instance created on this thread fills ([`build`]).
    static NEXT_SLOT: std::cell::RefCell<Option<KeySlot>> = const { std::cell::RefCell::new(None) };
}

/// aws-lc-rs's provider with the DTLS provider that copies out the keying material.
pub fn provider() -> CryptoProvider {
    let mut p = str0m::crypto::from_feature_flags();
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    let inner = p.dtls_provider;
    p.dtls_provider = CAPTURE.get_or_init(|| Capture { inner });
    p
}

/// Builds an `Rtc` from `config` (whose crypto provider is [`provider`]'s) and the slot its
/// DTLS keys will land in.
pub fn build(config: RtcConfig, now: Instant) -> (Rtc, KeySlot) {
    let slot = KeySlot::default();
    NEXT_SLOT.with_borrow_mut(|next| *next = Some(slot.clone()));
    let rtc = config.build(now);
    NEXT_SLOT.with_borrow_mut(|next| next.take());
    (rtc, slot)
}

/// The DTLS provider wrapper.
struct Capture {
    inner: &'static dyn DtlsProvider,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Capture")
    }
}

impl DtlsProvider for Capture {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, str0m::crypto::CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        let slot = NEXT_SLOT.with_borrow_mut(|next| next.take()).unwrap_or_default();
        Ok(Box::new(CaptureInstance { inner, slot }))
    }

    fn is_test(&self) -> bool {
        self.inner.is_test()
    }
}

/// A DTLS instance that copies the keying material it hands to str0m into its slot.
struct CaptureInstance {
    inner: Box<dyn DtlsInstance>,
    slot: KeySlot,
}

impl std::fmt::Debug for CaptureInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureInstance").field("inner", &self.inner).finish()
    }
}

impl DtlsInstance for CaptureInstance {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &out {
            let keys =
                Keys { material: material.to_vec(), profile: *profile, active: self.is_active() };
            *self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(keys);
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

/// One direction's cipher and session salt (and authentication key for AES-CM).
enum Cipher {
    Cm { cipher: Box<dyn Aes128CmSha1_80Cipher>, auth: [u8; 20], salt: [u8; 14] },
    Gcm128 { cipher: Box<dyn AeadAes128GcmCipher>, salt: [u8; 12] },
    Gcm256 { cipher: Box<dyn AeadAes256GcmCipher>, salt: [u8; 12] },
}

/// The bytes a profile adds after the payload.
fn tag_len(cipher: &Cipher) -> usize {
    match cipher {
        Cipher::Cm { .. } => Aes128CmSha1_80::HMAC_TAG_LEN,
        Cipher::Gcm128 { .. } => AeadAes128Gcm::TAG_LEN,
        Cipher::Gcm256 { .. } => AeadAes256Gcm::TAG_LEN,
    }
}

/// aws-lc-rs's AES-CTR writes whole blocks: its output needs this much room past the data.
const CTR_SLACK: usize = 15;

/// The SRTP key derivation (RFC 3711 §4.3.1, §4.3.3): `out` filled with the AES-CM keystream
/// of `master` at x = `salt` XOR (`label` << 48), for a key derivation rate of 0.
fn derive(srtp: &dyn SrtpProvider, master: &[u8], salt: &[u8], label: u8, out: &mut [u8]) {
    let mut input = [0u8; 16];
    input[..salt.len()].copy_from_slice(salt);
    input[7] ^= label;
    let mut block = [0u8; 32];
    for (round, chunk) in out.chunks_mut(16).enumerate() {
        input[14..].copy_from_slice(&u16::try_from(round).unwrap_or(0).to_be_bytes());
        if master.len() == 32 {
            srtp.srtp_aes_256_ecb_round(master, &input, &mut block);
        } else {
            srtp.srtp_aes_128_ecb_round(master, &input, &mut block);
        }
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// The key derivation labels of RTP's session keys (RFC 3711 §4.3.1: encryption 0,
/// authentication 1, salt 2) and of RTCP's (§4.3.2: 3, 4, 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Labels {
    Rtp,
    Rtcp,
}

impl Cipher {
    /// The RTP (or RTCP, with `labels`) cipher of one direction: `client_writes` picks the
    /// master key and salt of the DTLS client from the keying material `[client key, server
    /// key, client salt, server salt]` (RFC 5764 §4.2), else the server's.
    fn new(
        crypto: &CryptoProvider,
        keys: &Keys,
        client_writes: bool,
        encrypt: bool,
        labels: Labels,
    ) -> Option<Cipher> {
        let (key_len, salt_len) = match keys.profile {
            SrtpProfile::AES128_CM_SHA1_80 => (16, 14),
            SrtpProfile::AEAD_AES_128_GCM => (16, 12),
            SrtpProfile::AEAD_AES_256_GCM => (32, 12),
            _ => return None,
        };
        let m = &keys.material;
        if m.len() != 2 * (key_len + salt_len) {
            return None;
        }
        let (k, s) =
            if client_writes { (0, 2 * key_len) } else { (key_len, 2 * key_len + salt_len) };
        let (master, master_salt) = (&m[k..k + key_len], &m[s..s + salt_len]);
        let srtp = crypto.srtp_provider;
        // Labels 0, 1 and 2 (or 3, 4 and 5): the encryption key, authentication key and salt.
        let base = if labels == Labels::Rtcp { 3 } else { 0 };
        let session =
            |label: u8, out: &mut [u8]| derive(srtp, master, master_salt, base + label, out);
        Some(match keys.profile {
            SrtpProfile::AES128_CM_SHA1_80 => {
                let (mut key, mut auth, mut salt) = ([0u8; 16], [0u8; 20], [0u8; 14]);
                session(0, &mut key);
                session(1, &mut auth);
                session(2, &mut salt);
                Cipher::Cm {
                    cipher: srtp.aes_128_cm_sha1_80().create_cipher(key, encrypt),
                    auth,
                    salt,
                }
            }
            SrtpProfile::AEAD_AES_128_GCM => {
                let (mut key, mut salt) = ([0u8; 16], [0u8; 12]);
                session(0, &mut key);
                session(2, &mut salt);
                Cipher::Gcm128 { cipher: srtp.aead_aes_128_gcm().create_cipher(key, encrypt), salt }
            }
            _ => {
                let (mut key, mut salt) = ([0u8; 32], [0u8; 12]);
                session(0, &mut key);
                session(2, &mut salt);
                Cipher::Gcm256 { cipher: srtp.aead_aes_256_gcm().create_cipher(key, encrypt), salt }
            }
        })
    }
}

/// The additional authenticated data of encrypted AEAD SRTCP (RFC 7714 §9.1): the first 8
/// octets, then the E-bit and SRTCP index.
fn srtcp_aad(clear: &[u8], trailer: [u8; 4]) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..RTCP_CLEAR].copy_from_slice(&clear[..RTCP_CLEAR]);
    aad[RTCP_CLEAR..].copy_from_slice(&trailer);
    aad
}

/// AEAD SRTCP opened (RFC 7714 §9.2; `at` is where the trailer starts, after the tag): the
/// compound packet appended to `out` once `decrypt(aads, input, output)` authenticates. An
/// unencrypted packet is all additional data, the tag alone the input.
fn open_gcm(
    packet: &[u8],
    at: usize,
    encrypted: bool,
    trailer: [u8; 4],
    out: &mut Vec<u8>,
    decrypt: impl FnOnce(&[&[u8]], &[u8], &mut [u8]) -> bool,
) -> Option<()> {
    let tag = AeadAes128Gcm::TAG_LEN;
    let start = out.len();
    let body_end = at.checked_sub(tag)?;
    if encrypted {
        let aad = srtcp_aad(packet, trailer);
        out.extend_from_slice(&packet[..RTCP_CLEAR]);
        out.resize(start + body_end, 0);
        let input = packet.get(RTCP_CLEAR..at)?;
        decrypt(&[&aad], input, &mut out[start + RTCP_CLEAR..]).then_some(())
    } else {
        let aads: [&[u8]; 2] = [&packet[..body_end], &trailer];
        decrypt(&aads, &packet[body_end..at], &mut []).then_some(())?;
        out.extend_from_slice(&packet[..body_end]);
        Some(())
    }
}

/// Which indices of a stream were taken, as a window below the highest (RFC 3711 §3.3.2).
#[derive(Debug, Clone, Copy)]
struct Window {
    top: u64,
    /// Bit `n`: index `top - n` was taken.
    seen: u128,
}

impl Window {
    fn new(first: u64) -> Window {
        Window { top: first, seen: 1 }
    }

    /// Whether `index` may still be taken.
    fn fresh(&self, index: u64) -> bool {
        if index > self.top {
            return true;
        }
        let back = self.top - index;
        back < WINDOW && self.seen & (1u128 << back) == 0
    }

    fn take(&mut self, index: u64) {
        if index > self.top {
            let shift = index - self.top;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = index;
        } else {
            self.seen |= 1u128 << (self.top - index);
        }
    }

    /// The index of `seq` as RFC 3711 §3.3.1 and appendix A estimate it from the highest one
    /// (`None`: before the stream's first index).
    fn estimate(&self, seq: u16) -> Option<u64> {
        let roc = self.top >> 16;
        let s_l = (self.top & 0xffff) as u16;
        let v = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 { roc.checked_sub(1)? } else { roc }
        } else if s_l - 0x8000 > seq {
            roc + 1
        } else {
            roc
        };
        Some(v << 16 | u64::from(seq))
    }
}

/// A leg's SRTP for its relayed RTP: one cipher each way.
pub struct Srtp {
    tx: Cipher,
    rx: Cipher,
    sha1_hmac: &'static dyn Sha1HmacProvider,
    /// The indices sent (one stream: the leg's SSRC).
    sent: Option<Window>,
    /// The browser's streams, by SSRC (one, or a few after renegotiations: a list is faster
    /// than a map).
    received: Vec<(u32, Window)>,
    /// SRTCP's own ciphers (labels 3, 4, 5; RFC 3711 §4.3.2).
    rtcp_tx: Cipher,
    rtcp_rx: Cipher,
    /// The SRTCP index of the next packet sent (RFC 3711 §3.4: 0 first, one up per packet).
    rtcp_index: u32,
    /// The SRTCP indices taken from the browser, by the sender SSRC of its compound packets.
    rtcp_received: Vec<(u32, Window)>,
}

/// The SRTCP trailer before the tag: the E-bit and the 31-bit SRTCP index (RFC 3711 §3.4).
const SRTCP_INDEX: usize = 4;

/// The first RTCP header and sender SSRC, which SRTCP leaves in the clear (RFC 3711 §3.4).
const RTCP_CLEAR: usize = 8;

/// The E-bit: the compound packet is encrypted.
const E_BIT: u32 = 0x8000_0000;

impl std::fmt::Debug for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srtp").field("streams", &self.received.len()).finish_non_exhaustive()
    }
}

/// The header length of an RTP packet (fixed part, CSRCs, extension; RFC 3550 §5.1, §5.3.1),
/// if the packet holds it.
fn header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    let mut len = FIXED_HEADER + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let ext = packet.get(len..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    (len <= packet.len()).then_some(len)
}

/// What [`Srtp::unprotect`] found: the RTP header fields and where the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unprotected {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The index (extended sequence number) authenticated.
    pub index: u64,
}

impl Srtp {
    /// The SRTP of a leg whose DTLS gave `keys`; `None` for a profile not handled here.
    pub fn new(crypto: &CryptoProvider, keys: &Keys) -> Option<Srtp> {
        // We write with the client's key when we are the DTLS client.
        let tx = Cipher::new(crypto, keys, keys.active, true, Labels::Rtp)?;
        let rx = Cipher::new(crypto, keys, !keys.active, false, Labels::Rtp)?;
        let rtcp_tx = Cipher::new(crypto, keys, keys.active, true, Labels::Rtcp)?;
        let rtcp_rx = Cipher::new(crypto, keys, !keys.active, false, Labels::Rtcp)?;
        Some(Srtp {
            tx,
            rx,
            sha1_hmac: crypto.sha1_hmac_provider,
            sent: None,
            received: Vec::new(),
            rtcp_tx,
            rtcp_rx,
            rtcp_index: 0,
            rtcp_received: Vec::new(),
        })
    }

    /// Protects the RTCP compound packet `compound` as SRTCP into `out` (cleared first),
    /// encrypted (E-bit set) with the next SRTCP index (RFC 3711 §3.4; RFC 7714 §9 for AEAD:
    /// the first 8 octets and the E-bit and index are the additional data). `false`: fewer
    /// than the 8 octets of an RTCP header, or the index space is used up (2^31 packets:
    /// an index is never used twice, whatever the cipher).
    pub fn protect_rtcp(&mut self, compound: &[u8], out: &mut Vec<u8>) -> bool {
        if compound.len() < RTCP_CLEAR || self.rtcp_index > 0x7fff_ffff {
            return false;
        }
        let index = self.rtcp_index;
        let trailer = (E_BIT | index).to_be_bytes();
        let ssrc = u32::from_be_bytes([compound[4], compound[5], compound[6], compound[7]]);
        let (clear, body) = compound.split_at(RTCP_CLEAR);
        let len = compound.len();
        out.clear();
        out.resize(len + tag_len(&self.rtcp_tx) + SRTCP_INDEX + CTR_SLACK, 0);
        out[..RTCP_CLEAR].copy_from_slice(clear);
        let sha1 = self.sha1_hmac;
        let ok = match &mut self.rtcp_tx {
            Cipher::Cm { cipher, auth, salt } => {
                // header | encrypted body | E + index | tag over everything before it.
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, u64::from(index));
                let ok = cipher.encrypt(&iv, body, &mut out[RTCP_CLEAR..]).is_ok();
                out[len..len + SRTCP_INDEX].copy_from_slice(&trailer);
                let hmac = |k: &[u8], p: &[&[u8]]| sha1.sha1_hmac(k, p);
                Aes128CmSha1_80::rtcp_hmac(hmac, auth, out, len + SRTCP_INDEX);
                ok
            }
            Cipher::Gcm128 { cipher, salt } => {
                // header | encrypted body and tag | E + index.
                let iv = AeadAes128Gcm::rtcp_iv(*salt, ssrc, index);
                let aad = srtcp_aad(clear, trailer);
                let ok = cipher.encrypt(&iv, &aad, body, &mut out[RTCP_CLEAR..]).is_ok();
                let at = len + AeadAes128Gcm::TAG_LEN;
                out[at..at + SRTCP_INDEX].copy_from_slice(&trailer);
                ok
            }
            Cipher::Gcm256 { cipher, salt } => {
                let iv = AeadAes256Gcm::rtcp_iv(*salt, ssrc, index);
                let aad = srtcp_aad(clear, trailer);
                let ok = cipher.encrypt(&iv, &aad, body, &mut out[RTCP_CLEAR..]).is_ok();
                let at = len + AeadAes256Gcm::TAG_LEN;
                out[at..at + SRTCP_INDEX].copy_from_slice(&trailer);
                ok
            }
        };
        out.truncate(len + tag_len(&self.rtcp_tx) + SRTCP_INDEX);
        if ok {
            self.rtcp_index += 1;
        }
        ok
    }

    /// Authenticates and decrypts the SRTCP packet `packet`: the RTCP compound packet is
    /// appended to `out`. `false` (and `out` as it was): too short, replayed or older than
    /// the window (per sender SSRC, checked before the cipher runs; RFC 3711 §3.3.2), or not
    /// authentic. An unencrypted one (E-bit clear) is taken once authentic.
    pub fn unprotect_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let ok = self.open_rtcp(packet, out).is_some();
        if !ok {
            out.truncate(start);
        }
        ok
    }

    fn open_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let tag = tag_len(&self.rtcp_rx);
        let least = RTCP_CLEAR + SRTCP_INDEX + tag;
        if packet.len() < least || packet[0] >> 6 != 2 {
            return None;
        }
        // The trailer: after the tag for AEAD (RFC 7714 §9.2), before it for AES-CM.
        let at = match self.rtcp_rx {
            Cipher::Cm { .. } => packet.len() - tag - SRTCP_INDEX,
            _ => packet.len() - SRTCP_INDEX,
        };
        let trailer: [u8; 4] = packet.get(at..at + SRTCP_INDEX)?.try_into().ok()?;
        let e_and_index = u32::from_be_bytes(trailer);
        let (encrypted, index) = (e_and_index & E_BIT != 0, e_and_index & !E_BIT);
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let found = self.rtcp_received.iter().position(|(s, _)| *s == ssrc);
        let window = found.and_then(|i| self.rtcp_received.get(i)).map(|(_, w)| *w);
        if window.is_some_and(|w| !w.fresh(u64::from(index))) {
            return None;
        }
        let clear = &packet[..RTCP_CLEAR];
        let start = out.len();
        let sha1 = self.sha1_hmac;
        match &mut self.rtcp_rx {
            Cipher::Cm { cipher, auth, salt } => {
                let (signed, mac) = packet.split_at(at + SRTCP_INDEX);
                let hmac = |k: &[u8], p: &[&[u8]]| sha1.sha1_hmac(k, p);
                if !Aes128CmSha1_80::rtcp_verify(hmac, auth, signed, mac) {
                    return None;
                }
                let body = &packet[RTCP_CLEAR..at];
                out.extend_from_slice(clear);
                if encrypted {
                    out.resize(start + RTCP_CLEAR + body.len() + CTR_SLACK, 0);
                    let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, u64::from(index));
                    cipher.decrypt(&iv, body, &mut out[start + RTCP_CLEAR..]).ok()?;
                    out.truncate(start + RTCP_CLEAR + body.len());
                } else {
                    out.extend_from_slice(body);
                }
            }
            Cipher::Gcm128 { cipher, salt } => {
                let iv = AeadAes128Gcm::rtcp_iv(*salt, ssrc, index);
                open_gcm(packet, at, encrypted, trailer, out, |aads, input, output| {
                    cipher.decrypt(&iv, aads, input, output).is_ok()
                })?;
            }
            Cipher::Gcm256 { cipher, salt } => {
                let iv = AeadAes256Gcm::rtcp_iv(*salt, ssrc, index);
                open_gcm(packet, at, encrypted, trailer, out, |aads, input, output| {
                    cipher.decrypt(&iv, aads, input, output).is_ok()
                })?;
            }
        }
        match found.and_then(|i| self.rtcp_received.get_mut(i)) {
            Some((_, w)) => w.take(u64::from(index)),
            None => {
                if self.rtcp_received.len() >= STREAMS {
                    self.rtcp_received.remove(0);
                }
                self.rtcp_received.push((ssrc, Window::new(u64::from(index))));
            }
        }
        Some(())
    }

    /// Encrypts the RTP packet `header` (its sequence number the low 16 bits of `index`) +
    /// `payload` into `out` (cleared first). `false`: `index` was sent already or is too old.
    pub fn protect(
        &mut self,
        header: &[u8],
        payload: &[u8],
        ssrc: u32,
        index: u64,
        out: &mut Vec<u8>,
    ) -> bool {
        if self.sent.is_some_and(|w| !w.fresh(index)) {
            return false;
        }
        let sha1 = self.sha1_hmac;
        let hlen = header.len();
        let len = hlen + payload.len();
        out.clear();
        out.resize(len + tag_len(&self.tx) + CTR_SLACK, 0);
        out[..hlen].copy_from_slice(header);
        let ok = match &mut self.tx {
            Cipher::Cm { cipher, auth, salt } => {
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, index);
                let ok = cipher.encrypt(&iv, payload, &mut out[hlen..]).is_ok();
                let hmac = |k: &[u8], p: &[&[u8]]| sha1.sha1_hmac(k, p);
                Aes128CmSha1_80::rtp_hmac(hmac, auth, out, index, len);
                ok
            }
            Cipher::Gcm128 { cipher, salt } => {
                let iv = AeadAes128Gcm::rtp_iv(*salt, ssrc, (index >> 16) as u32, index as u16);
                cipher.encrypt(&iv, header, payload, &mut out[hlen..]).is_ok()
            }
            Cipher::Gcm256 { cipher, salt } => {
                let iv = AeadAes256Gcm::rtp_iv(*salt, ssrc, (index >> 16) as u32, index as u16);
                cipher.encrypt(&iv, header, payload, &mut out[hlen..]).is_ok()
            }
        };
        out.truncate(len + tag_len(&self.tx));
        if ok {
            match &mut self.sent {
                Some(w) => w.take(index),
                None => self.sent = Some(Window::new(index)),
            }
        }
        ok
    }

    /// Authenticates and decrypts the SRTP packet `packet`: its payload (padding removed) is
    /// appended to `out`, its header fields returned. `None` (and `out` as it was): not RTP,
    /// replayed, too old, or not authentic.
    pub fn unprotect(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Option<Unprotected> {
        let start = out.len();
        let found = self.open(packet, out);
        if found.is_none() {
            out.truncate(start);
        }
        found
    }

    fn open(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Option<Unprotected> {
        let hlen = header_len(packet)?;
        let fixed = packet.get(..FIXED_HEADER)?;
        if fixed[0] >> 6 != 2 {
            return None;
        }
        let sequence = u16::from_be_bytes([fixed[2], fixed[3]]);
        let ssrc = u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
        let at = self.received.iter().position(|(s, _)| *s == ssrc);
        let window = at.and_then(|i| self.received.get(i)).map(|(_, w)| *w);
        let index = match window {
            Some(w) => w.estimate(sequence)?,
            None => u64::from(sequence),
        };
        if window.is_some_and(|w| !w.fresh(index)) {
            return None;
        }
        let body = packet.len().checked_sub(hlen + tag_len(&self.rx))?;
        let start = out.len();
        let sha1 = self.sha1_hmac;
        let ok = match &mut self.rx {
            Cipher::Cm { cipher, auth, salt } => {
                let (signed, mac) = packet.split_at(hlen + body);
                let hmac = |k: &[u8], p: &[&[u8]]| sha1.sha1_hmac(k, p);
                if !Aes128CmSha1_80::rtp_verify(hmac, auth, signed, index, mac) {
                    return None;
                }
                out.resize(start + body + CTR_SLACK, 0);
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, index);
                let ok = cipher.decrypt(&iv, &signed[hlen..], &mut out[start..]).is_ok();
                out.truncate(start + body);
                ok
            }
            Cipher::Gcm128 { cipher, salt } => {
                out.resize(start + body, 0);
                let iv = AeadAes128Gcm::rtp_iv(*salt, ssrc, (index >> 16) as u32, sequence);
                let (aad, input) = packet.split_at(hlen);
                cipher.decrypt(&iv, &[aad], input, &mut out[start..]).is_ok()
            }
            Cipher::Gcm256 { cipher, salt } => {
                out.resize(start + body, 0);
                let iv = AeadAes256Gcm::rtp_iv(*salt, ssrc, (index >> 16) as u32, sequence);
                let (aad, input) = packet.split_at(hlen);
                cipher.decrypt(&iv, &[aad], input, &mut out[start..]).is_ok()
            }
        };
        if !ok {
            return None;
        }
        // Padding (RFC 3550 §5.1): the last octet counts the octets to drop, itself included.
        if fixed[0] & 0x20 != 0 {
            let count = usize::from(out.last().copied().unwrap_or(0));
            if count == 0 || count > out.len() - start {
                return None;
            }
            out.truncate(out.len() - count);
        }
        match at.and_then(|i| self.received.get_mut(i)) {
            Some((_, w)) => w.take(index),
            None => {
                if self.received.len() >= STREAMS {
                    self.received.remove(0);
                }
                self.received.push((ssrc, Window::new(index)));
            }
        }
        Some(Unprotected {
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7f,
            sequence,
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc,
            index,
        })
    }
}

#[cfg(test)]
mod tests;
