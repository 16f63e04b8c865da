//! `FakeNtfy`: the publishing side of an ntfy server (docs.ntfy.sh/publish, /config access
//! control), strict about what ntfy rejects, recording every accepted message.
//!
//! Publishing: `POST`/`PUT /<topic>` with the message as the body and the parameters as headers
//! (`X-Title`/`Title`/`ti`/`t`, `X-Priority`/`Priority`/`prio`/`p`, `X-Tags`/`Tags`/`tag`/`ta`,
//! `X-Click`/`Click`, `X-Actions`/`Actions`/`Action`, `X-Markdown`/`Markdown`/`md`, also as query
//! parameters), or JSON to `POST`/`PUT /` (`{"topic","message","title","priority",...}`).
//! Header values may be RFC 2047 encoded-words (`=?UTF-8?B?...?=`) or raw UTF-8; both are decoded
//! the way ntfy does (Go's `mime.WordDecoder.DecodeHeader`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::response::Response;
use axum::Router;
use serde_json::{json, Map, Value};

use super::{
    b64_decode, headers_vec, lock, next_data, random_string, reason_phrase, respond, wait_until,
    Conn, LoggedRequest, Params, ServerCore, ALNUM,
};

/// ntfy's default message size limit. Bodies above it would become attachments on a real server
/// with attachments enabled; the fake rejects them with 413 because snapkeep must stay below.
pub const MESSAGE_LIMIT: usize = 4096;
/// JSON publishing accepts twice the message limit (ntfy: "to account for JSON format overhead").
pub const JSON_LIMIT: usize = 2 * MESSAGE_LIMIT;

/// Who published a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NtfyAuth {
    Anonymous,
    /// `Authorization: Basic` with a user name and the right password.
    Basic {
        user: String,
    },
    /// `Authorization: Bearer tk_...` (or Basic with an empty user and the token as password).
    Token(String),
}

/// An accepted message, as the fake recorded it.
#[derive(Clone, Debug)]
pub struct NtfyMessage {
    pub id: String,
    pub time: i64,
    pub topic: String,
    pub message: String,
    pub title: Option<String>,
    /// 1..=5; 3 when the publisher set none.
    pub priority: u8,
    /// Whether a priority was given explicitly.
    pub priority_set: bool,
    pub tags: Vec<String>,
    pub click: Option<String>,
    /// Parsed actions (ntfy's JSON form: `{"action","label","url",...}`).
    pub actions: Vec<Value>,
    pub markdown: bool,
    pub auth: NtfyAuth,
    /// Published as JSON to `/` (vs. body + headers to `/<topic>`).
    pub via_json: bool,
    pub headers: Vec<(String, String)>,
}

use super::SimpleFault as NtfyFault;

struct Inner {
    access_control: bool,
    anonymous_write: bool,
    users: HashMap<String, String>,
    tokens: Vec<String>,
    /// user or token -> topics it may write (absent = all).
    restricted: HashMap<String, Vec<String>>,
    messages: Vec<NtfyMessage>,
    faults: VecDeque<NtfyFault>,
    log: Vec<LoggedRequest>,
}

/// The fake ntfy server. Dropping it stops the server.
pub struct FakeNtfy {
    core: ServerCore,
    shared: Arc<Mutex<Inner>>,
}

impl Default for FakeNtfy {
    fn default() -> Self {
        Self::start()
    }
}

impl FakeNtfy {
    /// Starts an open server (no access control, like ntfy without `auth-file`).
    pub fn start() -> FakeNtfy {
        let shared = Arc::new(Mutex::new(Inner {
            access_control: false,
            anonymous_write: false,
            users: HashMap::new(),
            tokens: vec![],
            restricted: HashMap::new(),
            messages: vec![],
            faults: VecDeque::new(),
            log: vec![],
        }));
        let app = Router::new().fallback(entry).with_state(shared.clone());
        let core = ServerCore::start("ntfy", app);
        FakeNtfy { core, shared }
    }

