#![allow(dead_code)]
//! Real HTTP servers on 127.0.0.1 that stand in for the remote services snapkeep talks to:
//! Google OAuth 2.0 + Drive v3 ([`google::FakeGoogle`]), ntfy ([`ntfy::FakeNtfy`]) and the
//! healthchecks.io ping API ([`healthcheck::FakeHealthcheck`]).
//!
//! Each server runs on its own thread with its own tokio runtime, so plain `#[test]` functions
//! that spawn the `snapkeep` binary with `std::process::Command` can use them. Every server is
//! bound to `127.0.0.1:0`, stops when its handle is dropped, and can be paused (listener closed,
//! live connections cut, so clients get "connection refused") and resumed on the same port.
//!
//! Use from an integration test with `mod support;`.

pub mod google;
pub mod healthcheck;
pub mod ntfy;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::connect_info::Connected;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::serve::IncomingStream;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

// ---------------------------------------------------------------------------------------------
// Server lifecycle: a thread + runtime per server, pause/resume on the same port.
// ---------------------------------------------------------------------------------------------

enum Cmd {
    Pause(std::sync::mpsc::Sender<()>),
    Resume(std::sync::mpsc::Sender<()>),
    Shutdown,
}

/// The running part shared by all fake servers: owns the background thread and runtime.
pub struct ServerCore {
    addr: SocketAddr,
    cmd: mpsc::UnboundedSender<Cmd>,
    thread: Option<std::thread::JoinHandle<()>>,
    paused: AtomicBool,
}

impl ServerCore {
    /// Binds 127.0.0.1:0 and serves `app` on a new thread. Panics if the socket cannot be bound.
    pub fn start(name: &str, app: Router) -> ServerCore {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("{name}: cannot bind 127.0.0.1:0: {e}"));
        listener
            .set_nonblocking(true)
            .expect("set_nonblocking on listener");
        let addr = listener.local_addr().expect("listener local_addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("fake-{name}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("fake-server-worker")
                    .enable_all()
                    .build()
                    .expect("build tokio runtime for fake server");
                rt.block_on(control_loop(listener, addr, app, rx, ready_tx));
                rt.shutdown_timeout(Duration::from_millis(500));
            })
            .expect("spawn fake server thread");
        ready_rx
            .recv()
            .unwrap_or_else(|_| panic!("{name}: server thread died during start-up"));
        ServerCore {
            addr,
            cmd: tx,
            thread: Some(thread),
            paused: AtomicBool::new(false),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting: closes the listening socket (new connections are refused) and cuts
    /// every open connection (including idle keep-alive ones). Blocks until done.
    pub fn pause(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.cmd.send(Cmd::Pause(tx)).is_ok() {
            let _ = rx.recv();
        }
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Listens again on the same port. Blocks until the socket is bound (panics if it cannot be).
    pub fn resume(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.cmd.send(Cmd::Resume(tx)).is_ok() {
            rx.recv()
                .expect("fake server: resume failed (see panic above)");
        }
        self.paused.store(false, Ordering::SeqCst);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
}

impl Drop for ServerCore {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn control_loop(
    listener: std::net::TcpListener,
    addr: SocketAddr,
    app: Router,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let registry = Registry::default();
    let listener = TcpListener::from_std(listener).expect("register listener with tokio");
    let mut serving = Some(spawn_serve(listener, app.clone(), registry.clone()));
    let _ = ready.send(());
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Pause(ack) => {
                if let Some(task) = serving.take() {
                    task.abort();
                    let _ = task.await;
                }
                registry.kill_all();
                let _ = ack.send(());
            }
            Cmd::Resume(ack) => {
                if serving.is_none() {
                    let mut attempt = 0;
                    let listener = loop {
                        match TcpListener::bind(addr).await {
                            Ok(l) => break l,
                            Err(e) if attempt < 100 => {
                                attempt += 1;
                                let _ = e;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(e) => panic!("fake server: cannot re-bind {addr}: {e}"),
                        }
                    };
                    serving = Some(spawn_serve(listener, app.clone(), registry.clone()));
                }
                let _ = ack.send(());
            }
            Cmd::Shutdown => break,
        }
    }
    if let Some(task) = serving.take() {
        task.abort();
        let _ = task.await;
    }
    registry.kill_all();
}

fn spawn_serve(
    listener: TcpListener,
    app: Router,
    registry: Registry,
) -> tokio::task::JoinHandle<()> {
    let listener = KillableListener {
        inner: listener,
        registry,
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service_with_connect_info::<Conn>()).await;
    })
}

