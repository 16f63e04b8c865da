//! `FakeHealthcheck`: the healthchecks.io Pinging API (healthchecks.io/docs/http_api/).
//!
//! `HEAD`/`GET`/`POST` to `/<uuid>` (success), `/<uuid>/start`, `/<uuid>/fail`, `/<uuid>/log`,
//! `/<uuid>/<exit-status 0..=255>`; optional `?rid=<uuid>`; the request body (up to 100 kB is
//! kept, like the hosted service) is the log. Success answers `200 OK` with the body `OK`.
//! Unknown checks and other paths answer 404 `not found`; an exit status above 255 or a bad
//! `rid` answers 400.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::Router;

use super::{
    headers_vec, lock, next_data, random_u64, respond, wait_until, Conn, LoggedRequest, Params,
    ServerCore,
};

/// Bytes of a ping body the hosted service stores.
pub const PING_BODY_LIMIT: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingKind {
    Success,
    Start,
    Fail,
    Log,
    /// `/<uuid>/<n>`: 0 = success, 1..=255 = failure.
    ExitStatus(u8),
}

impl PingKind {
    /// Whether healthchecks.io would treat this ping as a failure signal.
    pub fn is_failure(&self) -> bool {
        matches!(self, PingKind::Fail) || matches!(self, PingKind::ExitStatus(n) if *n != 0)
    }
}

#[derive(Clone, Debug)]
pub struct Ping {
    pub uuid: String,
    pub kind: PingKind,
    pub method: String,
    /// First `PING_BODY_LIMIT` bytes of the body.
    pub body: Vec<u8>,
    pub body_truncated: bool,
    pub rid: Option<String>,
    pub user_agent: Option<String>,
    pub at: Instant,
}

