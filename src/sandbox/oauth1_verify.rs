//! An independent RFC 5849 (OAuth 1.0a) HMAC-SHA1 signature verifier, for test fakes.
//!
//! A fake X/Twitter server uses this to check the `Authorization: OAuth ...` header that
//! the bot's client sends. It is written apart from the client's signing code on purpose,
//! straight from the RFC text, so that a mistake in the client (wrong encoding, wrong
//! sort order, a body parameter left out) shows up as a rejected request instead of being
//! mirrored by a verifier that shares the same assumptions. It depends on nothing but
//! `hmac`, `sha1`, `base64` and `percent-encoding`, and it is pinned to published vectors
//! (RFC 5849 sections 1.2 and 3.4.1.1, and X's "Creating a signature" guide) by its tests.
//!
//! What is checked (RFC 5849 section 3.2, for header-transmitted protocol parameters):
//! * the `OAuth` Authorization header is present and well-formed (section 3.5.1);
//! * the signature method is `HMAC-SHA1`; consumer key, signature, timestamp and nonce are
//!   present; `oauth_version`, if present, is `1.0`; the timestamp is a positive integer;
//! * the consumer key and the token (if any) are known to the caller;
//! * the signature matches the one recomputed over the query string, the protocol
//!   parameters (minus `oauth_signature` and `realm`) and, for an
//!   `application/x-www-form-urlencoded` body, the body parameters (section 3.4.1.3),
//!   compared in constant time.
//!
//! Replay protection is left to the caller: the nonce and timestamp are returned in
//! [`Verified::params`] (see [`Verified::nonce`] and [`Verified::timestamp`]).
//!
//! Protocol parameters are accepted only in the Authorization header: an `oauth_*`
//! parameter in the query string or the form body is rejected, and so is a duplicated one.

// Included as a test-support module, not every test binary uses every helper.
#![allow(dead_code)]

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// RFC 5849 section 3.6: everything except the unreserved set ALPHA, DIGIT, `-`, `.`, `_`,
/// `~` is encoded (non-ASCII bytes always are, as UTF-8 octets).
const RFC5849_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// One request as the fake server received it.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// The HTTP method, e.g. `"GET"` or `"POST"`.
    pub method: &'a str,
    /// The full URL as the server reconstructs it, `scheme://host:port/path?query`, the
    /// query raw as received (its parameters are signed too).
    pub url: &'a str,
    /// The raw `Authorization` header value (`OAuth oauth_consumer_key="...", ...`).
    pub authorization: Option<&'a str>,
    /// The raw `Content-Type` header value.
    pub content_type: Option<&'a str>,
    /// The body. It is signed only when the content type is
    /// `application/x-www-form-urlencoded`.
    pub body: &'a [u8],
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub consumer_key: String,
    /// `None` when the request carried no (or an empty) `oauth_token`.
    pub token: Option<String>,
    /// Every `oauth_*` parameter of the Authorization header, decoded, in header order
    /// (`oauth_signature` included, `realm` not).
    pub params: Vec<(String, String)>,
}

impl Verified {
    /// The decoded value of one `oauth_*` header parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `oauth_nonce`, always present on a verified request.
    pub fn nonce(&self) -> &str {
        self.param("oauth_nonce").unwrap_or_default()
    }

