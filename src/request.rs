//! MediaMTX's auth request, parsed from the JSON body it POSTs.
//!
//! Every MediaMTX version since v1.0 is accepted: missing fields are empty (`token` arrived in
//! v1.12.3, `userAgent` in v1.19), unknown fields are ignored, `null` reads as empty. Strings
//! borrow from the body when they hold no escapes, so parsing allocates nothing on the hot path.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer};

use crate::permission::Action;

/// Why a body is not a request. Mapped to 400 by the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("body is not a JSON object: {0}")]
    Malformed(String),
}

/// The fields of MediaMTX's request, as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    #[serde(default, borrow, deserialize_with = "nullable")]
    user: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "nullable")]
    password: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "nullable")]
    token: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "nullable")]
    ip: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "nullable")]
    action: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "nullable")]
    path: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "nullable")]
    protocol: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "nullable")]
    id: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "nullable")]
    query: Cow<'a, str>,
}

/// A string field that may be `null`. serde's own `Cow<str>` always copies; this visitor
/// borrows from the body whenever the string has no escapes.
fn nullable<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Cow<'a, str>, D::Error> {
    d.deserialize_option(CowStr)
}

struct CowStr;

impl<'de> Visitor<'de> for CowStr {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string or null")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(CowStr)
    }
}

/// One auth request. `action` and `ip` are parsed; an unknown action or an unparsable IP is kept
/// as `None` and leads to a deny (or, for the IP, to no IP-restricted user matching).
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub user: Cow<'a, str>,
    pub password: Cow<'a, str>,
    pub token: Cow<'a, str>,
    /// The `ip` field as sent, for logs.
    pub ip_raw: Cow<'a, str>,
    pub ip: Option<IpAddr>,
    pub action_raw: Cow<'a, str>,
    pub action: Option<Action>,
    pub path: Cow<'a, str>,
    pub protocol: Cow<'a, str>,
    pub id: Cow<'a, str>,
    pub query: Cow<'a, str>,
}

impl<'a> Request<'a> {
    /// Parses a body. Anything but a JSON object whose known fields are strings (or null) is an
    /// error; the message names the position, never a field's value.
    pub fn parse(body: &'a [u8]) -> Result<Self, RequestError> {
        // serde would also read a JSON array into the struct, field by field; only an object is
        // MediaMTX's request.
        if body.trim_ascii_start().first() != Some(&b'{') {
            return Err(RequestError::Malformed("expected a JSON object".into()));
        }
        let wire: Wire<'a> =
            serde_json::from_slice(body).map_err(|e| RequestError::Malformed(describe(&e)))?;
        Ok(Request {
            ip: parse_ip(&wire.ip),
            action: wire.action.parse().ok(),
            user: wire.user,
            password: wire.password,
            token: wire.token,
            ip_raw: wire.ip,
            action_raw: wire.action,
            path: wire.path,
            protocol: wire.protocol,
            id: wire.id,
            query: wire.query,
        })
    }

    /// Convenience for tests, benches and `explain`: a request with the given fields.
    pub fn new(action: Action, path: &'a str, ip: &'a str, user: &'a str, pass: &'a str) -> Self {
        Request {
            user: user.into(),
            password: pass.into(),
            token: pass.into(),
            ip_raw: ip.into(),
            ip: parse_ip(ip),
            action_raw: action.as_str().into(),
            action: Some(action),
            path: path.into(),
            ..Request::default()
        }
    }

    /// True when the client sent a user, a password or a token, in its fields or in the URL's
    /// query (`query_token`). Every place a credential can ride counts alike: a guess in the
    /// query is limited exactly as one in `token`.
    pub fn has_credentials(&self) -> bool {
        !self.user.is_empty()
            || !self.password.is_empty()
            || !self.token.is_empty()
            || self.query_token().is_some_and(|t| !t.is_empty())
    }