    /// Base URL for `NTFY_URL` (`http://127.0.0.1:PORT`, no trailing slash).
    pub fn url(&self) -> String {
        self.core.base_url()
    }

    pub fn topic_url(&self, topic: &str) -> String {
        format!("{}/{}", self.core.base_url(), topic)
    }

    /// Turns on access control (ntfy `auth-file` with `auth-default-access: deny-all`):
    /// anonymous publishing gets 403, wrong credentials 401.
    pub fn enable_access_control(&self) {
        lock(&self.shared).access_control = true;
    }

    /// With access control on, lets anonymous clients publish anyway (`write-only` default).
    pub fn set_anonymous_write(&self, allowed: bool) {
        lock(&self.shared).anonymous_write = allowed;
    }

    /// Adds a user allowed to publish everywhere; enables access control.
    pub fn add_user(&self, user: &str, password: &str) {
        let mut inner = lock(&self.shared);
        inner.access_control = true;
        inner.users.insert(user.into(), password.into());
    }

    /// Adds an access token (`tk_...`) allowed to publish everywhere; enables access control.
    pub fn add_token(&self, token: &str) {
        let mut inner = lock(&self.shared);
        inner.access_control = true;
        inner.tokens.push(token.into());
    }

    /// Limits a user (by name) or token to these topics (others get 403).
    pub fn restrict(&self, user_or_token: &str, topics: &[&str]) {
        lock(&self.shared).restricted.insert(
            user_or_token.into(),
            topics.iter().map(|t| t.to_string()).collect(),
        );
    }

    /// Every accepted message, in arrival order.
    pub fn messages(&self) -> Vec<NtfyMessage> {
        lock(&self.shared).messages.clone()
    }