// ---------------------------------------------------------------------------------------------
// Connections that a handler (or pause()) can cut without sending a response.
// ---------------------------------------------------------------------------------------------

struct ConnInner {
    killed: AtomicBool,
    /// A duplicate of the socket, used only to `shutdown()` it from outside the IO object.
    dup: std::net::TcpStream,
    peer: SocketAddr,
}

/// Per-connection handle, available to handlers as `ConnectInfo<Conn>`.
#[derive(Clone)]
pub struct Conn {
    inner: Arc<ConnInner>,
}

impl Conn {
    /// Closes the TCP connection now: nothing more is read, no response is written.
    pub fn kill(&self) {
        self.inner.killed.store(true, Ordering::SeqCst);
        let _ = self.inner.dup.shutdown(Shutdown::Both);
    }

    pub fn is_killed(&self) -> bool {
        self.inner.killed.load(Ordering::SeqCst)
    }

    pub fn peer(&self) -> SocketAddr {
        self.inner.peer
    }
}

#[derive(Clone, Default)]
struct Registry {
    conns: Arc<Mutex<Vec<Weak<ConnInner>>>>,
}

impl Registry {
    fn add(&self, c: &Arc<ConnInner>) {
        let mut v = lock(&self.conns);
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(c));
    }

    fn kill_all(&self) {
        let v = std::mem::take(&mut *lock(&self.conns));
        for w in v {
            if let Some(c) = w.upgrade() {
                (Conn { inner: c }).kill();
            }
        }
    }
}

struct KillableListener {
    inner: TcpListener,
    registry: Registry,
}

pub struct KillableIo {
    stream: TcpStream,
    conn: Arc<ConnInner>,
}

