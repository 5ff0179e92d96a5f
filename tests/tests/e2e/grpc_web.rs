//! gRPC-Web on the TCP listener, spoken on the wire as a browser's client library does
//! (HTTP/1.1 POST, `application/grpc-web+proto`, length-prefixed frames, trailers in the
//! body): unary GetStatus and the server-streaming event feed, with and without the token,
//! in clear and over TLS (as a dashboard served over HTTPS reaches the daemon), and CORS
//! only for the configured origins.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::tls::TlsFiles;
use e2e::{Home, Minerd, MinerdOptions};
use prost::Message as _;
use spacetime_proto::pb;

const ORIGIN: &str = "http://dashboard.localhost:8080";

/// One gRPC-Web exchange, read as far as `enough` says.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    /// Message frames (flag 0x00) decoded so far.
    messages: Vec<Vec<u8>>,
    /// The trailer frame (flag 0x80) as text, when it came.
    trailers: Option<String>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// `grpc-status` from the trailer frame, or from the headers (trailers-only reply).
    fn grpc_status(&self) -> Option<String> {
        let from_trailers = self.trailers.as_deref().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("grpc-status:"))
                .map(|v| v.trim().to_owned())
        });
        from_trailers.or_else(|| self.header("grpc-status").map(str::to_owned))
    }
}

/// A byte stream to the daemon: TCP, or TLS over TCP.
trait Wire: Read + Write {}
impl<T: Read + Write> Wire for T {}