    pub fn messages_for(&self, topic: &str) -> Vec<NtfyMessage> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until at least `n` messages were accepted or `timeout` passes; returns all
    /// messages so far (fewer than `n` on timeout).
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<NtfyMessage> {
        wait_until(timeout, || {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .unwrap_or_else(|| self.messages())
    }

    pub fn clear_messages(&self) {
        lock(&self.shared).messages.clear();
    }

    /// Every request (accepted or not); `status` 0 = connection dropped.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        lock(&self.shared).log.clone()
    }

    /// The next `n` requests get `status` with ntfy's JSON error body (nothing is recorded).
    pub fn fail_next(&self, n: usize, status: u16) {
        super::queue_faults(&mut lock(&self.shared).faults, n, NtfyFault::Status(status));
    }

    /// The next `n` requests are answered only after `delay`.
    pub fn delay_next(&self, n: usize, delay: Duration) {
        super::queue_faults(&mut lock(&self.shared).faults, n, NtfyFault::Delay(delay));
    }

    /// The next `n` requests have their connection closed without a response.
    pub fn drop_next(&self, n: usize) {
        super::queue_faults(&mut lock(&self.shared).faults, n, NtfyFault::Drop);
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

// ---------------------------------------------------------------------------------------------
// Errors (ntfy's errHTTP JSON: {"code":NNNNN,"http":NNN,"error":"...","link":"..."})
// ---------------------------------------------------------------------------------------------

struct NtfyError {
    code: u32,
    http: u16,
    error: String,
    link: &'static str,
}

impl NtfyError {
    fn new(code: u32, http: u16, error: impl Into<String>, link: &'static str) -> NtfyError {
        NtfyError {
            code,
            http,
            error: error.into(),
            link,
        }
    }

    fn into_response(self) -> Response {
        let mut v = json!({"code": self.code, "http": self.http, "error": self.error});
        if !self.link.is_empty() {
            v["link"] = json!(self.link);
        }
        respond(
            self.http,
            &[
                ("content-type", "application/json".to_string()),
                ("access-control-allow-origin", "*".to_string()),
            ],
            format!("{v}\n"),
        )
    }
}

fn err_not_found() -> NtfyError {
    NtfyError::new(40401, 404, "page not found", "")
}
fn err_unauthorized() -> NtfyError {
    NtfyError::new(
        40101,
        401,
        "unauthorized",
        "https://ntfy.sh/docs/publish/#authentication",
    )
}
fn err_forbidden() -> NtfyError {
    NtfyError::new(
        40301,
        403,
        "forbidden",
        "https://ntfy.sh/docs/publish/#authentication",
    )
}
fn err_priority() -> NtfyError {
    NtfyError::new(
        40007,
        400,
        "invalid priority parameter",
        "https://ntfy.sh/docs/publish/#message-priority",
    )
}
fn err_topic_invalid() -> NtfyError {
    NtfyError::new(40009, 400, "invalid request: topic invalid", "")
}
fn err_topic_disallowed() -> NtfyError {
    NtfyError::new(40010, 400, "invalid request: topic name is disallowed", "")
}
fn err_attachments_disallowed() -> NtfyError {
    NtfyError::new(
        40014,
        400,
        "invalid request: attachments not allowed",
        "https://ntfy.sh/docs/config/#attachments",
    )
}
fn err_actions(why: &str) -> NtfyError {
    NtfyError::new(
        40018,
        400,
        format!("invalid request: actions invalid, {why}"),
        "https://ntfy.sh/docs/publish/#action-buttons",
    )
}
fn err_json_invalid() -> NtfyError {
    NtfyError::new(
        40024,
        400,
        "invalid request: request body must be valid JSON",
        "",
    )
}
fn err_json_too_large() -> NtfyError {
    NtfyError::new(41303, 413, "JSON body too large", "")
}
fn err_message_too_large() -> NtfyError {
    NtfyError::new(
        41301,
        413,
        format!("message too large: {MESSAGE_LIMIT} bytes max (fake ntfy: attachments disabled)"),
        "https://ntfy.sh/docs/publish/#limitations",
    )
}

fn fault_error(status: u16) -> NtfyError {
    let text = match status {
        429 => "limit reached: too many requests, please be nice".to_string(),
        500 => "internal server error".to_string(),
        s => reason_phrase(s).to_lowercase(),
    };
    NtfyError::new(u32::from(status) * 100 + 1, status, text, "")
}

// ---------------------------------------------------------------------------------------------
// Header decoding (Go mime.WordDecoder.DecodeHeader semantics)
// ---------------------------------------------------------------------------------------------

fn q_decode(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c if (b' '..=b'~').contains(&c) || c == b'\n' || c == b'\r' || c == b'\t' => {
                out.push(c)
            }
            _ => return None,
        }
        i += 1;
    }
    Some(out)
}

fn convert_charset(charset: &str, content: &[u8]) -> Option<String> {
    match charset.to_ascii_lowercase().as_str() {
        "utf-8" => Some(String::from_utf8_lossy(content).into_owned()),
        "iso-8859-1" => Some(content.iter().map(|&b| b as char).collect()),
        "us-ascii" => Some(
            content
                .iter()
                .map(|&b| if b < 0x80 { b as char } else { '\u{FFFD}' })
                .collect(),
        ),
        _ => None,
    }
}

/// Decodes RFC 2047 encoded-words; on an unknown charset returns the input unchanged (as ntfy
/// falls back to the raw value when decoding fails).
pub fn decode_header_value(header: &str) -> String {
    decode_words(header).unwrap_or_else(|| header.to_string())
}

fn decode_words(header: &str) -> Option<String> {
    let Some(first) = header.find("=?") else {
        return Some(header.to_string());
    };
    let mut buf = String::new();
    buf.push_str(&header[..first]);
    let mut rest = &header[first..];
    let mut between_words = false;
    while let Some(start) = rest.find("=?") {
        let mut cur = start + 2;
        let Some(i) = rest[cur..].find('?') else {
            break;
        };
        let charset = &rest[cur..cur + i];
        cur += i + 1;
        if rest.len() < cur + 4 {
            break;
        }
        let encoding = rest.as_bytes()[cur];
        cur += 1;
        if rest.as_bytes()[cur] != b'?' {
            break;
        }
        cur += 1;
        let Some(j) = rest[cur..].find("?=") else {
            break;
        };
        let text = &rest[cur..cur + j];
        let end = cur + j + 2;
        let content = match encoding {
            b'B' | b'b' => b64_decode(text, false),
            b'Q' | b'q' => q_decode(text),
            _ => None,
        };
        let Some(content) = content else {
            between_words = false;
            buf.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        };
        let before = &rest[..start];
        if start > 0 && (!between_words || before.chars().any(|c| !" \t\r\n".contains(c))) {
            buf.push_str(before);
        }
        buf.push_str(&convert_charset(charset, &content)?);
        rest = &rest[end..];
        between_words = true;
    }
    buf.push_str(rest);
    Some(buf)
}

// ---------------------------------------------------------------------------------------------
// Actions ("simple" format and JSON), following ntfy's actions.go
// ---------------------------------------------------------------------------------------------

const ACTIONS_MAX: usize = 3;

fn parse_actions(s: &str) -> Result<Vec<Value>, String> {
    let s = s.trim();
    let mut actions: Vec<Map<String, Value>> = if s.starts_with('[') {
        let v: Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
        let arr = v.as_array().ok_or("actions JSON must be an array")?;
        arr.iter()
            .map(|a| {
                a.as_object()
                    .cloned()
                    .ok_or("each action must be an object".to_string())
            })
            .collect::<Result<_, _>>()?
    } else {
        parse_actions_simple(s)?
    };
    if actions.len() > ACTIONS_MAX {
        return Err(format!("only {ACTIONS_MAX} actions allowed"));
    }
    for a in actions.iter_mut() {
        let kind = a
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        a.insert("action".into(), json!(kind));
        if let Some(m) = a
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_uppercase)
        {
            a.insert("method".into(), json!(m));
        }
        let label = a.get("label").and_then(Value::as_str).unwrap_or("");
        let url = a.get("url").and_then(Value::as_str).unwrap_or("");
        match kind.as_str() {
            "view" | "broadcast" | "http" | "copy" => {}
            other => return Err(format!("action '{other}' unknown")),
        }
        if label.is_empty() {
            return Err("parameter 'label' is required".into());
        }
        if (kind == "view" || kind == "http") && url.is_empty() {
            return Err(format!("parameter 'url' is required for action '{kind}'"));
        }
        if kind == "copy"
            && a.get("value")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            return Err("parameter 'value' is required for action 'copy'".into());
        }
        let method = a.get("method").and_then(Value::as_str).unwrap_or("");
        let body = a.get("body").and_then(Value::as_str).unwrap_or("");
        if kind == "http" && (method == "GET" || method == "HEAD") && !body.is_empty() {
            return Err(format!(
                "parameter 'body' cannot be set if method is {method}"
            ));
        }
    }
    Ok(actions.into_iter().map(Value::Object).collect())
}

