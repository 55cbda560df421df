//! Bearer JWT authentication (RFC 6750, RFC 7519, RFC 8725).
//!
//! Tokens are HS256 only, signed with the `jwt_secret` variable, and
//! verified here in full: the shape, the algorithm (anything but HS256,
//! `none` included, is refused before the key is used), `crit`, the
//! signature (HMAC-SHA256, compared in constant time), `iss`/`aud` when
//! configured, and the time claims against an injected clock so the tests
//! can move time; `exp` and `sub` are required. One algorithm needs no JWT
//! library: `jsonwebtoken` brought RSA and elliptic-curve code (0.35 MB of
//! each order component) for algorithms this service refuses; the tests
//! still sign with it, an independent implementation.

use crate::config::Secret;
use crate::problem::{Problem, ProblemKind};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: i64 = 30;

/// The realm named in `WWW-Authenticate`.
const REALM: &str = "orders-api";

/// What verifying a token needs, from the component's config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// The HS256 key (`jwt_secret`), never logged.
    pub secret: Secret,
    /// The `iss` a token must carry (`jwt_issuer`); `None` accepts any.
    pub issuer: Option<String>,
    /// The `aud` a token must name (`jwt_audience`); `None` accepts any.
    pub audience: Option<String>,
}

/// The authenticated caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`: the user the caller acts as.
    pub user_id: Uuid,
}

/// The claims read here. `exp` and `nbf` are NumericDates: seconds, which
/// RFC 7519 §2 allows to be fractional.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: f64,
    nbf: Option<f64>,
}

/// How a route authenticates its callers ([`authenticate`] for every route
/// that does): the request's headers, the config's key and claims, the time.
pub type Authenticate = fn(&HeaderMap, &AuthConfig, i64) -> Result<Caller, Problem>;

/// Verifies the request's bearer token at time `now` (Unix seconds).
pub fn authenticate(headers: &HeaderMap, config: &AuthConfig, now: i64) -> Result<Caller, Problem> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        // RFC 6750 §3.1: no error code when the request has no credentials.
        return Err(challenge(None, "this route needs Authorization: Bearer <token>"));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty() && !token.contains(' '))
        .ok_or_else(|| {
            challenge(
                Some("invalid_request"),
                "the Authorization header must be `Bearer <token>`",
            )
        })?;

    let claims = verify_hs256(token, config.secret.expose().as_bytes()).map_err(invalid_token)?;
    check_issuer_and_audience(&claims, config).map_err(invalid_token)?;
    let claims: Claims =
        serde_json::from_value(claims).map_err(|_| invalid_token("the token's claims are malformed"))?;
    // In f64, where adding or removing the leeway cannot overflow: a far
    // future `exp` stays in the future, a far past `nbf` in the past.
    let (now, leeway) = (now as f64, LEEWAY_SECONDS as f64);
    if claims.exp + leeway <= now {
        return Err(invalid_token("the token has expired"));
    }
    if claims.nbf.is_some_and(|nbf| nbf - leeway > now) {
        return Err(invalid_token("the token is not valid yet"));
    }
    Ok(Caller {
        user_id: user_id(&claims.sub)?,
    })
}

/// The user a `sub` names, written as a body's `userId` must be: a UUID in
/// its hyphenated form (the only 36-character form; either case). Braced,
/// `urn:uuid:` or unhyphenated spellings of the same UUID are refused, so
/// one user has one spelling in tokens, bodies and logs.
fn user_id(sub: &str) -> Result<Uuid, Problem> {
    Uuid::try_parse(sub)
        .ok()
        .filter(|_| sub.len() == 36)
        .ok_or_else(|| invalid_token("the token's sub is not a user id (a hyphenated UUID)"))
}

/// The claims of a compact JWS (RFC 7515 §7.1) signed with HMAC-SHA256 under
/// `key`, or why it is refused. The header is read first: an algorithm other
/// than HS256 (`none` included) is refused before the key is used (RFC 8725
/// §3.1), and so is a `crit` header parameter, since this service
/// implements no JWS extension (RFC 7515 §4.1.11). The signature is then
/// compared in constant time; only then are the claims parsed.
fn verify_hs256(token: &str, key: &[u8]) -> Result<Value, &'static str> {
    const MALFORMED: &str = "the token is malformed";
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    let header = json_object(header).ok_or(MALFORMED)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err("the token must be signed with HS256");
    }
    if header.get("crit").is_some() {
        return Err("the token names critical header parameters (crit) this service does not support");
    }
    let signature = base64url(signature).ok_or(MALFORMED)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| "the token's signature does not verify")?;
    let claims = json_object(payload).ok_or("the token's claims are malformed")?;
    if claims.get("sub").is_none() || claims.get("exp").is_none() {
        return Err("the token lacks a required claim (sub, exp)");
    }
    Ok(claims)
}

/// Unpadded base64url (RFC 7515 §2), as JWS writes every part.
fn base64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// A JWS part holding a JSON object (the header, the claims).
fn json_object(part: &str) -> Option<Value> {
    base64url(part)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(Value::is_object)
}