fn killed_err() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut by fake server",
    )
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let wrapped = (|| -> io::Result<KillableIo> {
                        let std_stream = stream.into_std()?;
                        let dup = std_stream.try_clone()?;
                        let stream = TcpStream::from_std(std_stream)?;
                        let _ = stream.set_nodelay(true);
                        Ok(KillableIo {
                            stream,
                            conn: Arc::new(ConnInner {
                                killed: AtomicBool::new(false),
                                dup,
                                peer,
                            }),
                        })
                    })();
                    if let Ok(io) = wrapped {
                        self.registry.add(&io.conn);
                        return (io, peer);
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.conn.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.conn.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        Conn {
            inner: stream.io().conn.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request log shared by the ntfy and healthcheck fakes.
// ---------------------------------------------------------------------------------------------

/// One request as the server saw it. `status` is 0 when the connection was cut without a response.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    /// Path plus `?query` exactly as received.
    pub path_and_query: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl LoggedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn headers_vec(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Small helpers (no extra crates): locking, randomness, base64, URL encoding, bodies.
// ---------------------------------------------------------------------------------------------

/// Locks a mutex, ignoring poisoning (a panicking test must not wedge the server).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut out = String::with_capacity(len);
    let mut bits = random_u64();
    let mut left = 8;
    for _ in 0..len {
        if left == 0 {
            bits = random_u64();
            left = 8;
        }
        out.push(alphabet[(bits & 0xff) as usize % alphabet.len()] as char);
        bits >>= 8;
        left -= 1;
    }
    out
}

const B64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 encoding (standard or URL-safe alphabet, with or without `=` padding).
pub fn b64_encode(data: &[u8], url_safe: bool, pad: bool) -> String {
    let alpha = if url_safe { B64_URL } else { B64_STD };
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = [
            alpha[(n >> 18) as usize & 63],
            alpha[(n >> 12) as usize & 63],
            alpha[(n >> 6) as usize & 63],
            alpha[n as usize & 63],
        ];
        let keep = chunk.len() + 1;
        for (i, c) in chars.iter().enumerate() {
            if i < keep {
                out.push(*c as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Strict base64 decoding. `url_safe` selects the alphabet; padding is optional but, if present,
/// must be correct. Returns `None` on any invalid input.
pub fn b64_decode(s: &str, url_safe: bool) -> Option<Vec<u8>> {
    let alpha = if url_safe { B64_URL } else { B64_STD };
    let trimmed = s.trim_end_matches('=');
    let pad = s.len() - trimmed.len();
    if pad > 2 || (pad > 0 && !s.len().is_multiple_of(4)) {
        return None;
    }
    if trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut nbits = 0;
    for c in trimmed.bytes() {
        let v = alpha.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((acc >> nbits) as u8);
            acc &= (1 << nbits) - 1;
        }
    }
    // Leftover bits must be zero (canonical encoding).
    if acc != 0 {
        return None;
    }
    Some(out)
}

/// Decodes `%XX` escapes (and `+` as space when `plus_as_space`). `None` on a bad escape or
/// invalid UTF-8.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// Ordered key/value pairs from a query string or an `application/x-www-form-urlencoded` body.
#[derive(Clone, Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses `a=1&b=2`. `None` if an escape is malformed.
    pub fn parse(s: &str) -> Option<Params> {
        let mut v = Vec::new();
        for pair in s.split('&').filter(|p| !p.is_empty()) {
            let (k, val) = pair.split_once('=').unwrap_or((pair, ""));
            v.push((percent_decode(k, true)?, percent_decode(val, true)?));
        }
        Some(Params(v))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn count(&self, key: &str) -> usize {
        self.0.iter().filter(|(k, _)| k == key).count()
    }

    pub fn has(&self, key: &str) -> bool {
        self.count(key) > 0
    }
}

/// Why a body could not be read completely.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    /// The client went away or the stream broke.
    Broken,
}

/// Next data chunk of a body, skipping trailers. `None` at the end.
pub async fn next_data(body: &mut Body) -> Option<Result<Bytes, BodyError>> {
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        match frame {
            None => return None,
            Some(Err(_)) => return Some(Err(BodyError::Broken)),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    return Some(Ok(d));
                }
            }
        }
    }
}

/// Reads the whole body, failing once more than `limit` bytes arrive.
pub async fn read_body(mut body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(chunk) = next_data(&mut body).await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Builds a response; panics only on invalid header values, which would be a bug in the fakes.
pub fn respond(status: u16, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut b =
        Response::builder().status(StatusCode::from_u16(status).expect("valid status code"));
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(body.into()).expect("valid response")
}

pub fn json_response(status: u16, value: &serde_json::Value) -> Response {
    respond(
        status,
        &[(
            "content-type",
            "application/json; charset=UTF-8".to_string(),
        )],
        value.to_string(),
    )
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Canonical reason phrase for error bodies.
pub fn reason_phrase(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// A one-shot fault of the simple fake servers (ntfy, healthchecks): answer with a status,
/// answer late, or close the connection without an answer.
#[derive(Clone, Debug)]
pub(crate) enum SimpleFault {
    Status(u16),
    Delay(Duration),
    Drop,
}

/// Queue `n` copies of `fault`; each is used by one request, in order.
pub(crate) fn queue_faults(
    queue: &mut std::collections::VecDeque<SimpleFault>,
    n: usize,
    fault: SimpleFault,
) {
    queue.extend(std::iter::repeat_n(fault, n));
}