fn parse_actions_simple(s: &str) -> Result<Vec<Map<String, Value>>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut pos = 0;
    let mut out = vec![];
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\r' | '\n');
    let slurp = |pos: &mut usize| {
        while *pos < chars.len() && is_space(chars[*pos]) {
            *pos += 1;
        }
    };
    while pos < chars.len() {
        let mut action = Map::new();
        let mut section = 0;
        loop {
            slurp(&mut pos);
            // key: ^([-.\w]+)\s*=\s*
            let mut key = String::new();
            let mut k = pos;
            while k < chars.len()
                && (chars[k].is_alphanumeric()
                    || chars[k] == '_'
                    || chars[k] == '-'
                    || chars[k] == '.')
            {
                k += 1;
            }
            if k > pos {
                let mut e = k;
                while e < chars.len() && is_space(chars[e]) {
                    e += 1;
                }
                if e < chars.len() && chars[e] == '=' {
                    key = chars[pos..k].iter().collect();
                    e += 1;
                    while e < chars.len() && is_space(chars[e]) {
                        e += 1;
                    }
                    pos = e;
                }
            }
            let (value, last) = match chars.get(pos) {
                None => (String::new(), true),
                Some(&c) if c == ',' || c == ';' => {
                    pos += 1;
                    (String::new(), c == ';')
                }
                Some(&q) if q == '"' || q == '\'' => {
                    pos += 1;
                    let start = pos;
                    let mut prev = '\0';
                    loop {
                        match chars.get(pos) {
                            None => return Err("unexpected end of input in quoted value".into()),
                            Some(&c) if c == q && prev != '\\' => break,
                            Some(&c) => {
                                prev = c;
                                pos += 1;
                            }
                        }
                    }
                    let v: String = chars[start..pos].iter().collect();
                    pos += 1;
                    slurp(&mut pos);
                    match chars.get(pos) {
                        None => (v, true),
                        Some(&c) if c == ',' || c == ';' => {
                            pos += 1;
                            (v, c == ';')
                        }
                        Some(&c) => return Err(format!("unexpected character '{c}'")),
                    }
                }
                Some(_) => {
                    let start = pos;
                    while pos < chars.len() && chars[pos] != ',' && chars[pos] != ';' {
                        pos += 1;
                    }
                    let v: String = chars[start..pos].iter().collect();
                    let last = pos >= chars.len() || chars[pos] == ';';
                    if pos < chars.len() {
                        pos += 1;
                    }
                    (v, last)
                }
            };
            let kind = action
                .get("action")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let key = match (key.as_str(), section) {
                ("", 0) => "action".to_string(),
                ("", 1) => "label".to_string(),
                ("", 2) if kind == "view" || kind == "http" => "url".to_string(),
                ("", _) => return Err(format!("term '{value}' unknown")),
                (k, _) => k.to_string(),
            };
            if let Some(h) = key.strip_prefix("headers.") {
                let headers = action.entry("headers").or_insert_with(|| json!({}));
                headers[h] = json!(value);
            } else if let Some(x) = key.strip_prefix("extras.") {
                let extras = action.entry("extras").or_insert_with(|| json!({}));
                extras[x] = json!(value);
            } else {
                match key.to_lowercase().as_str() {
                    "action" | "label" | "url" | "method" | "body" | "value" | "intent" => {
                        action.insert(key.to_lowercase(), json!(value));
                    }
                    "clear" => {
                        let l = value.to_lowercase();
                        if !["true", "yes", "1", "false", "no", "0"].contains(&l.as_str()) {
                            return Err(format!("'clear={value}' not allowed"));
                        }
                        action.insert("clear".into(), json!(l == "true" || l == "yes" || l == "1"));
                    }
                    _ => return Err(format!("key '{key}' unknown")),
                }
            }
            slurp(&mut pos);
            if last {
                break;
            }
            section += 1;
        }
        out.push(action);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------------

fn valid_topic(t: &str) -> bool {
    (1..=64).contains(&t.len())
        && t.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

const DISALLOWED_TOPICS: &[&str] = &[
    "docs", "static", "file", "app", "metrics", "account", "settings", "signup", "login", "v1",
];

fn to_bool(v: &str) -> bool {
    matches!(v.to_lowercase().as_str(), "1" | "yes" | "true")
}

fn parse_priority(p: &str) -> Result<u8, ()> {
    let p = p.trim().to_lowercase();
    match p.as_str() {
        "" => Ok(0),
        "1" | "min" => Ok(1),
        "2" | "low" => Ok(2),
        "3" | "default" => Ok(3),
        "4" | "high" => Ok(4),
        "5" | "max" | "urgent" => Ok(5),
        _ => Err(()),
    }
}

/// Header-style parameters: `(lower-case name, decoded value)` plus the query string.
struct ParamSource {
    headers: Vec<(String, String)>,
    query: Params,
}

impl ParamSource {
    fn set(&mut self, name: &str, value: String) {
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_string(), value));
    }

    /// ntfy's readParam: the first non-empty header among `names` (RFC 2047-decoded, trimmed),
    /// then the first non-empty query parameter among `names`.
    fn read(&self, names: &[&str]) -> Option<String> {
        for n in names {
            if let Some((_, v)) = self.headers.iter().find(|(k, _)| k == n) {
                let mut d = decode_header_value(v).trim().to_string();
                // ntfy ignores the RFC 9218 "Priority: u=N[, i]" header.
                if *n == "priority" && is_rfc9218_priority(&d) {
                    d.clear();
                }
                if !d.is_empty() {
                    return Some(d);
                }
            }
        }
        for n in names {
            if let Some(v) = self.query.get(n) {
                if !v.trim().is_empty() {
                    return Some(v.trim().to_string());
                }
            }
        }
        None
    }
}

