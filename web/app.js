// lifeline reference softphone: JsSIP over the edge's own /ws, WebRTC audio.
//
// - Logs in as an agent (SIP user + password) and registers over ws:// or wss:// to the
//   page's own origin, so the edge's Origin check lets it in.
// - Emergency numbers (911, 933, 112, 999, also after an outside-line 9) switch the page to
//   emergency mode: only the alert, device settings and End call stay, until the call ends.
//   The INVITE carries the browser's location as a PIDF-LO (RFC 4119, GML point) in a
//   multipart/mixed body beside the SDP, named by a Geolocation header (RFC 6442). Without a
//   location the call is placed anyway and the agent is warned.
// - An INVITE with `Priority: psap-callback` (RFC 7090) rings with a high-priority banner.
// - Presence: a SUBSCRIBE to the agent's own AOR (RFC 3856) shows the state the edge holds,
//   whoever set it (admin API, the edge's DND during an emergency call, this page); choosing
//   a state in the selector PUBLISHes it (RFC 3903). See "Presence" below.
'use strict';

(() => {
  const EMERGENCY_NUMBERS = ['911', '933', '112', '999'];
  // An outside-line prefix in front of an emergency number (9911) is still an emergency.
  const OUTSIDE_LINE = '9';
  // How old a cached position may be when an emergency call starts, and how long the call
  // may wait for a fresh one. The call never waits longer than this for a location.
  const FIX_MAX_AGE_MS = 60_000;
  const FIX_WAIT_MS = 3_000;

  const $ = (id) => document.getElementById(id);
  const app = $('app');

  /** What tests and curious people can read: the page's state, never credentials. */
  const state = {
    registered: false,
    call: 'idle',
    emergency: false,
    psap: false,
    location: null,
    /** The supported country the last position is in ('US', 'PR'), null outside or unknown. */
    country: null,
    lastError: null,
  };
  window.softphone = state;

  let domain = location.hostname;
  let ua = null;
  let session = null;
  let incoming = null;
  let lastFix = null;
  let locationDenied = false;
  let watchId = null;
  let ring = null;
  // An emergency call waiting for its location (at most FIX_WAIT_MS): End call cancels it.
  let pending = null;

  // ---------------------------------------------------------------------------------------
  // Numbers

  function normalise(number) {
    return number.replace(/[\s().\-]/g, '');
  }

  function isEmergency(number) {
    const n = normalise(number);
    if (EMERGENCY_NUMBERS.includes(n)) return true;
    return n.startsWith(OUTSIDE_LINE) && EMERGENCY_NUMBERS.includes(n.slice(OUTSIDE_LINE.length));
  }

  /** A number (digits, *, #, an optional leading +) or another agent's id. */
  function validDialString(number) {
    return /^\+?[0-9*#]{1,32}$/.test(number) || /^[A-Za-z][A-Za-z0-9._-]{0,63}$/.test(number);
  }

  // ---------------------------------------------------------------------------------------
  // Status and modes

  function setStatus(text) {
    $('status').textContent = text;
  }

  function setCallState(call, text) {
    state.call = call;
    app.dataset.call = call;
    $('call-state').textContent = text;
    if (text) setStatus(text);
    const active = call !== 'idle';
    $('call').hidden = !active;
    $('hangup').hidden = !active;
    $('call-button').disabled = active || !state.registered;
  }

  function enterEmergency(number) {
    state.emergency = true;
    app.dataset.mode = 'emergency';
    $('emergency-number').textContent = number;
    $('emergency-alert').hidden = false;
    $('hangup').textContent = 'End call';
    $('devices').open = true;
    $('presence').textContent = 'Presence: Do Not Disturb (emergency call)';
  }

  function leaveEmergency() {
    state.emergency = false;
    app.dataset.mode = 'normal';
    $('emergency-alert').hidden = true;
    $('emergency-number').textContent = '';
    $('location-warning').hidden = true;
    $('hangup').textContent = 'Hang up';
    showPresence();
  }

  function warnLocation(text) {
    const w = $('location-warning');
    w.textContent = text;
    w.hidden = false;
  }

  // ---------------------------------------------------------------------------------------
  // Location (Geolocation API) and the PIDF-LO

  /** Where emergency calling through this edge is supported, as coarse boxes of latitude and
   *  longitude (no network lookup: the page must work with nothing but the edge). Border
   *  areas of Canada and Mexico fall inside the US boxes; the check warns, it never blocks. */
  const SUPPORTED_AREAS = [
    { country: 'PR', lat: [17.8, 18.6], lon: [-67.4, -65.2] },
    { country: 'US', lat: [24.4, 49.4], lon: [-124.9, -66.9] }, // the contiguous states
    { country: 'US', lat: [51.2, 71.5], lon: [-179.2, -129.9] }, // Alaska
    { country: 'US', lat: [18.9, 22.3], lon: [-160.3, -154.8] }, // Hawaii
  ];

  /** 'US', 'PR', or null when the position is outside the supported countries. */
  function countryOf(fix) {
    const { latitude, longitude } = fix.coords;
    const hit = SUPPORTED_AREAS.find(
      (a) => latitude >= a.lat[0] && latitude <= a.lat[1] && longitude >= a.lon[0] && longitude <= a.lon[1],
    );
    return hit ? hit.country : null;
  }

  const OUTSIDE_WARNING =
    'Your location is outside the United States and Puerto Rico, where emergency calling through ' +
    'this service is supported. Your call is placed anyway: tell the dispatcher where you are.';

  function showLocationState() {
    let text = 'Location: unknown';
    state.country = lastFix ? countryOf(lastFix) : null;
    if (!('geolocation' in navigator)) text = 'Location: not available in this browser';
    else if (locationDenied) text = 'Location: off (permission denied)';
    else if (lastFix && !state.country) text = 'Location: outside the supported countries (US, PR)';
    else if (lastFix) text = `Location: on, ${state.country} (±${Math.round(lastFix.coords.accuracy)} m)`;
    $('location-state').textContent = text;
    state.location = lastFix ? (state.country ? 'on' : 'outside') : locationDenied ? 'denied' : 'unknown';
  }

  function watchLocation() {
    if (!('geolocation' in navigator) || watchId !== null) return;
    watchId = navigator.geolocation.watchPosition(
      (pos) => {
        lastFix = pos;
        locationDenied = false;
        showLocationState();
      },
      (err) => {
        if (err.code === err.PERMISSION_DENIED) locationDenied = true;
        showLocationState();
      },
      { enableHighAccuracy: true, maximumAge: FIX_MAX_AGE_MS },
    );
  }

  function stopWatchingLocation() {
    if (watchId !== null) navigator.geolocation.clearWatch(watchId);
    watchId = null;
  }

  /** A recent position, or one asked for now; null after FIX_WAIT_MS at the latest. */
  function currentFix() {
    if (lastFix && Date.now() - lastFix.timestamp < FIX_MAX_AGE_MS) {
      return Promise.resolve(lastFix);
    }
    if (!('geolocation' in navigator)) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), FIX_WAIT_MS + 200);
      navigator.geolocation.getCurrentPosition(
        (pos) => {
          clearTimeout(timer);
          lastFix = pos;
          showLocationState();
          resolve(pos);
        },
        (err) => {
          clearTimeout(timer);
          if (err.code === err.PERMISSION_DENIED) locationDenied = true;
          showLocationState();
          resolve(null);
        },
        { enableHighAccuracy: true, maximumAge: FIX_MAX_AGE_MS, timeout: FIX_WAIT_MS },
      );
    });
  }

  function xmlEscape(s) {
    return String(s).replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  function randomToken(bytes = 8) {
    const a = new Uint8Array(bytes);
    crypto.getRandomValues(a);
    return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** A PIDF-LO (RFC 4119) with a geodetic point in WGS 84 (RFC 5491 §5.2.1). */
  function buildPidf(pos, entity) {
    const lat = pos.coords.latitude.toFixed(6);
    const lon = pos.coords.longitude.toFixed(6);
    const when = new Date(pos.timestamp).toISOString();
    return [
      '<?xml version="1.0" encoding="UTF-8"?>',
      '<presence xmlns="urn:ietf:params:xml:ns:pidf"',
      '    xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"',
      '    xmlns:gml="http://www.opengis.net/gml"',
      `    entity="${xmlEscape(entity)}">`,
      `  <tuple id="softphone-${randomToken(4)}">`,
      '    <status>',
      '      <gp:geopriv>',
      '        <gp:location-info>',
      '          <gml:Point srsName="urn:ogc:def:crs:EPSG::4326">',
      `            <gml:pos>${lat} ${lon}</gml:pos>`,
      '          </gml:Point>',
      '        </gp:location-info>',
      '        <gp:usage-rules/>',
      '      </gp:geopriv>',
      '    </status>',
      `    <timestamp>${when}</timestamp>`,
      '  </tuple>',
      '</presence>',
      '',
    ].join('\r\n');
  }

  /**
   * Puts the PIDF-LO beside the SDP JsSIP made: JsSIP emits `sending` with the INVITE just
   * before it leaves, so that its body and headers may be changed (RFC 5621 multipart, RFC
   * 6442 Geolocation with a cid: URI naming the part by its Content-ID, RFC 2392).
   */
  function attachPidf(request, pidf) {
    const boundary = `lifeline-${randomToken()}`;
    const cid = `${randomToken()}@${domain}`;
    const sdp = request.body;
    request.body = [
      `--${boundary}`,
      'Content-Type: application/sdp',
      '',
      sdp.replace(/\r\n$/, ''),
      `--${boundary}`,
      'Content-Type: application/pidf+xml',
      `Content-ID: <${cid}>`,
      '',
      pidf.replace(/\r\n$/, ''),
      `--${boundary}--`,
      '',
    ].join('\r\n');
    request.setHeader('Content-Type', `multipart/mixed;boundary=${boundary}`);
    request.setHeader('Geolocation', `<cid:${cid}>`);
    request.setHeader('Geolocation-Routing', 'yes');
  }

  // ---------------------------------------------------------------------------------------
  // Devices

  const audio = $('remote-audio');

  function micConstraint() {
    const id = $('mic').value;
    return id ? { deviceId: { exact: id } } : true;
  }

  async function listDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    const fill = (select, kind, fallback) => {
      const keep = select.value;
      select.textContent = '';
      const list = devices.filter((d) => d.kind === kind);
      const def = new Option(`${fallback} (default)`, '');
      select.add(def);
      list
        .filter((d) => d.deviceId && d.deviceId !== 'default')
        .forEach((d, i) => select.add(new Option(d.label || `${fallback} ${i + 1}`, d.deviceId)));
      if ([...select.options].some((o) => o.value === keep)) select.value = keep;
    };
    fill($('mic'), 'audioinput', 'Microphone');
    fill($('speaker'), 'audiooutput', 'Speaker');
    const canChoose = typeof audio.setSinkId === 'function';
    $('speaker').disabled = !canChoose;
    $('speaker-note').hidden = canChoose;
  }

  async function chooseSpeaker() {
    if (typeof audio.setSinkId !== 'function') return;
    try {
      await audio.setSinkId($('speaker').value);
    } catch (e) {
      state.lastError = `speaker: ${e.name}`;
    }
  }

  /** A new microphone during a call replaces the track being sent. */
  async function chooseMic() {
    if (!session || !session.connection) return;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraint() });
      const [track] = stream.getAudioTracks();
      const sender = session.connection.getSenders().find((s) => s.track && s.track.kind === 'audio');
      if (sender && track) {
        const old = sender.track;
        await sender.replaceTrack(track);
        old.stop();
        if (session.isMuted().audio) track.enabled = false;
      }
    } catch (e) {
      state.lastError = `microphone: ${e.name}`;
    }
  }

  /** The call's audio as WebRTC counts it (getStats): packets each way and the level heard.
   *  For the curious and for tests; `null` without a call. */
  window.softphoneAudio = async () => {
    if (!session || !session.connection) return null;
    const out = { sent: 0, received: 0, lost: 0, level: 0, jitter: 0 };
    (await session.connection.getStats()).forEach((r) => {
      if (r.kind !== 'audio') return;
      if (r.type === 'outbound-rtp') out.sent += r.packetsSent || 0;
      if (r.type === 'inbound-rtp') {
        out.received += r.packetsReceived || 0;
        out.lost += r.packetsLost || 0;
        out.jitter = Math.max(out.jitter, r.jitter || 0);
        out.level = Math.max(out.level, r.audioLevel || 0);
      }
    });
    return out;
  };

  // ---------------------------------------------------------------------------------------
  // Ringing (Web Audio; silent where the browser does not allow it)

  function startRing(psap) {
    stopRing();
    try {
      const ctx = new AudioContext();
      const beep = () => {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.frequency.value = psap ? 960 : 440;
        gain.gain.value = 0.15;
        osc.connect(gain).connect(ctx.destination);
        osc.start();
        osc.stop(ctx.currentTime + (psap ? 0.25 : 0.8));
      };
      beep();
      ring = { ctx, timer: setInterval(beep, psap ? 500 : 3000) };
    } catch (_) {
      ring = null;
    }
  }

  function stopRing() {
    if (!ring) return;
    clearInterval(ring.timer);
    ring.ctx.close().catch(() => {});
    ring = null;
  }

  // ---------------------------------------------------------------------------------------
  // SIP

  const CAUSE_TEXT = {
    Busy: 'Busy',
    Rejected: 'Declined',
    'Not Found': 'Number not found',
    Unavailable: 'Unavailable',
    'No Answer': 'No answer',
    'Request Timeout': 'No answer',
    'Connection Error': 'Connection lost',
    'User Denied Media Access': 'Microphone not allowed',
    'Authentication Error': 'Not authorised',
    'Address Incomplete': 'Number incomplete',
  };

  /**
   * The WebSocket to the edge. JsSIP 3.13 keeps only the LAST WWW-Authenticate or
   * Proxy-Authenticate of a response and answers only MD5; the edge puts MD5 last for
   * WebSocket clients (src/core/auth.rs), so plain JsSIP works.
   */
  function edgeSocket(url) {
    return new JsSIP.WebSocketInterface(url);
  }

  function wsUrl() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/ws`;
  }

  async function loadConfig() {
    try {
      const r = await fetch('softphone.json', { cache: 'no-store' });
      if (r.ok) {
        const c = await r.json();
        if (typeof c.domain === 'string' && c.domain) domain = c.domain;
      }
    } catch (_) {
      // The page's host name is the best guess left.
    }
  }

  function login(agent, password) {
    const error = $('login-error');
    error.hidden = true;
    if (!window.JsSIP) {
      error.textContent = 'The SIP library did not load.';
      error.hidden = false;
      return;
    }
    let next;
    try {
      next = new JsSIP.UA({
        sockets: [edgeSocket(wsUrl())],
        uri: `sip:${agent}@${domain}`,
        authorization_user: agent,
        password,
        display_name: agent,
        register: true,
        session_timers: false,
        user_agent: 'lifeline-softphone JsSIP/3.13.8',
      });
    } catch (e) {
      error.textContent = `Cannot log in: ${e.message || e}`;
      error.hidden = false;
      return;
    }
    ua = next;
    $('login-button').disabled = true;
    setStatus('Connecting…');
    ua.on('connected', () => setStatus('Connected, registering…'));
    ua.on('disconnected', () => {
      state.registered = false;
      app.dataset.reg = 'offline';
      if (ua === next) setStatus('Connection lost, retrying…');
    });
    ua.on('registered', () => {
      state.registered = true;
      app.dataset.reg = 'registered';
      setStatus(`Registered as ${agent}`);
      $('me').textContent = `Agent: ${agent}@${domain}`;
      $('login').hidden = true;
      $('phone').hidden = false;
      $('login-button').disabled = false;
      setCallState(state.call, $('call-state').textContent);
      listDevices();
      watchLocation();
      startPresence(agent);
      $('number').focus();
    });
    ua.on('unregistered', () => {
      state.registered = false;
      app.dataset.reg = 'offline';
    });
    ua.on('registrationFailed', (e) => {
      state.registered = false;
      app.dataset.reg = 'failed';
      const wrong = e.cause === JsSIP.C.causes.REJECTED || e.cause === JsSIP.C.causes.AUTHENTICATION_ERROR;
      const text = wrong ? 'Wrong agent or password.' : `Registration failed: ${e.cause}`;
      state.lastError = text;
      if (!$('phone').hidden) {
        setStatus(text);
        return;
      }
      ua.stop();
      ua = null;
      $('login-button').disabled = false;
      error.textContent = text;
      error.hidden = false;
      setStatus('Not logged in');
    });
    ua.on('newRTCSession', (e) => {
      if (e.originator === 'remote') onIncoming(e.session, e.request);
    });
    ua.start();
  }

  function logout() {
    if (session) session.terminate();
    stopPresence();
    if (ua) ua.stop();
    ua = null;
    stopWatchingLocation();
    showPresence();
    state.registered = false;
    app.dataset.reg = 'offline';
    $('phone').hidden = true;
    $('login').hidden = false;
    $('password').value = '';
    setStatus('Not logged in');
  }

  function wireMedia(s) {
    const attach = (pc) => {
      pc.addEventListener('track', (ev) => {
        if (ev.streams && ev.streams[0]) audio.srcObject = ev.streams[0];
        else audio.srcObject = new MediaStream([ev.track]);
        audio.play().catch(() => {});
      });
    };
    if (s.connection) attach(s.connection);
    s.on('peerconnection', (ev) => attach(ev.peerconnection));
  }

  function wireSession(s, peer) {
    session = s;
    $('call-peer').textContent = peer;
    $('mute').setAttribute('aria-pressed', 'false');
    $('hold').setAttribute('aria-pressed', 'false');
    wireMedia(s);
    s.on('progress', () => setCallState('ringing', 'Ringing…'));
    s.on('accepted', () => setCallState('active', 'In call'));
    s.on('confirmed', () => {
      setCallState('active', 'In call');
      listDevices();
    });
    s.on('hold', () => {
      $('hold').setAttribute('aria-pressed', 'true');
      setCallState('active', 'On hold');
    });
    s.on('unhold', () => {
      $('hold').setAttribute('aria-pressed', 'false');
      setCallState('active', 'In call');
    });
    s.on('muted', () => $('mute').setAttribute('aria-pressed', 'true'));
    s.on('unmuted', () => $('mute').setAttribute('aria-pressed', 'false'));
    const done = (why) => {
      if (session !== s) return;
      session = null;
      audio.srcObject = null;
      stopRing();
      setCallState('idle', '');
      if (state.emergency) leaveEmergency();
      state.psap = false;
      setStatus(state.registered ? `Call ended${why ? `: ${why}` : ''}` : 'Not registered');
    };
    s.on('ended', (e) => done(e.originator === 'remote' ? 'the other side hung up' : ''));
    s.on('failed', (e) => done(CAUSE_TEXT[e.cause] || e.cause));
  }

  async function call(raw) {
    if (!ua || !state.registered || session) return;
    const number = normalise(raw);
    if (!validDialString(number)) {
      setStatus('Enter a number to call.');
      return;
    }
    const emergency = isEmergency(number);
    let pidf = null;
    if (emergency) {
      if (pending) return;
      const attempt = { cancelled: false };
      pending = attempt;
      enterEmergency(number);
      setCallState('calling', 'Calling emergency services…');
      // The call waits at most FIX_WAIT_MS for a location, and goes without one.
      const fix = await currentFix();
      if (fix) {
        pidf = buildPidf(fix, `pres:${ua.configuration.uri.user}@${domain}`);
        if (!countryOf(fix)) warnLocation(OUTSIDE_WARNING);
      } else {
        warnLocation(
          locationDenied
            ? 'Location is off: your call is placed without it. Tell the dispatcher where you are.'
            : 'Your location is unknown: your call is placed without it. Tell the dispatcher where you are.',
        );
      }
      pending = null;
      if (attempt.cancelled || !ua || session) return;
    }
    const s = ua.call(`sip:${number}@${domain}`, {
      mediaConstraints: { audio: micConstraint(), video: false },
      pcConfig: { iceServers: [] },
      eventHandlers: {
        sending: (e) => {
          if (pidf) attachPidf(e.request, pidf);
        },
      },
    });
    wireSession(s, number);
    setCallState('calling', emergency ? 'Calling emergency services…' : 'Calling…');
  }

  function onIncoming(s, request) {
    const psap = /(^|[\s,])psap-callback($|[\s,;])/i.test(request.getHeader('Priority') || '');
    const who = s.remote_identity;
    const caller = (who.display_name ? `${who.display_name} ` : '') + `<${who.uri.user || who.uri.host}>`;
    if (incoming || (session && !psap)) {
      s.terminate({ status_code: 486, reason_phrase: 'Busy Here' });
      return;
    }
    incoming = { session: s, psap };
    state.psap = psap;
    const box = $('incoming');
    box.classList.toggle('psap', psap);
    $('incoming-title').textContent = psap ? 'Emergency services calling back' : 'Incoming call';
    $('incoming-caller').textContent = psap ? `PSAP callback from ${caller}` : caller;
    box.hidden = false;
    setStatus(psap ? 'PSAP callback: answer now' : `Call from ${caller}`);
    startRing(psap);
    $('answer').focus();
    const gone = () => {
      if (!incoming || incoming.session !== s) return;
      incoming = null;
      box.hidden = true;
      stopRing();
      if (session !== s) state.psap = false;
    };
    s.on('failed', gone);
    s.on('ended', gone);
    s.on('accepted', gone);
  }

  function answer() {
    if (!incoming) return;
    const { session: s, psap } = incoming;
    if (session && session !== s) session.terminate();
    $('incoming').hidden = true;
    stopRing();
    incoming = null;
    wireSession(s, $('incoming-caller').textContent);
    setCallState('calling', psap ? 'Connecting emergency services…' : 'Connecting…');
    s.answer({ mediaConstraints: { audio: micConstraint(), video: false }, pcConfig: { iceServers: [] } });
  }

  function decline() {
    if (!incoming) return;
    incoming.session.terminate({ status_code: 486, reason_phrase: 'Busy Here' });
  }

  function hangup() {
    if (session) {
      session.terminate();
    } else if (pending) {
      pending.cancelled = true;
      pending = null;
      setCallState('idle', '');
      leaveEmergency();
      setStatus('Call cancelled');
    }
  }

  function press(key) {
    if (session && state.call === 'active') {
      try {
        session.sendDTMF(key);
      } catch (e) {
        state.lastError = `dtmf: ${e.message || e}`;
      }
      $('call-state').textContent = `Sent tone ${key}`;
      return;
    }
    const input = $('number');
    input.value += key;
  }

  // ---------------------------------------------------------------------------------------
  // Presence (self-contained: startPresence, stopPresence, showPresence are its only entries)
  //
  // The edge is the presence server. The page SUBSCRIBEs to its own agent's `presence` and
  // shows what each NOTIFY's PIDF says (the edge writes the state name as the note), so a
  // change made anywhere (admin API, emergency DND and its restore, another device) shows
  // here. Choosing a state PUBLISHes a PIDF with the matching RPID activity and note; the
  // selector then follows the NOTIFY that comes back. Only a person's choice publishes: a
  // state shown because of a NOTIFY is never sent back.

  const PRESENCE_LABELS = {
    available: 'Available',
    busy: 'Busy',
    away: 'Away',
    dnd: 'Do Not Disturb',
    offline: 'Offline',
  };
  // What the selector publishes: RFC 3863 basic status and RFC 4480 activity per state.
  const PRESENCE_PIDF = {
    available: { basic: 'open', activity: null },
    busy: { basic: 'open', activity: 'busy' },
    away: { basic: 'open', activity: 'away' },
    dnd: { basic: 'closed', activity: 'busy' },
  };
  const SUBSCRIBE_EXPIRES = 600;
  const PUBLISH_EXPIRES = 3600;
  const RESUBSCRIBE_MS = 5_000;

  const presence = {
    agent: null,
    subscriber: null,
    // The entity-tag of our live publication (RFC 3903 SIP-ETag), and its refresh timer.
    etag: null,
    refreshTimer: null,
    retryTimer: null,
    // The connection dropped since the subscription started: subscribe again once registered.
    stale: false,
    // The UA's connection events are listened to (once per UA).
    wired: false,
  };
  state.presence = null;

  function presenceLabel(value) {
    return PRESENCE_LABELS[value] || value;
  }

  /** The state a NOTIFY's PIDF says: the note first (the edge writes the state's name). */
  function presenceFromPidf(xml) {
    let doc;
    try {
      doc = new DOMParser().parseFromString(xml, 'application/xml');
    } catch (_) {
      return null;
    }
    if (doc.getElementsByTagName('parsererror').length) return null;
    for (const note of doc.getElementsByTagNameNS('*', 'note')) {
      const t = note.textContent.trim().toLowerCase();
      if (/^[a-z0-9._-]{1,32}$/.test(t)) return t;
    }
    const activities = [...doc.getElementsByTagNameNS('*', 'activities')]
      .flatMap((a) => [...a.children].map((c) => c.localName));
    const basic = [...doc.getElementsByTagNameNS('*', 'basic')].map((b) => b.textContent.trim());
    const closed = basic.includes('closed') && !basic.includes('open');
    if (activities.includes('busy') || activities.includes('on-the-phone')) return closed ? 'dnd' : 'busy';
    if (activities.includes('away')) return 'away';
    if (basic.includes('open')) return 'available';
    if (closed) return 'offline';
    return null;
  }

  /** Shows the last known state in the selector and the status text. */
  function showPresence() {
    const select = $('presence-select');
    const other = $('presence-other');
    const value = state.presence;
    select.disabled = !ua || !value;
    if (!value) {
      $('presence').textContent = 'Presence: not known yet';
      return;
    }
    if (PRESENCE_PIDF[value]) {
      other.hidden = true;
      select.value = value;
    } else {
      // Offline or a site-specific state set elsewhere: shown, not choosable here.
      other.value = value;
      other.textContent = presenceLabel(value);
      other.hidden = false;
      select.value = value;
    }
    const why = value === 'dnd' && state.emergency ? ' (emergency call)' : '';
    $('presence').textContent = `Presence: ${presenceLabel(value)}${why}`;
  }

  function startPresence(agent) {
    if (presence.subscriber && !presence.stale && presence.agent === agent) return;
    stopPresence({ keepState: true });
    presence.agent = agent;
    presence.stale = false;
    const sub = ua.subscribe(`sip:${agent}@${domain}`, 'presence', 'application/pidf+xml', {
      expires: SUBSCRIBE_EXPIRES,
    });
    presence.subscriber = sub;
    sub.on('notify', (isFinal, request, body) => {
      if (presence.subscriber !== sub || !body) return;
      const value = presenceFromPidf(body);
      if (value) {
        state.presence = value;
        showPresence();
      }
    });
    sub.on('terminated', () => {
      if (presence.subscriber !== sub) return;
      presence.subscriber = null;
      // Ended by the edge (expiry, a lost connection) while logged in: subscribe again.
      if (ua && presence.agent) {
        clearTimeout(presence.retryTimer);
        presence.retryTimer = setTimeout(() => {
          if (ua && presence.agent && !presence.subscriber) startPresence(presence.agent);
        }, RESUBSCRIBE_MS);
      }
    });
    sub.subscribe();
    if (!presence.wired) {
      presence.wired = true;
      // After a reconnection the edge forgot the subscription with the connection.
      ua.on('disconnected', () => {
        presence.stale = true;
      });
      ua.on('registered', () => {
        if (presence.stale && presence.agent) startPresence(presence.agent);
      });
    }
  }

  function stopPresence({ keepState = false } = {}) {
    clearTimeout(presence.refreshTimer);
    clearTimeout(presence.retryTimer);
    const sub = presence.subscriber;
    presence.subscriber = null;
    if (sub) {
      try {
        sub.terminate();
      } catch (_) {
        // Never accepted: nothing to end.
      }
    }
    if (!keepState) {
      presence.agent = null;
      presence.etag = null;
      presence.wired = false;
      state.presence = null;
      showPresence();
    }
  }

  function presencePidf(value) {
    const entity = `sip:${presence.agent}@${domain}`;
    const { basic, activity } = PRESENCE_PIDF[value];
    return [
      '<?xml version="1.0" encoding="UTF-8"?>',
      `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="${xmlEscape(entity)}">`,
      `<tuple id="t${randomToken()}"><status><basic>${basic}</basic></status></tuple>`,
      `<dm:person id="p${randomToken()}">`,
      activity ? `<rpid:activities><rpid:${activity}/></rpid:activities>` : '',
      `<dm:note>${value}</dm:note>`,
      '</dm:person>',
      '</presence>',
    ].join('');
  }

  /**
   * Sends a PUBLISH (RFC 3903). JsSIP 3.13.8 has no PUBLISH of its own (no Publisher), so an
   * OPTIONS request is turned into one before it leaves: JsSIP announces it ("newOptions")
   * synchronously before sending, and its request line, CSeq and digest all read the
   * request's method. Its transaction, retransmission and 407 handling are reused as they are.
   * `done(response)` gets the final response (null on a timeout or transport error).
   */
  function sendPublish(extraHeaders, body, done) {
    const asPublish = (req) => {
      req.method = 'PUBLISH';
      const setHeader = req.setHeader.bind(req);
      req.setHeader = (name, value) =>
        setHeader(name, /^cseq$/i.test(name) ? String(value).replace(/OPTIONS$/, 'PUBLISH') : value);
      req.setHeader('cseq', `${req.cseq} PUBLISH`);
      const clone = req.clone.bind(req);
      req.clone = () => asPublish(clone());
      return req;
    };
    const hook = (e) => {
      if (e.originator === 'local') asPublish(e.request);
    };
    ua.on('newOptions', hook);
    try {
      ua.sendOptions(`sip:${presence.agent}@${domain}`, body, {
        contentType: 'application/pidf+xml',
        extraHeaders,
        eventHandlers: {
          succeeded: (e) => done(e.response),
          failed: (e) => done(e.response || null),
        },
      });
    } finally {
      ua.removeListener('newOptions', hook);
    }
  }

  /** Publishes `value` (a person's choice); `refresh` sends no body, only keeps it alive. */
  function publishPresence(value, { refresh = false, retried = false } = {}) {
    if (!ua || !presence.agent) return;
    clearTimeout(presence.refreshTimer);
    const headers = ['Event: presence', `Expires: ${PUBLISH_EXPIRES}`];
    if (presence.etag) headers.push(`SIP-If-Match: ${presence.etag}`);
    const body = refresh ? null : presencePidf(value);
    sendPublish(headers, body, (response) => {
      const status = response ? response.status_code : 0;
      if (status >= 200 && status < 300) {
        presence.etag = response.getHeader('SIP-ETag') || null;
        const granted = parseInt(response.getHeader('Expires'), 10) || PUBLISH_EXPIRES;
        presence.refreshTimer = setTimeout(
          () => publishPresence(value, { refresh: true }),
          Math.max(granted - 60, granted / 2) * 1000,
        );
        return;
      }
      presence.etag = null;
      if (status === 412 && !refresh && !retried) {
        // Our publication expired at the edge: publish anew.
        publishPresence(value, { retried: true });
        return;
      }
      if (!refresh) {
        state.lastError = `presence not set: ${status || 'no answer'}`;
        $('presence').textContent = `Presence: could not set ${presenceLabel(value)}`;
        // Back to what the edge last said.
        setTimeout(showPresence, 2_000);
      }
    });
  }

  $('presence-select').addEventListener('change', (e) => {
    const value = e.target.value;
    if (!PRESENCE_PIDF[value]) return;
    $('presence').textContent = `Presence: setting ${presenceLabel(value)}…`;
    publishPresence(value);
  });

  // ---------------------------------------------------------------------------------------
  // Wiring

  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = $('login');
    if (!form.reportValidity()) return;
    login($('agent').value.trim(), $('password').value);
  });
  $('logout').addEventListener('click', logout);
  $('dialpad').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-key]');
    if (b) press(b.dataset.key);
  });
  $('backspace').addEventListener('click', () => {
    const input = $('number');
    input.value = input.value.slice(0, -1);
    input.focus();
  });
  $('number').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      call($('number').value);
    }
  });
  // During a call, digit keys typed anywhere but a form field go out as DTMF.
  document.addEventListener('keydown', (e) => {
    if (!session || state.call !== 'active' || e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement) return;
    if (/^[0-9*#]$/.test(e.key)) {
      e.preventDefault();
      press(e.key);
    }
  });
  $('call-button').addEventListener('click', () => call($('number').value));
  $('hangup').addEventListener('click', hangup);
  $('answer').addEventListener('click', answer);
  $('decline').addEventListener('click', decline);
  $('mute').addEventListener('click', () => {
    if (!session) return;
    if (session.isMuted().audio) session.unmute({ audio: true });
    else session.mute({ audio: true });
  });
  /** Hold or resume. JsSIP refuses a new offer while the last one is still being answered
   *  (a quick second click): the page tries again for a few seconds rather than drop it. */
  function toggleHold(s, tries = 0) {
    if (session !== s || state.call !== 'active') return;
    const done = s.isOnHold().local ? s.unhold() : s.hold();
    if (done === false && tries < 20) setTimeout(() => toggleHold(s, tries + 1), 250);
  }
  $('hold').addEventListener('click', () => {
    if (session) toggleHold(session);
  });
  $('mic').addEventListener('change', chooseMic);
  $('speaker').addEventListener('change', chooseSpeaker);
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener('devicechange', listDevices);
  }
  window.addEventListener('beforeunload', () => {
    if (ua) ua.stop();
  });

  setCallState('idle', '');
  showLocationState();
  loadConfig();
})();