impl Ping {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

use super::SimpleFault as HcFault;

struct Inner {
    checks: Vec<String>,
    pings: Vec<Ping>,
    faults: VecDeque<HcFault>,
    log: Vec<LoggedRequest>,
}

/// The fake healthchecks.io ping server. Dropping it stops the server.
pub struct FakeHealthcheck {
    core: ServerCore,
    shared: Arc<Mutex<Inner>>,
}

fn new_uuid() -> String {
    let a = random_u64();
    let b = random_u64();
    let h = format!("{a:016x}{b:016x}");
    // Version 4, variant 10xx.
    format!(
        "{}-{}-4{}-{}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        ["8", "9", "a", "b"][(b as usize) % 4],
        &h[17..20],
        &h[20..32]
    )
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

impl Default for FakeHealthcheck {
    fn default() -> Self {
        Self::start()
    }
}

impl FakeHealthcheck {
    /// Starts the server with one registered check (see `uuid()` / `ping_url()`).
    pub fn start() -> FakeHealthcheck {
        let shared = Arc::new(Mutex::new(Inner {
            checks: vec![new_uuid()],
            pings: vec![],
            faults: VecDeque::new(),
            log: vec![],
        }));
        let app = Router::new().fallback(entry).with_state(shared.clone());
        let core = ServerCore::start("healthcheck", app);
        FakeHealthcheck { core, shared }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.core.base_url()
    }

    /// UUID of the default check.
    pub fn uuid(&self) -> String {
        lock(&self.shared).checks[0].clone()
    }

    /// Value for `HEALTHCHECK_URL`: `http://127.0.0.1:PORT/<uuid>`.
    pub fn ping_url(&self) -> String {
        format!("{}/{}", self.url(), self.uuid())
    }

    /// Registers another check; returns its UUID.
    pub fn add_check(&self) -> String {
        let u = new_uuid();
        lock(&self.shared).checks.push(u.clone());
        u
    }

    /// Every accepted ping, in arrival order.
    pub fn pings(&self) -> Vec<Ping> {
        lock(&self.shared).pings.clone()
    }

    pub fn kinds(&self) -> Vec<PingKind> {
        self.pings().into_iter().map(|p| p.kind).collect()
    }

    /// Waits until at least `n` pings arrived or `timeout` passes; returns all pings so far.
    pub fn wait_for_pings(&self, n: usize, timeout: Duration) -> Vec<Ping> {
        wait_until(timeout, || {
            let p = self.pings();
            (p.len() >= n).then_some(p)
        })
        .unwrap_or_else(|| self.pings())
    }

    pub fn clear(&self) {
        lock(&self.shared).pings.clear();
    }

    pub fn request_log(&self) -> Vec<LoggedRequest> {
        lock(&self.shared).log.clone()
    }

    /// The next `n` requests get `status` (body = reason text); nothing is recorded.
    pub fn fail_next(&self, n: usize, status: u16) {
        super::queue_faults(&mut lock(&self.shared).faults, n, HcFault::Status(status));
    }

    pub fn delay_next(&self, n: usize, delay: Duration) {
        super::queue_faults(&mut lock(&self.shared).faults, n, HcFault::Delay(delay));
    }

    pub fn drop_next(&self, n: usize) {
        super::queue_faults(&mut lock(&self.shared).faults, n, HcFault::Drop);
    }

    /// Stops the server now (same as dropping the handle).
    pub fn stop(self) {
        drop(self);
    }

    pub fn pause(&self) {
        self.core.pause();
    }

    pub fn resume(&self) {
        self.core.resume();
    }
}

fn text(status: u16, body: &str) -> Response {
    respond(
        status,
        &[
            ("content-type", "text/plain; charset=utf-8".to_string()),
            ("access-control-allow-origin", "*".to_string()),
            ("ping-body-limit", PING_BODY_LIMIT.to_string()),
        ],
        body.to_string(),
    )
}

async fn entry(
    State(shared): State<Arc<Mutex<Inner>>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let (parts, mut body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let fault = lock(&shared).faults.pop_front();
    if let Some(HcFault::Drop) = fault {
        lock(&shared).log.push(LoggedRequest {
            method: parts.method.to_string(),
            path_and_query,
            status: 0,
            headers: headers_vec(&parts.headers),
            body_len: 0,
        });
        conn.kill();
        return respond(500, &[], "");
    }
    if let Some(HcFault::Delay(d)) = fault {
        tokio::time::sleep(d).await;
    }
    let mut data = Vec::new();
    let mut total = 0;
    while let Some(Ok(chunk)) = next_data(&mut body).await {
        total += chunk.len();
        let room = PING_BODY_LIMIT.saturating_sub(data.len());
        data.extend_from_slice(&chunk[..room.min(chunk.len())]);
    }
    let resp = if let Some(HcFault::Status(s)) = fault {
        text(s, super::reason_phrase(s))
    } else {
        handle(&shared, &parts, data, total)
    };
    lock(&shared).log.push(LoggedRequest {
        method: parts.method.to_string(),
        path_and_query,
        status: resp.status().as_u16(),
        headers: headers_vec(&parts.headers),
        body_len: total,
    });
    resp
}

fn handle(
    shared: &Arc<Mutex<Inner>>,
    parts: &axum::http::request::Parts,
    body: Vec<u8>,
    total: usize,
) -> Response {
    let method = &parts.method;
    if *method != Method::GET && *method != Method::POST && *method != Method::HEAD {
        return text(405, "method not allowed");
    }
    let segs: Vec<&str> = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    let (uuid, kind) = match segs.as_slice() {
        [u] => (*u, PingKind::Success),
        [u, "start"] => (*u, PingKind::Start),
        [u, "fail"] => (*u, PingKind::Fail),
        [u, "log"] => (*u, PingKind::Log),
        [u, n] if !n.is_empty() && n.len() <= 9 && n.bytes().all(|c| c.is_ascii_digit()) => {
            match n.parse::<u32>() {
                Ok(v) if v <= 255 => (*u, PingKind::ExitStatus(v as u8)),
                _ => return text(400, "invalid url format"),
            }
        }
        _ => return text(404, "not found"),
    };
    if !is_uuid(uuid) {
        return text(404, "not found");
    }
    let query = Params::parse(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let rid = query.get("rid").map(str::to_string);
    if let Some(r) = &rid {
        if !is_uuid(r) {
            return text(400, "invalid uuid format");
        }
    }
    let mut inner = lock(shared);
    if !inner.checks.iter().any(|c| c.eq_ignore_ascii_case(uuid)) {
        return text(404, "not found");
    }
    inner.pings.push(Ping {
        uuid: uuid.to_lowercase(),
        kind,
        method: method.to_string(),
        body_truncated: total > body.len(),
        body,
        rid,
        user_agent: parts
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        at: Instant::now(),
    });
    text(200, "OK")
}