fn is_rfc9218_priority(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 3
        && b.starts_with(b"u=")
        && b[2].is_ascii_digit()
        && (b.len() == 3 || {
            let rest = v[3..].trim_start_matches(',').trim();
            v[3..].starts_with(',')
                && (rest == "i" || (rest.len() == 1 && rest.as_bytes()[0].is_ascii_digit()))
        })
}

fn identify(inner: &Inner, parts: &Parts, query: &Params) -> Result<NtfyAuth, NtfyError> {
    if !inner.access_control {
        return Ok(NtfyAuth::Anonymous);
    }
    let mut value = parts
        .headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
        .unwrap_or_default();
    if let Some(q) = query.get("authorization").or_else(|| query.get("auth")) {
        if !q.is_empty() {
            let d = b64_decode(q, true).ok_or_else(err_unauthorized)?;
            value = String::from_utf8_lossy(&d).trim().to_string();
        }
    }
    let lower = value.to_lowercase();
    if !(lower.starts_with("basic ") || lower.starts_with("bearer ")) {
        return Ok(NtfyAuth::Anonymous);
    }
    let check_token = |t: &str| {
        if inner.tokens.iter().any(|k| k == t) {
            Ok(NtfyAuth::Token(t.to_string()))
        } else {
            Err(err_unauthorized())
        }
    };
    if lower.starts_with("bearer") {
        return check_token(value[6..].trim());
    }
    let decoded = b64_decode(value[6..].trim(), false)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(err_unauthorized)?;
    let (user, pass) = decoded.split_once(':').ok_or_else(err_unauthorized)?;
    if user.is_empty() {
        return check_token(pass);
    }
    match inner.users.get(user) {
        Some(p) if p == pass => Ok(NtfyAuth::Basic {
            user: user.to_string(),
        }),
        _ => Err(err_unauthorized()),
    }
}

