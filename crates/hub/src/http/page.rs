//! `/`: the dashboard, one HTML page with its style and script inline,
//! embedded in the binary (no CDN, no build step).
//!
//! Its Content-Security-Policy allows exactly the page's own style and
//! script (by SHA-256 hash), `fetch` and WebSocket to the hub itself, and
//! nothing else: no other script, no inline event handlers, no images,
//! frames, forms or plugins. (`'self'` covers `ws:`/`wss:` to the page's
//! own host in CSP 3, which current browsers implement.) Events are untrusted input, and the page
//! renders them with `textContent` only; the policy is the second line of
//! defence.

use std::sync::OnceLock;

use ring::digest::{SHA256, digest};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::Answer;

const HTML: &str = include_str!("dashboard.html");
const STYLE: &str = include_str!("dashboard.css");
const SCRIPT: &str = include_str!("dashboard.js");

/// The page and its policy, put together once.
#[derive(Debug)]
struct Page {
    html: String,
    policy: String,
}

fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(|| {
        let html = HTML
            .replacen("/*STYLE*/", STYLE, 1)
            .replacen("/*SCRIPT*/", SCRIPT, 1);
        let policy = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            base64(digest(&SHA256, SCRIPT.as_bytes()).as_ref()),
            base64(digest(&SHA256, STYLE.as_bytes()).as_ref()),
        );
        Page { html, policy }
    })
}

pub(super) fn answer() -> Answer {
    let page = page();
    Answer {
        status: StatusCode::OK,
        content_type: "text/html; charset=utf-8",
        headers: vec![
            ("content-security-policy", page.policy.clone()),
            ("referrer-policy", "no-referrer".into()),
            ("x-frame-options", "DENY".into()),
        ],
        body: page.html.as_bytes().to_vec(),
        head_only: false,
    }
}

/// Standard base64 with padding, as CSP hashes are written.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn the_page_inlines_its_assets_and_has_no_inline_handlers() {
        let page = page();
        assert!(page.html.contains(SCRIPT) && page.html.contains(STYLE));
        assert!(!page.html.contains("/*SCRIPT*/"));
        // No `onclick=` and the like: the policy would block them anyway.
        let html = HTML.to_ascii_lowercase();
        for (at, _) in html.match_indices(" on") {
            let name: String = html[at + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            let after = html[at + 3 + name.len()..].trim_start();
            assert!(
                name.is_empty() || !after.starts_with('='),
                "inline handler on{name}"
            );
        }
        assert!(!SCRIPT.contains("innerHTML"), "render with textContent");
        assert!(page.policy.contains("script-src 'sha256-"));
    }
}
