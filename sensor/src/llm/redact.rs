//! Credentials never enter the trail: strings shaped like API keys, access tokens, bearer
//! tokens and private keys are masked in every piece of captured content before a record is
//! built (whatever the agent's content policy), request targets lose the values of key-like
//! query parameters, and headers are never recorded at all. The `redacted` policy also masks
//! e-mail addresses and card-number-like digit runs.

use std::borrow::Cow;

/// What masked text is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Token prefixes of well-known credential formats and the fewest characters that must follow.
const KEY_PREFIXES: &[(&str, usize)] = &[
    // OpenAI (`sk-`, `sk-proj-`), Anthropic (`sk-ant-api03-`), many others.
    ("sk-", 16),
    ("rk-", 16),
    // Google API keys.
    ("AIza", 30),
    // GitHub.
    ("ghp_", 20),
    ("gho_", 20),
    ("ghu_", 20),
    ("ghs_", 20),
    ("ghr_", 20),
    ("github_pat_", 20),
    // GitLab, Slack, Hugging Face, AWS access key ids, Stripe.
    ("glpat-", 16),
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("xoxa-", 10),
    ("xoxs-", 10),
    ("hf_", 24),
    ("AKIA", 16),
    ("ASIA", 16),
    ("pk_live_", 16),
    ("sk_live_", 16),
];

fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// Whether a token (a run of letters, digits, `_`, `-`, `.`) is shaped like a credential.
fn is_credential(token: &str) -> bool {
    let token = token.trim_end_matches('.');
    if KEY_PREFIXES
        .iter()
        .any(|(p, min)| token.len() >= p.len() + min && token.starts_with(p))
    {
        return true;
    }
    // A JSON Web Token: three base64url parts, the first a JSON object's start.
    token.starts_with("eyJ") && token.len() >= 30 && token.matches('.').count() == 2
}

/// `text` with credential-shaped strings masked (and, for `strict`, e-mail addresses and
/// card-number-like digit runs too).
pub fn mask(text: &str, strict: bool) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    let mut bearer_next = false;
    while i < bytes.len() {
        if let Some(end) = private_key_end(text, i) {
            let o = out.get_or_insert_with(String::new);
            o.push_str(&text[copied..i]);
            o.push_str(MASK);
            copied = end;
            i = end;
            continue;
        }
        if !(token_byte(bytes[i]) || strict && bytes[i] == b'@') {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (token_byte(bytes[i]) || (strict && bytes[i] == b'@')) {
            i += 1;
        }
        let token = &text[start..i];
        let secret = is_credential(token)
            || (bearer_next && token.len() >= 8)
            || (strict && (is_email(token) || is_card_number(token)));
        bearer_next = token.eq_ignore_ascii_case("bearer") || token.eq_ignore_ascii_case("token");
        if secret {
            let o = out.get_or_insert_with(String::new);
            o.push_str(&text[copied..start]);
            o.push_str(MASK);
            copied = i;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

/// Where a PEM private-key block starting at `at` ends (after its END line), if one does.
fn private_key_end(text: &str, at: usize) -> Option<usize> {
    let rest = text.get(at..)?;
    if !rest.starts_with("-----BEGIN ") {
        return None;
    }
    let line_end = rest.find('\n').unwrap_or(rest.len());
    if !rest[..line_end].contains("PRIVATE KEY-----") {
        return None;
    }
    let end = rest.find("-----END ")?;
    let tail = &rest[end..];
    let close = tail[9..].find("-----").map_or(tail.len(), |n| n + 9 + 5);
    Some(at + end + close)
}

fn is_email(token: &str) -> bool {
    let Some((user, domain)) = token.split_once('@') else {
        return false;
    };
    !user.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.contains('@')
}

fn is_card_number(token: &str) -> bool {
    (13..=19).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_digit())
}

/// Query parameter names whose values are credentials.
const SECRET_PARAMS: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "api-key",
    "token",
    "access_token",
    "auth",
    "signature",
    "sig",
    "password",
    "secret",
    "client_secret",
];

/// A request target (path and query) with the values of key-like query parameters, and any
/// credential-shaped part of the path, masked.
pub fn target(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut out = mask(path, false).into_owned();
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => {
                    format!("{name}={MASK}")
                }
                _ => mask(pair, false).into_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_key_shapes_are_masked() {
        let keys = [
            "sk-proj-4fJ8kQ2mZ7xYv1LbN3cR9tWsA0eHgUiO5pDqEr6TyKz",
            "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIjKlMnOp-QAAA",
            "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "AKIAIOSFODNN7EXAMPLE",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123",
        ];
        for key in keys {
            let text = format!("use \"{key}\" please");
            let masked = mask(&text, false);
            assert_eq!(masked, format!("use \"{MASK}\" please"), "{key}");
        }
        assert_eq!(
            mask("Authorization: Bearer abcdefgh12345678", false),
            format!("Authorization: Bearer {MASK}")
        );
        let pem = "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\nb";
        assert_eq!(mask(pem, false), format!("a\n{MASK}\nb"));
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "sk-short",
            "a task-list with skis",
            "the year 2024 and 4111",
            "alice@example.com",
        ] {
            assert!(matches!(mask(text, false), Cow::Borrowed(_)), "{text}");
        }
        assert_eq!(
            mask("mail alice@example.com card 4111111111111111", true),
            format!("mail {MASK} card {MASK}")
        );
    }

    #[test]
    fn query_keys_are_masked() {
        assert_eq!(
            target("/v1beta/models/gemini-pro:generateContent?key=AIzaXYZ&alt=sse"),
            format!("/v1beta/models/gemini-pro:generateContent?key={MASK}&alt=sse")
        );
    }

    #[test]
    fn digests_are_sha256() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