fn authorize_write(inner: &Inner, who: &NtfyAuth, topic: &str) -> Result<(), NtfyError> {
    if !inner.access_control {
        return Ok(());
    }
    let key = match who {
        NtfyAuth::Anonymous => {
            return if inner.anonymous_write {
                Ok(())
            } else {
                Err(err_forbidden())
            }
        }
        NtfyAuth::Basic { user } => user.as_str(),
        NtfyAuth::Token(t) => t.as_str(),
    };
    match inner.restricted.get(key) {
        Some(topics) if !topics.iter().any(|t| t == topic) => Err(err_forbidden()),
        _ => Ok(()),
    }
}

async fn entry(
    State(shared): State<Arc<Mutex<Inner>>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let fault = lock(&shared).faults.pop_front();
    let cut = matches!(fault, Some(NtfyFault::Drop));
    let mut body_len = 0;
    let resp = match fault {
        Some(NtfyFault::Drop) => respond(500, &[], ""),
        Some(NtfyFault::Status(s)) => {
            let _ = drain(body).await;
            fault_error(s).into_response()
        }
        other => {
            if let Some(NtfyFault::Delay(d)) = other {
                tokio::time::sleep(d).await;
            }
            match handle(&shared, &parts, body, &mut body_len).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        }
    };
    let status = if cut { 0 } else { resp.status().as_u16() };
    lock(&shared).log.push(LoggedRequest {
        method: parts.method.to_string(),
        path_and_query,
        status,
        headers: headers_vec(&parts.headers),
        body_len,
    });
    if cut {
        conn.kill();
    }
    resp
}