    /// The credential a client put in the URL: the value of `token=` or `jwt=` when the query
    /// holds exactly one of them. MediaMTX moves such a value into `token` for RTSP and RTMP,
    /// but leaves it in `query` for HLS and WebRTC (its pages forward the page's own query).
    /// Two of them are ambiguous, and ambiguity is never a credential.
    pub fn query_token(&self) -> Option<Cow<'_, str>> {
        if self.query.is_empty() {
            return None;
        }
        let mut found = form_urlencoded::parse(self.query.as_bytes())
            .filter(|(k, _)| k == "token" || k == "jwt")
            .map(|(_, v)| v);
        let only = found.next()?;
        found.next().is_none().then_some(only)
    }
}

/// serde_json's message without anything copied from the input: only its category and position.
fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io | Category::Eof => "unexpected end of input",
        Category::Syntax => "invalid JSON",
        Category::Data => "expected an object whose fields are strings",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// Parses MediaMTX's `ip` field. Zone ids (`fe80::1%eth0`) are dropped, and IPv4-mapped IPv6
/// addresses (`::ffff:10.0.0.1`) become IPv4, as Go's `IPNet.Contains` treats them, so they match
/// IPv4 entries in `ips`.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.split_once('%').map_or(s, |(addr, _zone)| addr);
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_mediamtx_body() {
        let body = br#"{"ip":"10.0.0.5","user":"u","password":"p","token":"p","action":"read",
            "path":"cam","protocol":"rtsp","id":null,"query":"a=b","userAgent":"x","extra":[1]}"#;
        let r = Request::parse(body).unwrap();
        assert_eq!(r.user, "u");
        assert_eq!(r.password, "p");
        assert_eq!(r.action, Some(Action::Read));
        assert_eq!(r.ip, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(r.id, "");
        assert_eq!(r.query, "a=b");
    }

    #[test]
    fn missing_and_null_fields_are_empty() {
        let r = Request::parse(br#"{"action":"api","user":null}"#).unwrap();
        assert_eq!(r.user, "");
        assert_eq!(r.token, "");
        assert_eq!(r.ip, None);
        assert!(!r.has_credentials());
    }

    #[test]
    fn escaped_strings_decode_and_plain_ones_borrow() {
        let r = Request::parse(br#"{"user":"a\"b\u0041","path":"cam/1"}"#).unwrap();
        assert_eq!(r.user, "a\"bA");
        assert!(matches!(r.user, Cow::Owned(_)));
        assert!(matches!(r.path, Cow::Borrowed("cam/1")));
    }

    #[test]
    fn non_objects_and_wrong_types_are_errors() {
        for body in [
            &b"[]"[..],
            b"\"x\"",
            b"12",
            b"",
            b"{",
            b"{\"user\":5}",
            b"\xff",
        ] {
            assert!(Request::parse(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn error_message_does_not_echo_input() {
        let e = Request::parse(br#"{"password":"hunter2", "user": ["hunter2"]}"#).unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn a_token_in_the_query_is_a_credential() {
        let mut r = Request::parse(br#"{"action":"read","query":"a=1&jwt=x.y.z"}"#).unwrap();
        assert!(r.has_credentials());
        assert_eq!(r.query_token().as_deref(), Some("x.y.z"));
        r.query = "token=abc&jwt=def".into();
        assert_eq!(r.query_token(), None, "two are ambiguous");
        assert!(!r.has_credentials());
        r.query = "token=".into();
        assert!(!r.has_credentials());
        r.query = "a=1".into();
        assert!(!r.has_credentials());
    }

    #[test]
    fn unknown_action_is_none() {
        let r = Request::parse(br#"{"action":"delete"}"#).unwrap();
        assert_eq!(r.action, None);
        assert_eq!(r.action_raw, "delete");
    }

    #[test]
    fn ip_forms() {
        assert_eq!(
            parse_ip("::ffff:10.0.0.1"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_ip("fe80::1%eth0"), Some("fe80::1".parse().unwrap()));
        assert_eq!(parse_ip("::1"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("not an ip"), None);
        assert_eq!(parse_ip(""), None);
    }
}
