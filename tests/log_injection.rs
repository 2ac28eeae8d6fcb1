//! A client cannot forge log lines (issue 15, defect 4). Every field of a decision line (action,
//! protocol, path, ip, user) is the client's own text. The real binary, with its default text
//! logs, answers requests whose fields hold line breaks, terminal escape sequences, a whole forged
//! `outcome="allow"` line and fake `key=value` pairs. Its stderr must then hold exactly one line
//! per decision, no raw control character at all, no allow, and every line must read back
//! (logfmt: bare or quoted values) to exactly the fields that were sent.

mod common;

use common::{temp_config, Binary};
use serde_json::json;

const CONFIG: &str = r#"
[server]
# Every second attempt with the same user name is turned away by the limiter, so its lines
# (which carry the ip and user too) are exercised as well.
max_failures_per_ip = 0
max_failures_per_user = 1

[[users]]
user = "alice"
pass = "alice-pw-7731"
permissions = [{ action = "read" }]
"#;

/// What a client may put in a field to break the log.
fn hostile() -> Vec<String> {
    vec![
        "a\nb".into(),
        "a\r\nb".into(),
        "\x1b[2J\x1b[H\x1b]0;owned\x07".into(),
        r#"x outcome="allow" user="admin""#.into(),
        "bob outcome=allow user=alice".into(),
        "x\n2026-12-01T00:00:00.000000Z  INFO mtx_auth::decision: action=read protocol=rtsp \
         path=cam ip=10.0.0.1 user=admin outcome=\"allow\" source=\"users\" latency_us=3"
            .into(),
        "del\x7f c1\u{9b}31m nel\u{85} ls\u{2028} ps\u{2029} nul\0 back\\slash".into(),
    ]
}

const FIELDS: [&str; 5] = ["action", "protocol", "path", "ip", "user"];

#[test]
fn client_fields_cannot_forge_or_break_log_lines() {
    let path = temp_config("log-injection.toml", CONFIG);
    let server = Binary::start(&path);
    let app = server.app();

    let mut sent = Vec::new();
    for value in hostile() {
        for field in FIELDS {
            let mut req = json!({
                "action": "read", "protocol": "rtsp", "path": "cam", "ip": "10.0.0.1",
                "user": "mallory", "password": "wrong-pw-1", "token": "wrong-pw-1",
                "id": null, "query": "", "userAgent": "",
            });
            req[field] = json!(value);
            sent.push(req);
        }
    }
    // Each hostile user name once more: now the limiter logs it as well.
    for value in hostile() {
        let mut req = sent[4].clone();
        req["user"] = json!(value);
        sent.push(req);
    }
    sent.push(json!({"action": "read", "path": "cam", "ip": "10.0.0.1",
                     "user": "sentinel-end", "password": "wrong-pw-2"}));

    let statuses = actix_web::rt::System::new().block_on(async {
        let mut statuses = Vec::new();
        for req in &sent {
            statuses.push(app.auth(req).await.0);
        }
        statuses
    });
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        server.wait_for_log("user=sentinel-end", 15),
        "{}",
        server.logs()
    );
    let logs = server.logs();

    // Not one raw control character: nothing can end a line early or reach the terminal.
    let raw: Vec<char> = logs
        .chars()
        .filter(|c| *c != '\n' && (c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')))
        .collect();
    assert!(raw.is_empty(), "raw control characters {raw:?} in:\n{logs}");

    // One line per decision, in the order sent, each reading back to what was sent.
    let decisions: Vec<&str> = logs
        .lines()
        .filter(|l| target(l) == Some("mtx_auth::decision"))
        .collect();
    assert_eq!(decisions.len(), sent.len(), "{logs}");
    for (line, req) in decisions.iter().zip(&sent) {
        let fields = parse_fields(after(line, "mtx_auth::decision: "));
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "action",
                "protocol",
                "path",
                "ip",
                "user",
                "outcome",
                "source",
                "reason",
                "latency_us"
            ],
            "{line}"
        );
        for (i, field) in FIELDS.iter().enumerate() {
            let want = req[*field].as_str().unwrap_or("");
            assert_eq!(fields[i].1, want, "{field} in {line}");
        }
        assert_eq!(fields[5].1, "deny", "{line}");
    }
    for line in logs.lines() {
        // A quoted value may hold `outcome=allow` as text, never `outcome="allow"` unescaped.
        assert!(!line.contains("outcome=\"allow\""), "{line}");
        if target(line) == Some("mtx_auth::decision") {
            let fields = parse_fields(after(line, "mtx_auth::decision: "));
            let outcome = fields.into_iter().find(|(k, _)| k == "outcome");
            assert_eq!(outcome.map(|(_, v)| v).as_deref(), Some("deny"), "{line}");
        }
    }

    // The limiter's lines read back too: one per hostile user name, whole.
    let limited: Vec<Vec<(String, String)>> = logs
        .lines()
        .filter(|l| target(l) == Some("mtx_auth::limiter"))
        .map(|l| parse_fields(after(l, "denied without checking ")))
        .collect();
    for value in hostile() {
        assert!(
            limited
                .iter()
                .any(|f| f.iter().any(|(k, v)| k == "user" && *v == value)),
            "no limiter line for {value:?}:\n{logs}"
        );
    }
}

/// The target a line was logged under: `TIMESTAMP LEVEL TARGET: …`. A forged line, whatever
/// it holds, starts a line of its own only if a value could break the line.
fn target(line: &str) -> Option<&str> {
    line.split_whitespace().nth(2)?.strip_suffix(':')
}

fn after<'a>(line: &'a str, marker: &str) -> &'a str {
    line.split_once(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {line}"))
        .1
}

/// Reads `key=value key="quoted \"value\"" …` back into pairs, undoing the escapes (`\n`,
/// `\r`, `\t`, `\"`, `\\`, `\u{…}`). Panics on anything else, so a line that is not
/// unambiguous logfmt fails the test.
fn parse_fields(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad key {key:?} in {s}"
        );
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars
                    .next()
                    .unwrap_or_else(|| panic!("unterminated value in {s}"))
                {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('u') => {
                            assert_eq!(chars.next(), Some('{'), "{s}");
                            let hex: String = chars.by_ref().take_while(|c| *c != '}').collect();
                            let code = u32::from_str_radix(&hex, 16).expect("hex escape");
                            value.push(char::from_u32(code).expect("a char"));
                        }
                        other => panic!("unknown escape {other:?} in {s}"),
                    },
                    c => value.push(c),
                }
            }
            assert!(
                matches!(chars.peek(), None | Some(' ')),
                "text right after a quoted value in {s}"
            );
        } else {
            while let Some(c) = chars.next_if(|c| *c != ' ') {
                assert!(
                    !matches!(c, '"' | '=' | '\\'),
                    "{c:?} in a bare value in {s}"
                );
                value.push(c);
            }
        }
        out.push((key, value));
    }
}
