//! Slow and idle clients cannot hold the service (issue 15, defect 7). Connections that sent a
//! head and one byte of body used to stay open forever: with a 1,024 file descriptor limit,
//! 1,100 of them stopped `/auth` and `/healthz` for everyone. The real binary runs here under a
//! 256 descriptor limit and must close every such connection by itself, then answer as usual;
//! and no other way of stalling (a chunked body, a trickled body, an idle connection, a second
//! request on a kept-alive connection) may hold a connection either.
//!
//! Bounds are generous (tens of seconds for limits of a few): the tests ask that connections
//! end, not how fast.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{temp_config, Binary};

const CONFIG: &str = r#"
[[users]]
user = "alice"
pass = "alice-pw-5511"
permissions = [{ action = "read" }]
"#;

/// A head announcing 100 bytes of body, and the first of them.
const STALLED: &[u8] =
    b"POST /auth HTTP/1.1\r\nHost: mtx-auth\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";

const GOOD_AUTH: &str = r#"{"user":"alice","password":"alice-pw-5511","action":"read","path":"cam","ip":"10.0.0.1","protocol":"rtsp"}"#;

#[test]
fn stalled_bodies_are_closed_and_the_service_keeps_answering() {
    let path = temp_config("slow-bodies.toml", CONFIG);
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=256:256", "--"])
        .arg(env!("CARGO_BIN_EXE_mtx-auth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info");
    let server = Binary::start_command(cmd);

    // More connections than the server has descriptors, each stalled after one byte of body.
    let mut conns: Vec<TcpStream> = (0..300)
        .map(|i| {
            let mut s = connect(&server.addr)
                .unwrap_or_else(|e| panic!("connection {i} not accepted: {e}\n{}", server.logs()));
            s.write_all(STALLED).unwrap();
            s
        })
        .collect();

    // The server closes every one of them by itself, answering 408.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answered_408 = 0;
    for (i, s) in conns.iter_mut().enumerate() {
        let Some(answer) = read_to_close(s, deadline) else {
            panic!("connection {i} still open after 60 s\n{}", server.logs());
        };
        if status(&answer) == Some(408) {
            let text = String::from_utf8_lossy(&answer);
            assert!(text.contains(r#"{"error":"#), "{text}");
            answered_408 += 1;
        } else {
            assert!(answer.is_empty(), "connection {i}: {answer:?}");
        }
    }
    assert!(answered_408 > 0);
    drop(conns);

    // Then everyone is served again.
    let (code, body) = request(&server.addr, "GET", "/healthz", "");
    assert_eq!(code, 200, "{body}");
    let (code, body) = request(&server.addr, "POST", "/auth", GOOD_AUTH);
    assert_eq!((code, body.as_str()), (200, r#"{"user":"alice"}"#));
    let (code, metrics) = request(&server.addr, "GET", "/metrics", "");
    assert_eq!(code, 200);
    let timed_out = metric(&metrics, r#"mtx_auth_bad_requests_total{status="408"}"#);
    assert!(timed_out >= answered_408 as f64, "{metrics}");

    // The connection limit kept accept() away from the descriptor limit.
    let logs = server.logs();
    assert!(!logs.contains("Too many open files"), "{logs}");
    assert!(logs.contains("file descriptor limit 256"), "{logs}");
}

#[test]
fn idle_and_kept_alive_connections_are_closed() {
    let path = temp_config("slow-idle.toml", CONFIG);
    let server = Binary::start(&path);
    let deadline = || Instant::now() + Duration::from_secs(30);

    // Connected, nothing sent: closed (actix answers a late head with a bare 408).
    let mut idle = connect(&server.addr).unwrap();
    let answer = read_to_close(&mut idle, deadline()).expect("an idle connection is closed");
    assert!(matches!(status(&answer), None | Some(408)), "{answer:?}");

    // One request on a connection the client wants kept alive, then silence: closed.
    let mut kept = connect(&server.addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: mtx-auth\r\n\r\n")
        .unwrap();
    let answer = read_to_close(&mut kept, deadline()).expect("closed after its answer");
    assert_eq!(status(&answer), Some(200));

    // One request, then the first line of a second one and nothing more. actix has no time
    // limit on a kept-alive connection's second head: this connection must never get there.
    let mut second = connect(&server.addr).unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: mtx-auth\r\n\r\n")
        .unwrap();
    assert!(
        closes_on_half_head(
            &mut second,
            b"HTTP/1.1 200",
            b"GET /healthz HTTP/1.1\r\n",
            deadline()
        ),
        "a half-sent second request held the connection"
    );

    // The same after an answer from `/auth`, which is served ahead of the app and its
    // middleware (and times the next head from its decision).
    let mut after_auth = connect(&server.addr).unwrap();
    let body = r#"{"action":"read","path":"cam","ip":"10.0.0.1"}"#;
    write!(
        after_auth,
        "POST /auth HTTP/1.1\r\nHost: mtx-auth\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    assert!(
        closes_on_half_head(
            &mut after_auth,
            b"HTTP/1.1 ",
            b"POST /auth HTTP/1.1\r\n",
            deadline()
        ),
        "a half-sent request after /auth's answer held the connection"
    );
}

#[test]
fn chunked_and_trickled_bodies_end() {
    let path = temp_config("slow-chunked.toml", CONFIG);
    let server = Binary::start(&path);
    let deadline = || Instant::now() + Duration::from_secs(30);

    // A chunked body stalled mid-chunk, on a route that never reads bodies: answered, and the
    // unread body is not drained forever.
    let mut s = connect(&server.addr).unwrap();
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: mtx-auth\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n{",
    )
    .unwrap();
    let answer = read_to_close(&mut s, deadline()).expect("closed after its answer");
    assert_eq!(status(&answer), Some(200));

    // The same on /auth, which does read it: 408.
    let mut s = connect(&server.addr).unwrap();
    s.write_all(
        b"POST /auth HTTP/1.1\r\nHost: mtx-auth\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n{",
    )
    .unwrap();
    let answer = read_to_close(&mut s, deadline()).expect("closed");
    assert_eq!(status(&answer), Some(408), "{answer:?}");

    // A body that keeps coming, a byte every 200 ms: it would take 20 s, and never gets to.
    let mut s = connect(&server.addr).unwrap();
    s.write_all(STALLED).unwrap();
    s.set_nonblocking(true).unwrap();
    let mut answer = Vec::new();
    let end = deadline();
    'trickle: for _ in 1..100 {
        std::thread::sleep(Duration::from_millis(200));
        if s.write_all(b" ").is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break 'trickle,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break 'trickle,
            }
        }
        assert!(
            Instant::now() < end,
            "still reading a trickled body after 30 s"
        );
    }
    s.set_nonblocking(false).unwrap();
    if let Some(rest) = read_to_close(&mut s, deadline()) {
        answer.extend_from_slice(&rest);
    }
    assert_eq!(
        status(&answer),
        Some(408),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn a_head_without_its_body_is_answered_408() {
    // The head alone, announcing a body that never comes: no byte of it arrives with the head,
    // so the body's timer starts only when actix polls the handler a second time.
    let path = temp_config("slow-no-body.toml", CONFIG);
    let server = Binary::start(&path);
    let mut s = connect(&server.addr).unwrap();
    s.write_all(
        b"POST /auth HTTP/1.1\r\nHost: mtx-auth\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n",
    )
    .unwrap();
    let answer = read_to_close(&mut s, Instant::now() + Duration::from_secs(30))
        .expect("still open after 30 s");
    assert_eq!(status(&answer), Some(408), "{answer:?}");
}

/// A kept-alive connection serves request after request; only a stalled one is closed.
#[test]
fn kept_alive_connections_serve_many_requests() {
    let path = temp_config("slow-keep-alive.toml", CONFIG);
    let server = Binary::start(&path);
    let mut s = connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    for _ in 0..3 {
        write!(
            s,
            "POST /auth HTTP/1.1\r\nHost: mtx-auth\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{GOOD_AUTH}",
            GOOD_AUTH.len()
        )
        .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(br#"{"user":"alice"}"#) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        assert_eq!(status(&answer), Some(200));
    }
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(30))
}

/// Reads the start of the answer to the request just sent (it must be `answer_starts`), then
/// sends `half_head`, the beginning of a next request and nothing more: whether the server
/// closed the connection by `deadline`.
fn closes_on_half_head(
    s: &mut TcpStream,
    answer_starts: &[u8],
    half_head: &[u8],
    deadline: Instant,
) -> bool {
    let mut start = vec![0u8; answer_starts.len()];
    s.read_exact(&mut start).unwrap();
    assert_eq!(start, answer_starts);
    let _ = s.write_all(half_head);
    read_to_close(s, deadline).is_some()
}

/// Reads until the server closes the connection and returns what it sent; `None` if the
/// connection is still open at `deadline`.
fn read_to_close(s: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(answer),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            // Closed with our bytes still unread on its side: closed all the same.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Some(answer),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// The status code of a raw HTTP answer.
fn status(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// One request on its own connection; the status and the body.
fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: mtx-auth\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let answer = read_to_close(&mut s, Instant::now() + Duration::from_secs(30))
        .expect("answered and closed");
    let text = String::from_utf8(answer).unwrap();
    let code = status(text.as_bytes()).unwrap_or_else(|| panic!("{text}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (code, body)
}

/// A sample's value in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}