    /// `oauth_timestamp`, always present on a verified request.
    pub fn timestamp(&self) -> &str {
        self.param("oauth_timestamp").unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// No Authorization header.
    MissingHeader,
    /// The Authorization header is not a well-formed `OAuth` header, or a protocol
    /// parameter in it has an invalid value.
    BadHeader(String),
    /// `oauth_signature_method` is not `HMAC-SHA1`.
    UnsupportedMethod(String),
    /// The signature does not match (or is not base64).
    BadSignature,
    /// A required protocol parameter is missing from the header.
    MissingParam(&'static str),
    /// The consumer-secret lookup returned `None` for this key.
    UnknownConsumer(String),
    /// The token-secret lookup returned `None` for this token.
    UnknownToken(String),
    /// An `oauth_*` parameter was found in the query string or the form body.
    ProtocolParamOutsideHeader(String),
    /// A parameter did not decode to UTF-8.
    BadEncoding(String),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::MissingHeader => write!(f, "missing Authorization header"),
            VerifyError::BadHeader(why) => write!(f, "bad OAuth Authorization header: {why}"),
            VerifyError::UnsupportedMethod(m) => write!(f, "unsupported signature method {m:?}"),
            VerifyError::BadSignature => write!(f, "signature does not match"),
            VerifyError::MissingParam(p) => write!(f, "missing OAuth parameter {p}"),
            VerifyError::UnknownConsumer(k) => write!(f, "unknown consumer key {k:?}"),
            VerifyError::UnknownToken(t) => write!(f, "unknown token {t:?}"),
            VerifyError::ProtocolParamOutsideHeader(p) => {
                write!(f, "OAuth parameter {p:?} outside the Authorization header")
            }
            VerifyError::BadEncoding(why) => write!(f, "bad parameter encoding: {why}"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Verifies an HMAC-SHA1 signed request.
///
/// `consumer_secret` returns the consumer secret for a consumer key, `token_secret` the
/// token secret for a token; both return `None` when the key or token is unknown.
pub fn verify(
    req: &SignedRequest,
    consumer_secret: impl Fn(&str) -> Option<String>,
    token_secret: impl Fn(&str) -> Option<String>,
) -> Result<Verified, VerifyError> {
    let collected = collect(req)?;

    let consumer_secret = consumer_secret(&collected.consumer_key)
        .ok_or_else(|| VerifyError::UnknownConsumer(collected.consumer_key.clone()))?;
    let token_secret = match &collected.token {
        Some(token) => {
            token_secret(token).ok_or_else(|| VerifyError::UnknownToken(token.clone()))?
        }
        // Section 3.4.2: the token secret is the empty string when there is no token.
        None => String::new(),
    };

    // Constant-time comparison of the raw digests (`verify_slice` does not exit early).
    let provided = BASE64
        .decode(collected.signature.as_bytes())
        .map_err(|_| VerifyError::BadSignature)?;
    let mut mac = new_mac(&consumer_secret, &token_secret);
    mac.update(collected.base_string.as_bytes());
    mac.verify_slice(&provided)
        .map_err(|_| VerifyError::BadSignature)?;

    Ok(Verified {
        consumer_key: collected.consumer_key,
        token: collected.token,
        params: collected.protocol,
    })
}

/// The signature base string the verifier computes for `req`, without checking anything
/// that needs secrets. Handy for a fake to log next to a [`VerifyError::BadSignature`],
/// to diff against the client's own base string.
pub fn request_base_string(req: &SignedRequest) -> Result<String, VerifyError> {
    collect(req).map(|c| c.base_string)
}

/// Parses an `OAuth` Authorization header (RFC 5849 section 3.5.1) into decoded
/// name/value pairs, in header order, `realm` included.
///
/// The scheme is matched case-insensitively; each parameter must be `name="value"`, with
/// optional whitespace around `=` and `,`. Names and values are percent-decoded (section
/// 3.6; a `+` stays a `+`). A repeated name is an error.
pub fn parse_authorization_header(h: &str) -> Result<Vec<(String, String)>, VerifyError> {
    let bad = |why: String| VerifyError::BadHeader(why);
    let h = h.trim_start();
    let scheme_end = h.find(char::is_whitespace).unwrap_or(h.len());
    let (scheme, mut rest) = h.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("OAuth") {
        return Err(bad(format!("scheme is {scheme:?}, not OAuth")));
    }

    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| bad(format!("expected name=\"value\" at {rest:?}")))?;
        let raw_name = rest[..eq].trim_end();
        if raw_name.is_empty()
            || raw_name
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '"' | ',' | '='))
        {
            return Err(bad(format!("invalid parameter name {raw_name:?}")));
        }
        rest = rest[eq + 1..].trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| bad(format!("value of {raw_name} is not quoted")))?;
        let close = rest
            .find('"')
            .ok_or_else(|| bad(format!("value of {raw_name} has no closing quote")))?;
        let raw_value = &rest[..close];
        rest = rest[close + 1..].trim_start();
        if !rest.is_empty() {
            rest = rest
                .strip_prefix(',')
                .ok_or_else(|| bad(format!("expected ',' after {raw_name}, found {rest:?}")))?;
        }

        let name = decode_utf8(percent_decode(raw_name.as_bytes()).collect(), "header name")?;
        let value = decode_utf8(percent_decode(raw_value.as_bytes()).collect(), &name)?;
        if params.iter().any(|(n, _)| *n == name) {
            return Err(bad(format!("parameter {name} appears more than once")));
        }
        params.push((name, value));
    }
    Ok(params)
}

/// RFC 5849 section 3.4.1.1: `METHOD&encoded(base string URI)&encoded(normalized params)`.
///
/// `params` are the decoded request parameters (query, protocol parameters without
/// `oauth_signature` and `realm`, form body); they are normalized here (section
/// 3.4.1.3.2). The method is upper-cased and encoded; the URL goes through
/// [`base_string_uri`].
pub fn signature_base_string(method: &str, url: &str, params: &[(String, String)]) -> String {
    format!(
        "{}&{}&{}",
        percent_encode(&method.to_ascii_uppercase()),
        percent_encode(&base_string_uri(url)),
        percent_encode(&normalize_parameters(params)),
    )
}

/// RFC 5849 section 3.4.1.3.2: encode every name and value, sort by encoded name and then
/// by encoded value (ascending byte order), join each pair with `=` and the pairs with `&`.
///
/// The sort is on the (name, value) pair, not on the joined `name=value` text, which would
/// order `a-b=1` before `a=2`.
pub fn normalize_parameters(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(name, value)| (percent_encode(name), percent_encode(value)))
        .collect();
    // `str` ordering is byte-wise lexicographic, which is what the RFC asks for.
    encoded.sort();
    encoded
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 5849 section 3.4.1.2: scheme and host lower-cased, the port kept unless it is the
/// scheme's default (80 for http, 443 for https), the path kept as it is (an empty path
/// becomes `/`), no userinfo, query or fragment.
pub fn base_string_uri(url: &str) -> String {
    let url = url.split('#').next().unwrap_or_default();
    let url = url.split('?').next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = split_host_port(authority);
    let host = host.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    };
    match port {
        Some(port) if !port.is_empty() && Some(port) != default_port => {
            format!("{scheme}://{host}:{port}{path}")
        }
        _ => format!("{scheme}://{host}{path}"),
    }
}

/// RFC 5849 section 3.4.2: base64 of HMAC-SHA1 over `base`, keyed with
/// `encoded(consumer_secret)&encoded(token_secret)` (the `&` is there even when the token
/// secret is empty).
pub fn hmac_sha1_sign(base: &str, consumer_secret: &str, token_secret: &str) -> String {
    let mut mac = new_mac(consumer_secret, token_secret);
    mac.update(base.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// RFC 5849 section 3.6: the unreserved characters ALPHA, DIGIT, `-`, `.`, `_`, `~` are
/// kept, every other UTF-8 octet becomes `%XX` with upper-case hex (a space is `%20`,
/// never `+`).
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, RFC5849_ENCODE_SET).to_string()
}