/// `iss` must equal the configured issuer and `aud` (a string or an array
/// of strings) name the configured audience; each is required once
/// configured.
fn check_issuer_and_audience(claims: &Value, config: &AuthConfig) -> Result<(), &'static str> {
    if let Some(issuer) = &config.issuer {
        match claims.get("iss") {
            None => return Err("the token lacks a required claim (iss)"),
            Some(iss) if iss.as_str() != Some(issuer.as_str()) => return Err("the token's issuer is not accepted"),
            Some(_) => {}
        }
    }
    if let Some(audience) = &config.audience {
        let named = match claims.get("aud") {
            None => return Err("the token lacks a required claim (aud)"),
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience.as_str())),
            Some(_) => return Err("the token's claims are malformed"),
        };
        if !named {
            return Err("the token's audience is not accepted");
        }
    }
    Ok(())
}

fn invalid_token(detail: &str) -> Problem {
    challenge(Some("invalid_token"), detail)
}

/// A `401` with its RFC 6750 challenge.
fn challenge(error: Option<&str>, detail: &str) -> Problem {
    let value = match error {
        Some(code) => format!("Bearer realm=\"{REALM}\", error=\"{code}\", error_description=\"{detail}\""),
        None => format!("Bearer realm=\"{REALM}\""),
    };
    Problem::new(ProblemKind::Unauthorized, detail).with_header(
        WWW_AUTHENTICATE,
        HeaderValue::from_str(&value).expect("challenge text is ASCII"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::{Value, json};

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
    const NOW: i64 = 1_800_000_000;
    const USER: &str = "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e";

    fn config() -> AuthConfig {
        AuthConfig {
            secret: Secret::new(SECRET.into()),
            issuer: None,
            audience: None,
        }
    }

    fn sign(claims: Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn check(token: &str, config: &AuthConfig) -> Result<Caller, Problem> {
        authenticate(&headers(&format!("Bearer {token}")), config, NOW)
    }

    fn challenge_of(p: &Problem) -> String {
        p.headers
            .iter()
            .find(|(n, _)| n == WWW_AUTHENTICATE)
            .unwrap()
            .1
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_good_token_names_the_caller() {
        let token = sign(json!({"sub": USER, "exp": NOW + 60}), SECRET);
        assert_eq!(check(&token, &config()).unwrap().user_id.to_string(), USER);
    }

    #[test]
    fn missing_and_malformed_headers() {
        let p = authenticate(&HeaderMap::new(), &config(), NOW).unwrap_err();
        assert_eq!(p.kind, ProblemKind::Unauthorized);
        assert_eq!(challenge_of(&p), "Bearer realm=\"orders-api\"");
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "token"] {
            let p = authenticate(&headers(bad), &config(), NOW).unwrap_err();
            assert!(challenge_of(&p).contains("error=\"invalid_request\""), "{bad}");
        }
    }

    #[test]
    fn every_bad_token_is_invalid_token() {
        let good = json!({"sub": USER, "exp": NOW + 60});
        let tampered = {
            let token = sign(good.clone(), SECRET);
            let mut parts: Vec<String> = token.split('.').map(String::from).collect();
            let other = sign(
                json!({"sub": "9a3c1e5e-1111-4222-8333-444455556666", "exp": NOW + 60}),
                "x",
            );
            parts[1] = other.split('.').nth(1).unwrap().to_string();
            parts.join(".")
        };
        let none_alg = {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}.{}.",
                b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
                b64.encode(good.to_string())
            )
        };
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &good,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let cases = [
            (
                "other secret",
                sign(good.clone(), "another-secret-of-enough-length-000000"),
            ),
            ("tampered", tampered),
            ("alg none", none_alg),
            ("alg HS512", hs512),
            (
                "expired",
                sign(json!({"sub": USER, "exp": NOW - LEEWAY_SECONDS}), SECRET),
            ),
            (
                "not yet valid",
                sign(
                    json!({"sub": USER, "exp": NOW + 600, "nbf": NOW + LEEWAY_SECONDS + 1}),
                    SECRET,
                ),
            ),
            ("no sub", sign(json!({"exp": NOW + 60}), SECRET)),
            ("no exp", sign(json!({"sub": USER}), SECRET)),
            ("sub not a uuid", sign(json!({"sub": "alice", "exp": NOW + 60}), SECRET)),
            ("garbage", "a.b.c".to_string()),
        ];
        for (name, token) in cases {
            let p = check(&token, &config()).unwrap_err();
            assert_eq!(p.kind, ProblemKind::Unauthorized, "{name}");
            assert!(
                challenge_of(&p).contains("error=\"invalid_token\""),
                "{name}: {}",
                challenge_of(&p)
            );
        }
    }

    #[test]
    fn a_critical_header_parameter_is_refused() {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".into()]);
        let token = encode(
            &header,
            &json!({"sub": USER, "exp": NOW + 60}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let p = check(&token, &config()).unwrap_err();
        assert!(challenge_of(&p).contains("crit"), "{}", challenge_of(&p));
    }

    #[test]
    fn sub_has_one_spelling() {
        let upper = USER.to_ascii_uppercase();
        let token = sign(json!({"sub": upper, "exp": NOW + 60}), SECRET);
        assert_eq!(check(&token, &config()).unwrap().user_id.to_string(), USER);
        let simple = USER.replace('-', "");
        for other in [format!("{{{USER}}}"), format!("urn:uuid:{USER}"), simple] {
            let token = sign(json!({"sub": other, "exp": NOW + 60}), SECRET);
            assert!(check(&token, &config()).is_err(), "{other}");
        }
    }

    #[test]
    fn time_claims_may_be_fractional_or_extreme() {
        let ok = [
            json!({"sub": USER, "exp": NOW as f64 + 0.5}),
            json!({"sub": USER, "exp": i64::MAX}),
            json!({"sub": USER, "exp": NOW + 60, "nbf": i64::MIN}),
            json!({"sub": USER, "exp": NOW + 60, "nbf": NOW as f64 + 29.5}),
        ];
        for claims in ok {
            assert!(check(&sign(claims.clone(), SECRET), &config()).is_ok(), "{claims}");
        }
        let refused = [
            json!({"sub": USER, "exp": (NOW - LEEWAY_SECONDS) as f64 - 0.25}),
            json!({"sub": USER, "exp": i64::MIN}),
            json!({"sub": USER, "exp": NOW + 60, "nbf": i64::MAX}),
            json!({"sub": USER, "exp": NOW + 60, "nbf": NOW as f64 + 30.5}),
            json!({"sub": USER, "exp": "tomorrow"}),
        ];
        for claims in refused {
            assert!(check(&sign(claims.clone(), SECRET), &config()).is_err(), "{claims}");
        }
    }

    #[test]
    fn leeway_applies_to_time_claims() {
        let just_expired = sign(json!({"sub": USER, "exp": NOW - LEEWAY_SECONDS + 1}), SECRET);
        assert!(check(&just_expired, &config()).is_ok());
        let almost_valid = sign(
            json!({"sub": USER, "exp": NOW + 600, "nbf": NOW + LEEWAY_SECONDS}),
            SECRET,
        );
        assert!(check(&almost_valid, &config()).is_ok());
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let strict = AuthConfig {
            issuer: Some("https://id.example".into()),
            audience: Some("orders".into()),
            ..config()
        };
        let right = sign(
            json!({"sub": USER, "exp": NOW + 60, "iss": "https://id.example", "aud": "orders"}),
            SECRET,
        );
        assert!(check(&right, &strict).is_ok());
        for wrong in [
            json!({"sub": USER, "exp": NOW + 60, "iss": "https://evil.example", "aud": "orders"}),
            json!({"sub": USER, "exp": NOW + 60, "iss": "https://id.example", "aud": "billing"}),
            json!({"sub": USER, "exp": NOW + 60, "aud": "orders"}),
            json!({"sub": USER, "exp": NOW + 60, "iss": "https://id.example"}),
            json!({"sub": USER, "exp": NOW + 60, "iss": 7, "aud": "orders"}),
            json!({"sub": USER, "exp": NOW + 60, "iss": "https://id.example", "aud": {"a": "orders"}}),
        ] {
            assert!(check(&sign(wrong.clone(), SECRET), &strict).is_err(), "{wrong}");
        }
        let listed = json!({"sub": USER, "exp": NOW + 60, "iss": "https://id.example", "aud": ["billing", "orders"]});
        assert!(check(&sign(listed, SECRET), &strict).is_ok());
    }

    #[test]
    fn only_the_compact_form_verifies() {
        let token = sign(json!({"sub": USER, "exp": NOW + 60}), SECRET);
        assert!(check(&token, &config()).is_ok());
        let parts: Vec<&str> = token.split('.').collect();
        let b64 = |text: &str| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
        };
        let resigned = |header: &str, payload: &str| {
            let input = format!("{header}.{payload}");
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
        };
        // A correctly signed token whose parts are not what JWS allows.
        let cases = [
            ("four parts", format!("{token}.{}", parts[2])),
            ("padded signature", format!("{token}=")),
            ("header not an object", resigned(&b64("[\"HS256\"]"), parts[1])),
            ("claims not an object", resigned(parts[0], &b64("[1]"))),
            ("claims not JSON", resigned(parts[0], &b64("{"))),
            ("no alg", resigned(&b64("{\"typ\":\"JWT\"}"), parts[1])),
            ("alg lower case", resigned(&b64("{\"alg\":\"hs256\"}"), parts[1])),
        ];
        for (name, token) in cases {
            assert!(check(&token, &config()).is_err(), "{name}");
        }
        // The same construction with a proper header verifies: the cases
        // above fail for their flaw, not for the way they were signed.
        assert!(check(&resigned(&b64("{\"alg\":\"HS256\"}"), parts[1]), &config()).is_ok());
    }
}