async fn drain(mut body: Body) -> usize {
    let mut n = 0;
    while let Some(Ok(d)) = next_data(&mut body).await {
        n += d.len();
    }
    n
}

/// Reads up to `limit + 1` bytes (then drains the rest): `(bytes, total_len)`.
async fn read_limited(mut body: Body, limit: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut total = 0;
    while let Some(Ok(d)) = next_data(&mut body).await {
        total += d.len();
        if out.len() <= limit {
            let take = (limit + 1 - out.len()).min(d.len());
            out.extend_from_slice(&d[..take]);
        }
    }
    (out, total)
}

async fn handle(
    shared: &Arc<Mutex<Inner>>,
    parts: &Parts,
    body: Body,
    body_len: &mut usize,
) -> Result<Response, NtfyError> {
    let path = parts.uri.path();
    let query = Params::parse(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let who = identify(&lock(shared), parts, &query)?;
    let method = &parts.method;
    if *method == Method::GET && path == "/v1/health" {
        return Ok(respond(
            200,
            &[("content-type", "application/json".to_string())],
            "{\"healthy\":true}\n",
        ));
    }
    if *method != Method::POST && *method != Method::PUT {
        let _ = drain(body).await;
        return Err(err_not_found());
    }
    let mut src = ParamSource {
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        query,
    };
    let via_json = path == "/";
    let (topic, raw_body) = if via_json {
        let (bytes, total) = read_limited(body, JSON_LIMIT).await;
        *body_len = total;
        if total > JSON_LIMIT {
            return Err(err_json_too_large());
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| err_json_invalid())?;
        let obj = v.as_object().ok_or_else(err_json_invalid)?;
        let s = |k: &str| -> Result<Option<String>, NtfyError> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(err_json_invalid()),
            }
        };
        let topic = s("topic")?.unwrap_or_default();
        if !valid_topic(&topic) {
            return Err(err_topic_invalid());
        }
        let message = s("message")?.unwrap_or_default();
        if let Some(t) = s("title")?.filter(|t| !t.is_empty()) {
            src.set("x-title", t);
        }
        match obj.get("priority") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let p = n.as_i64().ok_or_else(err_json_invalid)?;
                if p != 0 {
                    src.set("x-priority", p.to_string());
                }
            }
            Some(_) => return Err(err_json_invalid()),
        }
        match obj.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                let tags = a
                    .iter()
                    .map(|t| t.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(err_json_invalid)?;
                if !tags.is_empty() {
                    src.set("x-tags", tags.join(","));
                }
            }
            Some(_) => return Err(err_json_invalid()),
        }
        if let Some(c) = s("click")?.filter(|c| !c.is_empty()) {
            src.set("x-click", c);
        }
        match obj.get("actions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(a @ Value::Array(_)) => src.set("x-actions", a.to_string()),
            Some(_) => return Err(err_json_invalid()),
        }
        match obj.get("markdown") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => src.set("x-markdown", "yes".into()),
            Some(_) => return Err(err_json_invalid()),
        }
        for k in ["attach", "filename", "icon", "email", "delay", "call"] {
            s(k)?;
        }
        let message = if message.is_empty() {
            "triggered".to_string()
        } else {
            message
        };
        (topic, message.into_bytes())
    } else {
        let topic = path.strip_prefix('/').unwrap_or("");
        if !valid_topic(topic) {
            let _ = drain(body).await;
            return Err(err_not_found());
        }
        let (bytes, total) = read_limited(body, MESSAGE_LIMIT).await;
        *body_len = total;
        (topic.to_string(), bytes)
    };
    if DISALLOWED_TOPICS.contains(&topic.as_str()) {
        return Err(err_topic_disallowed());
    }
    authorize_write(&lock(shared), &who, &topic)?;

    // Parameters (same order of checks as ntfy's parsePublishParams).
    let title = src.read(&["x-title", "title", "ti", "t"]);
    let click = src.read(&["x-click", "click"]);
    for unsupported in [
        &["x-attach", "attach", "a"][..],
        &["x-filename", "filename", "file", "f"][..],
        &["x-email", "x-e-mail", "email", "e-mail", "mail", "e"][..],
        &["x-call", "call"][..],
        &["x-delay", "delay", "x-at", "at", "x-in", "in"][..],
    ] {
        if src.read(unsupported).is_some() {
            return Err(NtfyError::new(
                40000,
                400,
                format!(
                    "fake ntfy: parameter {} is not supported (attachments, e-mail, calls and scheduled delivery are off)",
                    unsupported[0]
                ),
                "",
            ));
        }
    }
    let message_param = src
        .read(&["x-message", "message", "m"])
        .map(|m| m.replace("\\n", "\n"));
    let priority = match src.read(&["x-priority", "priority", "prio", "p"]) {
        None => 0,
        Some(p) => parse_priority(&p).map_err(|_| err_priority())?,
    };
    let tags: Vec<String> = src
        .read(&["x-tags", "tags", "tag", "ta"])
        .map(|t| {
            t.split(',')
                .map(|s| decode_header_value(s.trim()).trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let actions = match src.read(&["x-actions", "actions", "action"]) {
        None => vec![],
        Some(a) => parse_actions(&a).map_err(|e| err_actions(&e))?,
    };
    let markdown = src
        .read(&["x-markdown", "markdown", "md"])
        .is_some_and(|v| to_bool(&v))
        || src
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.to_lowercase().starts_with("text/markdown"));

    // Body: over the limit or not UTF-8 would be an attachment on real ntfy.
    if raw_body.len() > MESSAGE_LIMIT {
        return Err(err_message_too_large());
    }
    let text = String::from_utf8(raw_body).map_err(|_| err_attachments_disallowed())?;
    let mut message = text.trim().to_string();
    if message.is_empty() {
        message = message_param.unwrap_or_default();
    }
    if message.is_empty() {
        message = "triggered".into();
    }

    let time = chrono::Utc::now().timestamp();
    let id = random_string(12, ALNUM);
    let mut out = json!({
        "id": id,
        "time": time,
        "expires": time + 12 * 3600,
        "event": "message",
        "topic": topic,
        "message": message,
    });
    if let Some(t) = &title {
        out["title"] = json!(t);
    }
    if priority != 0 {
        out["priority"] = json!(priority);
    }
    if !tags.is_empty() {
        out["tags"] = json!(tags);
    }
    if let Some(c) = &click {
        out["click"] = json!(c);
    }
    if !actions.is_empty() {
        out["actions"] = json!(actions);
    }
    if markdown {
        out["content_type"] = json!("text/markdown");
    }
    lock(shared).messages.push(NtfyMessage {
        id,
        time,
        topic,
        message,
        title,
        priority: if priority == 0 { 3 } else { priority },
        priority_set: priority != 0,
        tags,
        click,
        actions,
        markdown,
        auth: who,
        via_json,
        headers: headers_vec(&parts.headers),
    });
    Ok(respond(
        200,
        &[
            ("content-type", "application/json".to_string()),
            ("access-control-allow-origin", "*".to_string()),
        ],
        format!("{out}\n"),
    ))
}