/// What [`verify`] needs from the request before it looks up any secret.
struct Collected {
    consumer_key: String,
    token: Option<String>,
    signature: String,
    /// The header's `oauth_*` parameters, in header order.
    protocol: Vec<(String, String)>,
    base_string: String,
}

fn collect(req: &SignedRequest) -> Result<Collected, VerifyError> {
    let header = req.authorization.ok_or(VerifyError::MissingHeader)?;
    let mut protocol = Vec::new();
    for (name, value) in parse_authorization_header(header)? {
        if name == "realm" {
            continue;
        }
        if !name.starts_with("oauth_") {
            return Err(VerifyError::BadHeader(format!(
                "unexpected parameter {name:?} in the Authorization header"
            )));
        }
        protocol.push((name, value));
    }
    let get = |name: &str| {
        protocol
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };

    let method =
        get("oauth_signature_method").ok_or(VerifyError::MissingParam("oauth_signature_method"))?;
    if method != "HMAC-SHA1" {
        return Err(VerifyError::UnsupportedMethod(method));
    }
    let consumer_key =
        get("oauth_consumer_key").ok_or(VerifyError::MissingParam("oauth_consumer_key"))?;
    let signature = get("oauth_signature").ok_or(VerifyError::MissingParam("oauth_signature"))?;
    let timestamp = get("oauth_timestamp").ok_or(VerifyError::MissingParam("oauth_timestamp"))?;
    let nonce = get("oauth_nonce").ok_or(VerifyError::MissingParam("oauth_nonce"))?;
    if timestamp.is_empty()
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
        || timestamp.bytes().all(|b| b == b'0')
    {
        return Err(VerifyError::BadHeader(format!(
            "oauth_timestamp {timestamp:?} is not a positive integer"
        )));
    }
    if nonce.is_empty() {
        return Err(VerifyError::BadHeader("oauth_nonce is empty".to_string()));
    }
    if let Some(version) = get("oauth_version") {
        if version != "1.0" {
            return Err(VerifyError::BadHeader(format!(
                "oauth_version is {version:?}, not \"1.0\""
            )));
        }
    }
    let token = get("oauth_token").filter(|t| !t.is_empty());

    // Section 3.4.1.3.1: query, protocol parameters (minus the signature), form body.
    let query = req
        .url
        .split('#')
        .next()
        .and_then(|u| u.split_once('?'))
        .map(|(_, q)| q)
        .unwrap_or_default();
    let mut params = parse_form(query.as_bytes(), "query")?;
    if is_form_urlencoded(req.content_type) {
        params.extend(parse_form(req.body, "body")?);
    }
    if let Some((name, _)) = params.iter().find(|(n, _)| n.starts_with("oauth_")) {
        return Err(VerifyError::ProtocolParamOutsideHeader(name.clone()));
    }
    params.extend(
        protocol
            .iter()
            .filter(|(n, _)| n != "oauth_signature")
            .cloned(),
    );
    let base_string = signature_base_string(req.method, req.url, &params);

    Ok(Collected {
        consumer_key,
        token,
        signature,
        protocol,
        base_string,
    })
}

/// `application/x-www-form-urlencoded`, compared case-insensitively, with any media-type
/// parameters (`; charset=UTF-8`) ignored.
fn is_form_urlencoded(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE))
}

/// Parses `application/x-www-form-urlencoded` text (HTML 4.01 section 17.13.4): pairs split
/// on `&`, a pair without `=` has an empty value, `+` is a space, then percent-decoding.
fn parse_form(input: &[u8], source: &str) -> Result<Vec<(String, String)>, VerifyError> {
    let mut out = Vec::new();
    for pair in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        out.push((form_decode(name, source)?, form_decode(value, source)?));
    }
    Ok(out)
}

fn form_decode(raw: &[u8], source: &str) -> Result<String, VerifyError> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    decode_utf8(percent_decode(&plus_as_space).collect(), source)
}

