//! The text of LDAP names and filters: a user name placed in a DN (RFC 4514) or a filter
//! (RFC 4515) so that it can only ever be one value, templates filled in one pass, and DNs put
//! in one spelling so that a group's DN as the directory writes it matches the config's.

use std::fmt::Write as _;

/// `value` as one attribute value of a DN (RFC 4514 §2.4): `"`, `+`, `,`, `;`, `<`, `>`, `\`
/// and `=` are escaped with a backslash, as are a leading `#` or space and a trailing space;
/// control characters (NUL among them) become `\XX` for each of their UTF-8 bytes. Anything
/// else, non-ASCII letters included, stays as it is.
pub fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for (i, c) in value.char_indices() {
        let first = i == 0;
        let last = i + c.len_utf8() == value.len();
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if first => out.push_str("\\#"),
            ' ' if first || last => out.push_str("\\ "),
            c if c.is_control() => push_hex(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// `value` as an assertion value in a filter (RFC 4515 §3): `*`, `(`, `)`, `\` and NUL are
/// written `\2a`, `\28`, `\29`, `\5c`, `\00`; other control characters as `\XX` for each of
/// their UTF-8 bytes. So a name can match one entry's value exactly, never a pattern.
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' => push_hex(&mut out, c),
            c if c.is_control() => push_hex(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

fn push_hex(out: &mut String, c: char) {
    let mut buf = [0; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        let _ = write!(out, "\\{b:02x}");
    }
}

/// `template` with each placeholder replaced by its value, in one pass: a value that happens to
/// contain a placeholder's text is not filled in again.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    'outer: while !rest.is_empty() {
        for (placeholder, value) in values {
            if let Some(after) = rest.strip_prefix(placeholder) {
                out.push_str(value);
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A DN in one spelling, for comparing two DNs: attribute types and values in lower case, the
/// insignificant spaces around `,`, `+` and `=` gone, every escape (`\,`, `\2C`) decoded and
/// written again the one way `escape_dn_value` writes it, the values of a multi-valued RDN
/// sorted. `None` if `dn` is not a DN. The empty DN is `Some("")`.
///
/// Lower-casing values is right for the names groups have (`cn`, `ou`, `dc`, `uid`: all
/// compared without regard to case), which is all this is for.
pub fn normalize_dn(dn: &str) -> Option<String> {
    let rdns = parse_dn(dn)?;
    let mut out = String::with_capacity(dn.len());
    for (i, rdn) in rdns.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut avas: Vec<String> = rdn
            .into_iter()
            .map(|(attr, value)| match value {
                Value::Text(v) => format!("{attr}={}", escape_dn_value(&v.to_lowercase())),
                Value::Ber(hex) => format!("{attr}=#{hex}"),
            })
            .collect();
        avas.sort();
        out.push_str(&avas.join("+"));
    }
    Some(out)
}

enum Value {
    Text(String),
    /// `#` and hex digits (lower case): a BER-encoded value, kept as written.
    Ber(String),
}

/// The RDNs of a DN, each a list of (attribute type in lower case, value).
fn parse_dn(dn: &str) -> Option<Vec<Vec<(String, Value)>>> {
    let bytes = dn.as_bytes();
    let mut rdns = Vec::new();
    if dn.trim().is_empty() {
        return Some(rdns);
    }
    let mut rdn = Vec::new();
    let mut i = 0;
    loop {
        // The attribute type: letters, digits, '-' and '.' (an OID), around spaces.
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        let start = i;
        while bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
        {
            i += 1;
        }
        let attr = dn[start..i].to_ascii_lowercase();
        if attr.is_empty() {
            return None;
        }
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        let value = if bytes.get(i) == Some(&b'#') {
            i += 1;
            let start = i;
            while bytes.get(i).is_some_and(u8::is_ascii_hexdigit) {
                i += 1;
            }
            if i == start || (i - start) % 2 != 0 {
                return None;
            }
            let hex = dn[start..i].to_ascii_lowercase();
            while bytes.get(i) == Some(&b' ') {
                i += 1;
            }
            Value::Ber(hex)
        } else {
            let mut value = Vec::new();
            // The length of `value` up to its last character that counts: trailing spaces
            // that were not escaped are dropped.
            let mut significant = 0;
            while let Some(&b) = bytes.get(i) {
                match b {
                    b',' | b'+' | b';' => break,
                    b'\\' => {
                        let next = *bytes.get(i + 1)?;
                        if next.is_ascii_hexdigit() {
                            let hex = dn.get(i + 1..i + 3)?;
                            value.push(u8::from_str_radix(hex, 16).ok()?);
                            i += 3;
                        } else if b"\"+,;<>\\= #".contains(&next) {
                            value.push(next);
                            i += 2;
                        } else {
                            return None;
                        }
                        significant = value.len();
                    }
                    // Must be escaped inside a value.
                    b'"' | b'<' | b'>' | 0 => return None,
                    b' ' => {
                        value.push(b);
                        i += 1;
                    }
                    _ => {
                        value.push(b);
                        i += 1;
                        significant = value.len();
                    }
                }
            }
            value.truncate(significant);
            Value::Text(String::from_utf8(value).ok()?)
        };
        rdn.push((attr, value));
        match bytes.get(i) {
            None => {
                rdns.push(rdn);
                return Some(rdns);
            }
            Some(b'+') => {}
            Some(b',' | b';') => rdns.push(std::mem::take(&mut rdn)),
            Some(_) => return None,
        }
        i += 1;
    }
}

/// A filter's text holds together: balanced parentheses, and ldap3's parser takes it. For
/// checking the config's templates once they are filled with a harmless value.
pub fn is_filter(filter: &str) -> bool {
    ldap3::parse_filter(filter).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::ASNTag;

    /// Nasty user names, each with how it must appear in a DN and in a filter.
    const NASTY: &[(&str, &str, &str)] = &[
        ("alice", "alice", "alice"),
        ("*", "*", "\\2a"),
        ("alice)(uid=*", "alice)(uid\\=*", "alice\\29\\28uid=\\2a"),
        ("(", "(", "\\28"),
        (")", ")", "\\29"),
        ("a\\b", "a\\\\b", "a\\5cb"),
        ("nul\0byte", "nul\\00byte", "nul\\00byte"),
        ("o,brien", "o\\,brien", "o,brien"),
        ("a+b", "a\\+b", "a+b"),
        ("say \"hi\"", "say \\\"hi\\\"", "say \"hi\""),
        ("<tag>", "\\<tag\\>", "<tag>"),
        ("a;b", "a\\;b", "a;b"),
        ("#hash", "\\#hash", "#hash"),
        ("mid#hash", "mid#hash", "mid#hash"),
        (" lead", "\\ lead", " lead"),
        ("trail ", "trail\\ ", "trail "),
        (" ", "\\ ", " "),
        ("in side", "in side", "in side"),
        ("émile", "émile", "émile"),
        ("名前", "名前", "名前"),
        ("tab\there", "tab\\09here", "tab\\09here"),
        ("\u{85}c1", "\\c2\\85c1", "\\c2\\85c1"),
        ("cn=admin,dc=x", "cn\\=admin\\,dc\\=x", "cn=admin,dc=x"),
    ];

    #[test]
    fn dn_values_are_escaped_per_rfc_4514() {
        for (input, dn, _) in NASTY {
            assert_eq!(&escape_dn_value(input), dn, "{input:?}");
        }
    }

    #[test]
    fn filter_values_are_escaped_per_rfc_4515() {
        for (input, _, filter) in NASTY {
            assert_eq!(&escape_filter_value(input), filter, "{input:?}");
        }
    }

    #[test]
    fn an_escaped_name_is_one_value_in_a_filter() {
        // Parsed by the client's own filter parser: one equality assertion, the exact bytes.
        for (input, _, _) in NASTY {
            let filter = format!("(uid={})", escape_filter_value(input));
            let tag = ldap3::parse_filter(&filter).unwrap_or_else(|_| panic!("{filter}"));
            // EqualityMatch [3] { "uid", value }: the value verbatim.
            let parts = tag
                .into_structure()
                .match_id(3)
                .and_then(|t| t.expect_constructed())
                .unwrap_or_else(|| panic!("{filter}: an equality match"));
            let [attr, value]: [_; 2] = parts.try_into().expect("two parts");
            assert_eq!(attr.expect_primitive().unwrap(), b"uid");
            assert_eq!(
                value.expect_primitive().unwrap(),
                input.as_bytes(),
                "{filter}"
            );
        }
    }

    #[test]
    fn an_escaped_name_is_one_rdn_value_in_a_dn() {
        for (input, _, _) in NASTY {
            let dn = fill(
                "uid={user},ou=people,dc=example,dc=org",
                &[("{user}", &escape_dn_value(input))],
            );
            let rdns = parse_dn(&dn).unwrap_or_else(|| panic!("{dn}"));
            assert_eq!(rdns.len(), 4, "{dn}");
            assert_eq!(rdns[0].len(), 1, "{dn}: one value in the first RDN");
            assert_eq!(rdns[0][0].0, "uid");
            match &rdns[0][0].1 {
                Value::Text(v) => assert_eq!(v, input, "{dn}"),
                Value::Ber(_) => panic!("{dn}"),
            }
        }
    }

    #[test]
    fn templates_are_filled_once() {
        assert_eq!(
            fill(
                "(&(member={dn})(x={user}))",
                &[("{dn}", "{user}"), ("{user}", "bob")]
            ),
            "(&(member={user})(x=bob))"
        );
        assert_eq!(fill("é{user}é", &[("{user}", "ü")]), "éüé");
        assert_eq!(fill("{user", &[("{user}", "x")]), "{user");
    }

    #[test]
    fn dns_compare_in_one_spelling() {
        let n = |s: &str| normalize_dn(s).unwrap_or_else(|| panic!("{s}"));
        assert_eq!(
            n("CN=Streamers, OU=Groups,DC=Example,DC=org"),
            "cn=streamers,ou=groups,dc=example,dc=org"
        );
        assert_eq!(n("cn=O\\2CBrien,dc=x"), n("cn = o\\,brien , dc=X"));
        assert_eq!(n("cn=a+sn=b,dc=x"), n("sn=B+cn=A,dc=x"));
        assert_eq!(n("cn=trailing\\ ,dc=x"), "cn=trailing\\ ,dc=x");
        assert_eq!(n("cn=trailing  ,dc=x"), "cn=trailing,dc=x");
        assert_eq!(n("cn=#04024869,dc=x"), "cn=#04024869,dc=x");
        assert_eq!(n("cn=Émile,dc=x"), "cn=émile,dc=x");
        assert_eq!(n(""), "");
        assert_ne!(n("cn=a,dc=x"), n("cn=a,dc=y"));
        for bad in [
            "cn",
            "=x",
            "cn=a,",
            "cn=a\\",
            "cn=a\\zz",
            "cn=\"q\"",
            "cn=#abc",
            "cn=a,,dc=x",
        ] {
            assert!(normalize_dn(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn filters_are_checked() {
        assert!(is_filter("(&(objectClass=person)(uid=x))"));
        assert!(is_filter("(member:1.2.840.113556.1.4.1941:=cn=x,dc=y)"));
        assert!(!is_filter("(uid=x"));
        assert!(!is_filter("uid=x)"));
    }
}
