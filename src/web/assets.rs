//! The reference web softphone (`web/` at the top of the repository), embedded into the binary
//! at build time: the edge serves it with no file on disk and no CDN, and a fresh clone runs
//! it with no Node (JsSIP is vendored as a built file, `web/vendor/README.md`).
//!
//! Every response carries a Content-Security-Policy that allows only this origin's scripts,
//! styles and connections (the page's WebSocket to `/ws` is same-origin), no framing, and
//! `nosniff`; the page may use the microphone and the location, nothing else.

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::WebState;

/// One embedded file of the page.
#[derive(Debug)]
pub struct Asset {
    /// The URL path it is served at.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// Whether the name carries a version, so that browsers may keep it for good.
    pub immutable: bool,
}

/// The page's files. The JsSIP file name carries its version; a new version is a new name.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/index.html"),
        immutable: false,
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/app.js"),
        immutable: false,
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/style.css"),
        immutable: false,
    },
    Asset {
        path: "/vendor/jssip-3.13.8.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/vendor/jssip-3.13.8.min.js"),
        immutable: true,
    },
    Asset {
        path: "/vendor/LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../../web/vendor/LICENSE"),
        immutable: false,
    },
];

/// What the page may load and do. `connect-src 'self'` covers `ws:`/`wss:` to the same host
/// and port (CSP Level 3), which is all the page opens.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The browser features the page uses: the microphone and the location (for emergency
/// calls), and the speaker choice.
pub const PERMISSIONS_POLICY: &str =
    "microphone=(self), geolocation=(self), speaker-selection=(self), camera=()";

/// The asset at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Serves one embedded file.
pub fn serve(asset: &'static Asset) -> Response {
    let cache = if asset.immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        asset.body,
    )
        .into_response();
    secure(&mut response);
    response
}

/// `GET /softphone.json`: what the page cannot know from its own URL, the SIP domain (the
/// digest realm and the domain a REGISTER's To must name).
pub async fn config(State(state): State<WebState>) -> Response {
    let body = serde_json::json!({ "domain": &*state.domain }).to_string();
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response();
    secure(&mut response);
    response
}

/// The headers every page response carries.
fn secure(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(PERMISSIONS_POLICY),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_and_style_the_page_names_is_served() {
        let page = std::str::from_utf8(ASSETS[0].body).expect("index.html is UTF-8");
        for attr in ["src=\"", "href=\""] {
            for piece in page.split(attr).skip(1) {
                let Some((url, _)) = piece.split_once('"') else { continue };
                if url.starts_with("data:") {
                    continue;
                }
                assert!(find(&format!("/{url}")).is_some(), "index.html names {url}, not served");
            }
        }
    }

    #[test]
    fn the_vendored_library_is_the_one_its_name_says() {
        let jssip = find("/vendor/jssip-3.13.8.min.js").expect("JsSIP is served");
        let text = std::str::from_utf8(jssip.body).expect("UTF-8");
        assert!(text.contains("version:\"3.13.8\""), "the bundle is JsSIP 3.13.8");
        let license = find("/vendor/LICENSE").expect("its licence is served");
        assert!(std::str::from_utf8(license.body).is_ok_and(|l| l.contains("JsSIP")));
    }
}