fn decode_utf8(bytes: Vec<u8>, what: &str) -> Result<String, VerifyError> {
    String::from_utf8(bytes).map_err(|e| {
        VerifyError::BadEncoding(format!(
            "{what}: {:?} is not UTF-8",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })
}

fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        // IPv6 literal: `[::1]:8080`.
        return match authority.find(']') {
            Some(end) => {
                let (host, rest) = authority.split_at(end + 1);
                (host, rest.strip_prefix(':'))
            }
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

fn new_mac(consumer_secret: &str, token_secret: &str) -> HmacSha1 {
    let key = format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    );
    HmacSha1::new_from_slice(key.as_bytes()).expect("HMAC-SHA1 takes a key of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Builds a header the way a client would: `OAuth name="encoded value", ...`.
    fn header(pairs: &[(&str, &str)]) -> String {
        let parts: Vec<String> = pairs
            .iter()
            .map(|(n, v)| format!("{}=\"{}\"", percent_encode(n), percent_encode(v)))
            .collect();
        format!("OAuth {}", parts.join(", "))
    }

    fn secrets<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, s)| s.to_string())
        }
    }

    // ---- RFC 5849 section 3.4.1.1 (and 3.1, 3.4.1.3) -------------------------------------

    const RFC_3_URL: &str = "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b";
    const RFC_3_BODY: &[u8] = b"c2&a3=2+q";
    /// The header as printed in section 3.4.1.1, line breaks and all.
    const RFC_3_HEADER: &str = "OAuth realm=\"Example\",
                    oauth_consumer_key=\"9djdj82h48djs9d2\",
                    oauth_token=\"kkk9d7dh3k39sjv7\",
                    oauth_signature_method=\"HMAC-SHA1\",
                    oauth_timestamp=\"137131201\",
                    oauth_nonce=\"7d8f3e4a\",
                    oauth_signature=\"bYT5CMsGcbgUdFHObYMEfcx6bsw%3D\"";
    /// Section 3.4.1.1, joined from the lines the RFC breaks "for display purposes only".
    const RFC_3_BASE: &str = concat!(
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q",
        "%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_",
        "key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m",
        "ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk",
        "9d7dh3k39sjv7",
    );
    /// Section 3.1 gives these secrets for the same request.
    const RFC_3_SECRETS: (&str, &str) = ("j49sk3j29djd", "dh893hdasih9");

    fn rfc_3_request(authorization: &str) -> SignedRequest<'_> {
        SignedRequest {
            method: "POST",
            url: RFC_3_URL,
            authorization: Some(authorization),
            content_type: Some("application/x-www-form-urlencoded"),
            body: RFC_3_BODY,
        }
    }

    #[test]
    fn rfc5849_3_4_1_1_base_string() {
        let base = request_base_string(&rfc_3_request(RFC_3_HEADER)).unwrap();
        assert_eq!(base, RFC_3_BASE);
    }

    #[test]
    fn rfc5849_3_4_1_3_decoded_parameters_and_normalization() {
        // Section 3.4.1.3.1's table of fully decoded parameters (note b5 is "=%3D", not
        // "==", and a3 occurs twice, once with a '+' decoded to a space).
        let params = owned(&[
            ("b5", "=%3D"),
            ("a3", "a"),
            ("c@", ""),
            ("a2", "r b"),
            ("oauth_consumer_key", "9djdj82h48djs9d2"),
            ("oauth_token", "kkk9d7dh3k39sjv7"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131201"),
            ("oauth_nonce", "7d8f3e4a"),
            ("c2", ""),
            ("a3", "2 q"),
        ]);
        let query = parse_form(b"b5=%3D%253D&a3=a&c%40=&a2=r%20b", "query").unwrap();
        assert_eq!(query, params[..4].to_vec());
        assert_eq!(
            parse_form(RFC_3_BODY, "body").unwrap(),
            params[9..].to_vec()
        );

        // Section 3.4.1.3.2's concatenated string.
        assert_eq!(
            normalize_parameters(&params),
            concat!(
                "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9dj",
                "dj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1",
                "&oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7",
            )
        );
        assert_eq!(
            signature_base_string("POST", "http://example.com/request", &params),
            RFC_3_BASE
        );
    }

    /// The signature the RFC prints for this request, bYT5CMsGcbgUdFHObYMEfcx6bsw=, is not
    /// the HMAC-SHA1 of its own base string under the section 3.1 secrets; that is
    /// r6/TJjbCOr97/+UU0NsvSne7s5g= (also what `openssl dgst -sha1 -hmac` gives).
    #[test]
    fn rfc5849_3_4_1_1_printed_signature_is_not_the_real_one() {
        let (cs, ts) = RFC_3_SECRETS;
        assert_eq!(
            hmac_sha1_sign(RFC_3_BASE, cs, ts),
            "r6/TJjbCOr97/+UU0NsvSne7s5g="
        );

        let consumers = [("9djdj82h48djs9d2", cs)];
        let tokens = [("kkk9d7dh3k39sjv7", ts)];
        assert_eq!(
            verify(
                &rfc_3_request(RFC_3_HEADER),
                secrets(&consumers),
                secrets(&tokens)
            ),
            Err(VerifyError::BadSignature)
        );

        let fixed = RFC_3_HEADER.replace(
            "bYT5CMsGcbgUdFHObYMEfcx6bsw%3D",
            "r6%2FTJjbCOr97%2F%2BUU0NsvSne7s5g%3D",
        );
        let verified = verify(
            &rfc_3_request(&fixed),
            secrets(&consumers),
            secrets(&tokens),
        )
        .expect("the recomputed signature verifies");
        assert_eq!(verified.consumer_key, "9djdj82h48djs9d2");
        assert_eq!(verified.token.as_deref(), Some("kkk9d7dh3k39sjv7"));
        assert_eq!(verified.nonce(), "7d8f3e4a");
        assert_eq!(verified.timestamp(), "137131201");
        assert_eq!(
            verified.param("oauth_signature"),
            Some("r6/TJjbCOr97/+UU0NsvSne7s5g=")
        );
        assert_eq!(verified.param("realm"), None);
    }

    // ---- RFC 5849 section 1.2 --------------------------------------------------------------

    const PHOTOS_URL: &str = "http://photos.example.net/photos?file=vacation.jpg&size=original";
    /// As printed in section 1.2.
    const PHOTOS_HEADER: &str = "OAuth realm=\"Photos\",
        oauth_consumer_key=\"dpf43f3p2l4k3l03\",
        oauth_token=\"nnch734d00sl2jdk\",
        oauth_signature_method=\"HMAC-SHA1\",
        oauth_timestamp=\"137131202\",
        oauth_nonce=\"chapoH\",
        oauth_signature=\"MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D\"";
    const PHOTOS_CONSUMERS: [(&str, &str); 1] = [("dpf43f3p2l4k3l03", "kd94hf93k423kf44")];
    const PHOTOS_TOKENS: [(&str, &str); 1] = [("nnch734d00sl2jdk", "pfkkdhi9sl3r4s00")];

    fn photos_request<'a>(url: &'a str, authorization: Option<&'a str>) -> SignedRequest<'a> {
        SignedRequest {
            method: "GET",
            url,
            authorization,
            content_type: None,
            body: b"",
        }
    }

    fn verify_photos(req: &SignedRequest) -> Result<Verified, VerifyError> {
        verify(req, secrets(&PHOTOS_CONSUMERS), secrets(&PHOTOS_TOKENS))
    }

    #[test]
    fn rfc5849_1_2_photos_request_verifies() {
        let req = photos_request(PHOTOS_URL, Some(PHOTOS_HEADER));
        let base = request_base_string(&req).unwrap();
        assert_eq!(
            base,
            concat!(
                "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg",
                "%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH",
                "%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202",
                "%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal",
            )
        );
        assert_eq!(
            hmac_sha1_sign(&base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00"),
            "MdpQcU8iPSUjWoN/UDMsK2sui9I="
        );

        let verified = verify_photos(&req).expect("RFC 5849 section 1.2 request verifies");
        assert_eq!(verified.consumer_key, "dpf43f3p2l4k3l03");
        assert_eq!(verified.token.as_deref(), Some("nnch734d00sl2jdk"));
        assert_eq!(verified.nonce(), "chapoH");
        assert_eq!(verified.timestamp(), "137131202");
        assert_eq!(
            verified.params,
            owned(&[
                ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
                ("oauth_token", "nnch734d00sl2jdk"),
                ("oauth_signature_method", "HMAC-SHA1"),
                ("oauth_timestamp", "137131202"),
                ("oauth_nonce", "chapoH"),
                ("oauth_signature", "MdpQcU8iPSUjWoN/UDMsK2sui9I="),
            ])
        );
    }

    /// "MdpQcU8iPSUjWoN5UDK7W+pGeGg=" circulates as the section 1.2 signature but is not
    /// what the RFC prints (MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D) and does not verify.
    #[test]
    fn rfc5849_1_2_misquoted_signature_is_rejected() {
        let header = PHOTOS_HEADER.replace(
            "MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D",
            "MdpQcU8iPSUjWoN5UDK7W%2BpGeGg%3D",
        );
        assert_eq!(
            verify_photos(&photos_request(PHOTOS_URL, Some(&header))),
            Err(VerifyError::BadSignature)
        );
    }

    // ---- X's "Creating a signature" guide ---------------------------------------------------

    const X_URL: &str = "https://api.twitter.com/1.1/statuses/update.json?include_entities=true";
    const X_BODY: &[u8] =
        b"status=Hello%20Ladies%20%2b%20Gentlemen%2c%20a%20signed%20OAuth%20request%21";
    const X_CONSUMERS: [(&str, &str); 1] = [(
        "xvz1evFS4wEEPTGEFPHBog",
        "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
    )];
    const X_TOKENS: [(&str, &str); 1] = [(
        "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
    )];
    const X_BASE: &str = concat!(
        "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities",
        "%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%3DkYjzVBB8Y0ZFab",
        "xSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp",
        "%3D1318622958%26oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26",
        "oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a",
        "%2520signed%2520OAuth%2520request%2521",
    );

    fn x_header(signature: &str) -> String {
        header(&[
            ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
            ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
            ("oauth_signature", signature),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1318622958"),
            (
                "oauth_token",
                "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
            ),
            ("oauth_version", "1.0"),
        ])
    }

    fn x_request<'a>(authorization: &'a str, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest {
            method: "POST",
            url: X_URL,
            authorization: Some(authorization),
            content_type: Some("application/x-www-form-urlencoded"),
            body,
        }
    }

    #[test]
    fn x_creating_a_signature_guide_verifies() {
        let authorization = x_header("hCtSmYh+iHYCEqBWrE7C7hYmtUk=");
        assert!(authorization.contains("oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\""));
        let req = x_request(&authorization, X_BODY);
        assert_eq!(request_base_string(&req).unwrap(), X_BASE);
        assert_eq!(
            hmac_sha1_sign(X_BASE, X_CONSUMERS[0].1, X_TOKENS[0].1),
            "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
        );

        let verified = verify(&req, secrets(&X_CONSUMERS), secrets(&X_TOKENS))
            .expect("X's published example verifies");
        assert_eq!(verified.consumer_key, "xvz1evFS4wEEPTGEFPHBog");
        assert_eq!(
            verified.token.as_deref(),
            Some("370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb")
        );
        assert_eq!(verified.param("oauth_version"), Some("1.0"));

        // A changed form body is covered by the signature.
        let tampered = x_request(
            &authorization,
            b"status=Hello%20Ladies%20%2b%20Gentlemen%2c%20a%20signed%20OAuth%20request%3F",
        );
        assert_eq!(
            verify(&tampered, secrets(&X_CONSUMERS), secrets(&X_TOKENS)),
            Err(VerifyError::BadSignature)
        );
    }

    /// The guide's older version signed `/1/statuses/update.json`, which gives
    /// tnnArxj06cWHq44gCs1OSKk/jLY=; copies of that value still float around next to the
    /// `/1.1/` URL, where it does not verify.
    #[test]
    fn x_guide_old_api_version_value_belongs_to_the_1_0_url() {
        let old_base = X_BASE.replace("%2F1.1%2F", "%2F1%2F");
        assert_eq!(
            hmac_sha1_sign(&old_base, X_CONSUMERS[0].1, X_TOKENS[0].1),
            "tnnArxj06cWHq44gCs1OSKk/jLY="
        );
        let authorization = x_header("tnnArxj06cWHq44gCs1OSKk/jLY=");
        assert_eq!(
            verify(
                &x_request(&authorization, X_BODY),
                secrets(&X_CONSUMERS),
                secrets(&X_TOKENS)
            ),
            Err(VerifyError::BadSignature)
        );
    }

    // ---- Rejections --------------------------------------------------------------------------

    #[test]
    fn tampered_query_value_is_rejected() {
        let url = "http://photos.example.net/photos?file=vacation.jpg&size=large";
        assert_eq!(
            verify_photos(&photos_request(url, Some(PHOTOS_HEADER))),
            Err(VerifyError::BadSignature)
        );
        let url = "http://photos.example.net/photos?file=vacation.jpg";
        assert_eq!(
            verify_photos(&photos_request(url, Some(PHOTOS_HEADER))),
            Err(VerifyError::BadSignature)
        );
        let url = "http://photos.example.net/photos?file=vacation.jpg&size=original&x=1";
        assert_eq!(
            verify_photos(&photos_request(url, Some(PHOTOS_HEADER))),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn tampered_host_port_or_method_is_rejected() {
        for url in [
            "https://photos.example.net/photos?file=vacation.jpg&size=original",
            "http://photos.example.net:8080/photos?file=vacation.jpg&size=original",
            "http://photos.example.net/photo?file=vacation.jpg&size=original",
        ] {
            assert_eq!(
                verify_photos(&photos_request(url, Some(PHOTOS_HEADER))),
                Err(VerifyError::BadSignature),
                "{url}"
            );
        }
        let mut req = photos_request(PHOTOS_URL, Some(PHOTOS_HEADER));
        req.method = "POST";
        assert_eq!(verify_photos(&req), Err(VerifyError::BadSignature));
        // Default port, upper-case host and a fragment do not change the base string URI.
        let url = "HTTP://Photos.Example.NET:80/photos?file=vacation.jpg&size=original#x";
        assert!(verify_photos(&photos_request(url, Some(PHOTOS_HEADER))).is_ok());
    }

    #[test]
    fn wrong_consumer_secret_is_rejected() {
        let req = photos_request(PHOTOS_URL, Some(PHOTOS_HEADER));
        let consumers = [("dpf43f3p2l4k3l03", "kd94hf93k423kf45")];
        assert_eq!(
            verify(&req, secrets(&consumers), secrets(&PHOTOS_TOKENS)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn wrong_token_secret_is_rejected() {
        let req = photos_request(PHOTOS_URL, Some(PHOTOS_HEADER));
        let tokens = [("nnch734d00sl2jdk", "pfkkdhi9sl3r4s01")];
        assert_eq!(
            verify(&req, secrets(&PHOTOS_CONSUMERS), secrets(&tokens)),
            Err(VerifyError::BadSignature)
        );
        // Signed without the token secret at all.
        let tokens = [("nnch734d00sl2jdk", "")];
        assert_eq!(
            verify(&req, secrets(&PHOTOS_CONSUMERS), secrets(&tokens)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn unknown_consumer_and_token_are_rejected() {
        let req = photos_request(PHOTOS_URL, Some(PHOTOS_HEADER));
        assert_eq!(
            verify(&req, |_| None, secrets(&PHOTOS_TOKENS)),
            Err(VerifyError::UnknownConsumer("dpf43f3p2l4k3l03".into()))
        );
        assert_eq!(
            verify(&req, secrets(&PHOTOS_CONSUMERS), |_| None),
            Err(VerifyError::UnknownToken("nnch734d00sl2jdk".into()))
        );
    }

    #[test]
    fn missing_header_is_rejected() {
        assert_eq!(
            verify_photos(&photos_request(PHOTOS_URL, None)),
            Err(VerifyError::MissingHeader)
        );
    }

    #[test]
    fn other_signature_methods_are_rejected() {
        // The PLAINTEXT request of RFC 5849 section 2.1.
        let plaintext = "OAuth realm=\"Example\",
            oauth_consumer_key=\"jd83jd92dhsh93js\",
            oauth_signature_method=\"PLAINTEXT\",
            oauth_callback=\"http%3A%2F%2Fclient.example.net%2Fcb%3Fx%3D1\",
            oauth_signature=\"ja893SD9%26\"";
        let req = SignedRequest {
            method: "POST",
            url: "https://server.example.com/request_temp_credentials",
            authorization: Some(plaintext),
            content_type: None,
            body: b"",
        };
        let any = |_: &str| Some("ja893SD9".to_string());
        assert_eq!(
            verify(&req, any, any),
            Err(VerifyError::UnsupportedMethod("PLAINTEXT".into()))
        );

        let rsa = PHOTOS_HEADER.replace("HMAC-SHA1", "RSA-SHA1");
        assert_eq!(
            verify_photos(&photos_request(PHOTOS_URL, Some(&rsa))),
            Err(VerifyError::UnsupportedMethod("RSA-SHA1".into()))
        );
        // Method names are case sensitive.
        let lower = PHOTOS_HEADER.replace("HMAC-SHA1", "hmac-sha1");
        assert_eq!(
            verify_photos(&photos_request(PHOTOS_URL, Some(&lower))),
            Err(VerifyError::UnsupportedMethod("hmac-sha1".into()))
        );
    }

    #[test]
    fn missing_and_invalid_protocol_parameters_are_rejected() {
        let without = |name: &str| {
            let line = PHOTOS_HEADER
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{name}=")))
                .unwrap();
            PHOTOS_HEADER
                .replace(&format!("{line}\n"), "")
                .replace(&format!(",\n{line}"), "")
        };
        for name in [
            "oauth_signature_method",
            "oauth_consumer_key",
            "oauth_signature",
            "oauth_timestamp",
            "oauth_nonce",
        ] {
            let h = without(name);
            assert!(!h.contains(&format!("{name}=")), "{h}");
            assert_eq!(
                verify_photos(&photos_request(PHOTOS_URL, Some(&h))),
                Err(VerifyError::MissingParam(name))
            );
        }

        let bad = |h: String| verify_photos(&photos_request(PHOTOS_URL, Some(&h)));
        let version = PHOTOS_HEADER.replace("realm=\"Photos\"", "oauth_version=\"2.0\"");
        assert!(matches!(bad(version), Err(VerifyError::BadHeader(_))));
        let timestamp = PHOTOS_HEADER.replace("137131202", "-137131202");
        assert!(matches!(bad(timestamp), Err(VerifyError::BadHeader(_))));
        let nonce = PHOTOS_HEADER.replace("chapoH", "");
        assert!(matches!(bad(nonce), Err(VerifyError::BadHeader(_))));
        let duplicate = PHOTOS_HEADER.replace("realm=\"Photos\"", "oauth_nonce=\"other\"");
        assert!(matches!(bad(duplicate), Err(VerifyError::BadHeader(_))));
        let stranger = PHOTOS_HEADER.replace("realm=\"Photos\"", "file=\"vacation.jpg\"");
        assert!(matches!(bad(stranger), Err(VerifyError::BadHeader(_))));
        let bearer = "Bearer AAAA".to_string();
        assert!(matches!(bad(bearer), Err(VerifyError::BadHeader(_))));
        let not_base64 = PHOTOS_HEADER.replace("MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D", "%21%21");
        assert_eq!(bad(not_base64), Err(VerifyError::BadSignature));
    }

    #[test]
    fn protocol_parameters_outside_the_header_are_rejected() {
        let url = format!("{PHOTOS_URL}&oauth_nonce=chapoH");
        assert_eq!(
            verify_photos(&photos_request(&url, Some(PHOTOS_HEADER))),
            Err(VerifyError::ProtocolParamOutsideHeader(
                "oauth_nonce".into()
            ))
        );
        let mut req = photos_request(PHOTOS_URL, Some(PHOTOS_HEADER));
        req.content_type = Some("application/x-www-form-urlencoded");
        req.body = b"oauth_token=x";
        assert_eq!(
            verify_photos(&req),
            Err(VerifyError::ProtocolParamOutsideHeader(
                "oauth_token".into()
            ))
        );
    }

    #[test]
    fn non_utf8_parameters_are_rejected() {
        let url = format!("{PHOTOS_URL}&x=%FF");
        assert!(matches!(
            verify_photos(&photos_request(&url, Some(PHOTOS_HEADER))),
            Err(VerifyError::BadEncoding(_))
        ));
    }

    #[test]
    fn body_is_signed_only_when_form_encoded() {
        // The photos request with a JSON body still verifies: the body is not signed.
        let mut req = photos_request(PHOTOS_URL, Some(PHOTOS_HEADER));
        req.content_type = Some("application/json");
        req.body = br#"{"text":"a=b&c=d"}"#;
        assert!(verify_photos(&req).is_ok());
        req.content_type = None;
        req.body = b"a=b";
        assert!(verify_photos(&req).is_ok());
        // The same bytes, declared as a form, are signed and so break the signature.
        req.content_type = Some("Application/X-WWW-Form-URLEncoded; charset=UTF-8");
        assert_eq!(verify_photos(&req), Err(VerifyError::BadSignature));
        // An empty form body adds nothing.
        req.body = b"";
        assert!(verify_photos(&req).is_ok());
    }

    // ---- Hand-computed vectors ----------------------------------------------------------------

    /// Repeated names are ordered by their ENCODED value ("%C3%A9" < "Z", although the
    /// decoded "é" sorts after "Z"), and a name needing encoding is encoded.
    #[test]
    fn repeated_names_sort_by_encoded_value_and_names_are_encoded() {
        let url = "http://example.com/search?q=Z&q=%C3%A9&user[name]=x";
        let authorization = |signature: &str| {
            header(&[
                ("oauth_consumer_key", "ck"),
                ("oauth_nonce", "n"),
                ("oauth_signature", signature),
                ("oauth_signature_method", "HMAC-SHA1"),
                ("oauth_timestamp", "1"),
                ("oauth_token", "tk"),
                ("oauth_version", "1.0"),
            ])
        };
        let expected_base = concat!(
            "GET&http%3A%2F%2Fexample.com%2Fsearch&",
            "oauth_consumer_key%3Dck%26oauth_nonce%3Dn%26oauth_signature_method%3DHMAC-SHA1",
            "%26oauth_timestamp%3D1%26oauth_token%3Dtk%26oauth_version%3D1.0",
            "%26q%3D%25C3%25A9%26q%3DZ%26user%255Bname%255D%3Dx",
        );
        let unsigned = authorization("AAAA");
        let req = SignedRequest {
            method: "get",
            url,
            authorization: Some(&unsigned),
            content_type: None,
            body: b"",
        };
        assert_eq!(request_base_string(&req).unwrap(), expected_base);

        // The same parameters, with the brackets already encoded in the URL.
        let encoded_url = "http://example.com/search?q=Z&q=%C3%A9&user%5Bname%5D=x";
        let req2 = SignedRequest {
            url: encoded_url,
            ..req
        };
        assert_eq!(request_base_string(&req2).unwrap(), expected_base);

        // Signing the hand-computed base string gives a header that verifies.
        let signed = authorization(&hmac_sha1_sign(expected_base, "c s", "t&s"));
        let req = SignedRequest {
            authorization: Some(&signed),
            ..req
        };
        let consumers = [("ck", "c s")];
        let tokens = [("tk", "t&s")];
        assert!(verify(&req, secrets(&consumers), secrets(&tokens)).is_ok());
        // The order of the query in the URL does not matter, a changed value does.
        let reordered = SignedRequest {
            url: "http://example.com/search?user[name]=x&q=%C3%A9&q=Z",
            ..req
        };
        assert!(verify(&reordered, secrets(&consumers), secrets(&tokens)).is_ok());
        let changed = SignedRequest {
            url: "http://example.com/search?q=Z&q=%C3%A9&user[name]=y",
            ..req
        };
        assert_eq!(
            verify(&changed, secrets(&consumers), secrets(&tokens)),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn parameters_sort_by_name_then_value_not_by_joined_text() {
        let params = owned(&[("a-b", "1"), ("a", "2"), ("a", "10"), ("B", "x")]);
        // 'B' (0x42) < 'a' (0x61); "a" < "a-b" as names; "10" < "2" byte-wise.
        assert_eq!(normalize_parameters(&params), "B=x&a=10&a=2&a-b=1");
    }

    #[test]
    fn percent_encode_follows_section_3_6() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(percent_encode("a b"), "a%20b");
        assert_eq!(
            percent_encode("+*/!'()=&%"),
            "%2B%2A%2F%21%27%28%29%3D%26%25"
        );
        assert_eq!(percent_encode("é☃"), "%C3%A9%E2%98%83");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn base_string_uri_follows_section_3_4_1_2() {
        // The two examples of section 3.4.1.2.
        assert_eq!(
            base_string_uri("http://EXAMPLE.COM:80/r%20v/X?id=123"),
            "http://example.com/r%20v/X"
        );
        assert_eq!(
            base_string_uri("https://www.example.net:8080/?q=1"),
            "https://www.example.net:8080/"
        );
        assert_eq!(
            base_string_uri("HTTPS://Api.X.com:443/2/tweets#frag"),
            "https://api.x.com/2/tweets"
        );
        assert_eq!(
            base_string_uri("https://api.x.com:80/2/tweets"),
            "https://api.x.com:80/2/tweets"
        );
        assert_eq!(
            base_string_uri("http://127.0.0.1:39123/2/tweets?x=1"),
            "http://127.0.0.1:39123/2/tweets"
        );
        assert_eq!(base_string_uri("http://[::1]:8080"), "http://[::1]:8080/");
        assert_eq!(base_string_uri("http://[::1]:80/a"), "http://[::1]/a");
        assert_eq!(
            base_string_uri("http://user:pw@example.com/a"),
            "http://example.com/a"
        );
    }

    #[test]
    fn authorization_header_parsing() {
        assert_eq!(
            parse_authorization_header(PHOTOS_HEADER).unwrap()[..2],
            owned(&[
                ("realm", "Photos"),
                ("oauth_consumer_key", "dpf43f3p2l4k3l03")
            ])[..]
        );
        assert_eq!(
            parse_authorization_header("oauth  a = \"x%20y\" ,b=\"\",c=\"1+2\",").unwrap(),
            owned(&[("a", "x y"), ("b", ""), ("c", "1+2")])
        );
        assert_eq!(parse_authorization_header("OAuth").unwrap(), vec![]);
        assert_eq!(
            parse_authorization_header("OAuth realm=\"a, b\"").unwrap(),
            owned(&[("realm", "a, b")])
        );
        for bad in [
            "Basic dXNlcjpwdw==",
            "OAuthx a=\"1\"",
            "OAuth a=1",
            "OAuth a=\"1",
            "OAuth a=\"1\" b=\"2\"",
            "OAuth =\"1\"",
            "OAuth a=\"1\",,b=\"2\"",
            "OAuth a=\"1\", a=\"2\"",
        ] {
            assert!(
                matches!(
                    parse_authorization_header(bad),
                    Err(VerifyError::BadHeader(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn no_token_means_an_empty_token_secret() {
        let url = "https://api.x.com/oauth/request_token?x_auth_access_type=1";
        let base_params = owned(&[
            ("x_auth_access_type", "1"),
            ("oauth_consumer_key", "ck"),
            ("oauth_nonce", "n1"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1700000000"),
        ]);
        let signature = hmac_sha1_sign(&signature_base_string("POST", url, &base_params), "cs", "");
        let authorization = header(&[
            ("oauth_consumer_key", "ck"),
            ("oauth_nonce", "n1"),
            ("oauth_signature", &signature),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "1700000000"),
        ]);
        let req = SignedRequest {
            method: "POST",
            url,
            authorization: Some(&authorization),
            content_type: None,
            body: b"",
        };
        let consumers = [("ck", "cs")];
        let verified =
            verify(&req, secrets(&consumers), |_| panic!("no token to look up")).unwrap();
        assert_eq!(verified.token, None);
        assert_eq!(verified.nonce(), "n1");
        assert_eq!(verified.timestamp(), "1700000000");
    }
}