/// How to reach the TCP listener: in clear, or in TLS (HTTP/1.1 by ALPN, as the
/// `grpc-web` browser library does over `fetch`).
struct Dial {
    addr: String,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

fn send(dial: &Dial, method: &str, extra: &[(&str, &str)], body: &[u8]) -> Box<dyn Wire> {
    let addr = &dial.addr;
    let mut s: Box<dyn Wire> = match &dial.tls {
        None => {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            Box::new(s)
        }
        Some(config) => Box::new(e2e::tls::connect_blocking(addr, Arc::clone(config)).unwrap()),
    };
    let mut req = format!(
        "{method} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s
}

/// Reads the status line, headers and the (chunked or sized) body's gRPC-Web frames until
/// the trailer frame, end of body, or `enough(messages)`.
fn read_reply(s: Box<dyn Wire>, enough: impl Fn(&[Vec<u8>]) -> bool) -> Reply {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let mut left = get("content-length").and_then(|v| v.parse::<usize>().ok());
    let mut body = Vec::new();
    let mut reply = Reply {
        status,
        headers: headers.clone(),
        messages: Vec::new(),
        trailers: None,
    };
    loop {
        // Parse complete frames.
        while body.len() >= 5 {
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            if body.len() < 5 + len {
                break;
            }
            let flag = body[0];
            let payload = body[5..5 + len].to_vec();
            body.drain(..5 + len);
            if flag & 0x80 != 0 {
                reply.trailers = Some(String::from_utf8_lossy(&payload).into_owned());
                return reply;
            }
            reply.messages.push(payload);
            if enough(&reply.messages) {
                return reply;
            }
        }
        // Read more body.
        if chunked {
            line.clear();
            if r.read_line(&mut line).unwrap() == 0 {
                return reply;
            }
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            if size == 0 {
                return reply;
            }
            let mut chunk = vec![0u8; size + 2];
            r.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..size]);
        } else {
            match left {
                Some(0) => return reply,
                Some(n) => {
                    let mut chunk = vec![0u8; n];
                    r.read_exact(&mut chunk).unwrap();
                    body.extend_from_slice(&chunk);
                    left = Some(0);
                }
                None => {
                    let mut chunk = Vec::new();
                    r.read_to_end(&mut chunk).unwrap();
                    if chunk.is_empty() {
                        return reply;
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }
}

fn frame(msg: &impl prost::Message) -> Vec<u8> {
    let b = msg.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&b);
    out
}

fn grpc_web_call(
    dial: &Dial,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    enough: impl Fn(&[Vec<u8>]) -> bool,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("Content-Type", "application/grpc-web+proto"),
        ("X-Grpc-Web", "1"),
        ("Accept", "application/grpc-web+proto"),
        ("Origin", ORIGIN),
    ];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    read_reply(send(dial, &format!("POST {path}"), &headers, body), enough)
}

/// GetStatus and WatchEvents by gRPC-Web through `dial`, with the token; both refused
/// without it or with a wrong one. The daemon runs a devnet with 1 s epochs.
fn unary_and_streaming_with_the_token_and_not_without(dial: &Dial, token: &str) {
    // Unary GetStatus with the token.
    let status_path = "/spacetime.miner.v1.MinerService/GetStatus";
    let r = grpc_web_call(
        dial,
        status_path,
        Some(token),
        &frame(&pb::GetStatusRequest {}),
        |_| false,
    );
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/grpc-web")),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(r.grpc_status().as_deref(), Some("0"), "{:?}", r.trailers);
    let status = pb::GetStatusResponse::decode(&r.messages[0][..]).unwrap();
    assert_eq!(
        status.status.unwrap().version,
        env!("CARGO_PKG_VERSION").to_owned()
    );

    // The event feed (server streaming): the devnet's 1 s epochs bring challenges.
    let started = Instant::now();
    let r = grpc_web_call(
        dial,
        "/spacetime.miner.v1.MinerService/WatchEvents",
        Some(token),
        &frame(&pb::WatchEventsRequest {}),
        |m| m.len() >= 2,
    );
    assert_eq!(r.status, 200);
    assert!(r.messages.len() >= 2, "{:?}", r.trailers);
    let events: Vec<_> = r
        .messages
        .iter()
        .map(|m| pb::WatchEventsResponse::decode(&m[..]).unwrap())
        .collect();
    assert!(events[1].sequence > events[0].sequence);
    assert!(events.iter().all(|e| e.event.is_some()));
    assert!(started.elapsed() < Duration::from_secs(30));

    // Without the token, or with a wrong one: UNAUTHENTICATED (16), no message.
    for bad in [None, Some("wrong")] {
        for path in [status_path, "/spacetime.miner.v1.MinerService/WatchEvents"] {
            let r = grpc_web_call(dial, path, bad, &frame(&pb::GetStatusRequest {}), |_| false);
            assert_eq!(r.grpc_status().as_deref(), Some("16"), "{path} {bad:?}");
            assert!(r.messages.is_empty());
        }
    }
}

#[test]
fn grpc_web_unary_and_streaming_with_the_token_and_not_without() {
    let d = Minerd::start_with(MinerdOptions {
        tcp: true,
        ..MinerdOptions::fast_devnet(&[&format!("grpcWebOrigins={ORIGIN}")])
    })
    .unwrap();
    let dial = Dial {
        addr: d.tcp.clone().unwrap(),
        tls: None,
    };
    let token = std::fs::read_to_string(d.home.data_dir().join("minerd.token")).unwrap();
    unary_and_streaming_with_the_token_and_not_without(&dial, token.trim());

    // CORS preflight: answered for the configured origin only.
    let status_path = "/spacetime.miner.v1.MinerService/GetStatus";
    let preflight = |origin: &str| {
        read_reply(
            send(
                &dial,
                &format!("OPTIONS {status_path}"),
                &[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "POST"),
                    (
                        "Access-Control-Request-Headers",
                        "authorization,content-type,x-grpc-web",
                    ),
                ],
                b"",
            ),
            |_| false,
        )
    };
    let ok = preflight(ORIGIN);
    assert_eq!(ok.header("access-control-allow-origin"), Some(ORIGIN));
    assert!(ok
        .header("access-control-allow-headers")
        .is_some_and(|h| h.contains("authorization")));
    let other = preflight("http://evil.example");
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[test]
fn grpc_web_works_over_tls_with_the_token_and_not_without() {
    let home = Home::new().unwrap();
    let tls = TlsFiles::init(&home, &[]).unwrap();
    let d = Minerd::start_in(
        home,
        MinerdOptions {
            args: [
                "--devnet",
                "--set",
                "devnet.listenPort=0",
                "--set",
                "devnet.epochDurationSeconds=1",
                "--set",
                &format!("grpcWebOrigins={ORIGIN}"),
            ]
            .map(String::from)
            .to_vec(),
            config_yaml: Some(tls.yaml()),
            tcp: true,
            ..Default::default()
        },
    )
    .unwrap();
    let dial = Dial {
        addr: d.tcp.clone().unwrap(),
        tls: Some(tls.rustls_client(&[b"http/1.1"]).unwrap()),
    };
    let token = std::fs::read_to_string(d.home.data_dir().join("minerd.token")).unwrap();
    unary_and_streaming_with_the_token_and_not_without(&dial, token.trim());
}
