//! A scripted user agent's helpers: receive over UDP, parse, answer as a UAS.

use std::time::Duration;

use tokio::net::UdpSocket;

pub async fn udp_recv(sock: &UdpSocket) -> String {
    let mut buf = vec![0; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .expect("nothing from the edge over UDP")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Receives over UDP until a message starting with `prefix` (skipping 100 Trying and the like).
pub async fn udp_recv_until(sock: &UdpSocket, prefix: &str) -> String {
    loop {
        let m = udp_recv(sock).await;
        if m.starts_with(prefix) {
            return m;
        }
    }
}

pub fn parse_request(text: &str) -> sip::Request {
    match sip::Message::parse(bytes::Bytes::from(text.to_owned()), sip::Framing::Datagram) {
        Ok(sip::Message::Request(r)) => r,
        other => panic!("not a request: {other:?}\n{text}"),
    }
}

/// A UAS response to `req`: Via, From, To (with `tag`), Call-ID, CSeq, Record-Route, Contact.
pub fn uas_response(
    req: &sip::Request,
    status: u16,
    reason: &str,
    tag: &str,
    contact: &str,
) -> String {
    use sip::HeaderName;
    let mut r = sip::Response::for_request(req, status, reason);
    r.set_to_tag(tag);
    for rr in req.headers().get_all(HeaderName::RecordRoute) {
        r.headers_mut().push(HeaderName::RecordRoute, bytes::Bytes::copy_from_slice(rr));
    }
    r.headers_mut().push(HeaderName::Contact, contact.to_owned());
    String::from_utf8(r.to_bytes().to_vec()).unwrap()
}

pub fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines().filter_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": "))).collect()
}
