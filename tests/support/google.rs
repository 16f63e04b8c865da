//! `FakeGoogle`: Google's OAuth 2.0 endpoints (token + authorization) and the subset of the
//! Drive v3 REST API that snapkeep uses, on 127.0.0.1, with one-shot fault injection.
//!
//! Behaviour follows Google's published documentation ("Upload file data" / "Perform a resumable
//! upload", Files list/get/create/update/delete, "Search for files and folders", "Resolve errors",
//! OAuth 2.0 for installed apps and for service accounts). Where the fake is stricter than what is
//! documented, or cannot be (e.g. JWT signatures are NOT verified), the item says so.
//!
//! URLs: `drive_endpoint()` is the value for `DRIVE_API_ENDPOINT` (base URL + `/`), `token_uri()`
//! goes into credential files, `auth_uri()` is the consent URL (`GET` it to "consent").

#![allow(clippy::result_large_err)] // ApiError carries a full Google error; test code.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::{
    b64_decode, b64_encode, headers_vec, json_response, lock, next_data, percent_encode,
    random_string, read_body, respond, Conn, Params, ServerCore, ALNUM,
};

/// Non-final resumable chunks must be a multiple of this (256 KiB).
pub const CHUNK_GRANULARITY: u64 = 256 * 1024;
pub const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
pub const SCOPE_DRIVE: &str = "https://www.googleapis.com/auth/drive";
pub const SCOPE_DRIVE_FILE: &str = "https://www.googleapis.com/auth/drive.file";
pub const SCOPE_DRIVE_READONLY: &str = "https://www.googleapis.com/auth/drive.readonly";
pub const SCOPE_DRIVE_METADATA_READONLY: &str =
    "https://www.googleapis.com/auth/drive.metadata.readonly";

const MAX_UPLOAD: usize = 1 << 30;
const MAX_METADATA: usize = 1 << 20;

/// A throwaway RSA key generated for these tests only (it protects nothing). It is here so a
/// service-account key file written by [`FakeGoogle::service_account_json`] can be parsed and
/// used for signing by real client code (yup-oauth2). The fake does not verify signatures.
pub const TEST_ONLY_SA_PRIVATE_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
MIIEuwIBADANBgkqhkiG9w0BAQEFAASCBKUwggShAgEAAoIBAQDkyXWkXVWtwAHG\n\
z8cVdg7mhvOjuB3874OQjLMN2jt+3wOQaAHjOnD++NilRdU90Hc6qykhej4dP7Mt\n\
aLYOASSqyG/XZzzs0h4aVDTM4qCZ71BjjqxvtIGqUxjX1RL09m5FbfC6g9DVyv8Q\n\
y3wQ7/68bAVQaalPKs5b8lYxOXLj3B5q31rmskAXXvQFYKlnZbP90cstwaiHmS+U\n\
s6iCsQVuLqajNmApEbkSrN0ePfL/C1Rk4auBz789+BTWe+Fg70xFOP9dRWKh5j8t\n\
zsRdQVVJDXUMYTIKJsaR7PJ88yr1NYKC+uof1OfMXmCYpBdsfqk4YHNBcNw524n2\n\
AOyiHl39AgMBAAECgf97D3uEoK+O32uu0XqRKjw/9ooWn6WBtIaP7R5ioeZepJZf\n\
yZIHJ06gPW0XePiHLbQnWoMR/shqWYxT+hhZPN3I/wcpiRGJHXwTrWq5MGCY0qC3\n\
uSAHXCn8WhyCyGZQXQnzTnxHcGxkLH+foqD/rn4J26ozSdV7P9fzA4BZLQ2FtPXl\n\
eJN8L/ENN4Jy5vn25gQPUWO0bXDkz5PxSH+ICSXK/VnLGJPPPLSlJrzAAoWviR7W\n\
0YZaHo48P7MVEoWdnS9mO0mjAjNmJM/qij9U8Uy7E1/ug1B2oYO4Ey2xwDqDwyfa\n\
mntH9GDi+CDFK6PGPK/wBQYccqZar57TRw7vQtcCgYEA88UvYcsgZ7VAtoFGDMXk\n\
P6aDJiUDJ0EbhYgjJkDfBG8lOrKvKwbOCYCnaKdIhL43kCnM8ih4sXUetT0DWDTA\n\
FB47IZFklL82Lw/72ZCRXwIM0j4kFeQzciOAX0b1b6rPMV/1dWUkQXRby7/T36LH\n\
14DnZYFZlAMzq30JSDZiHFcCgYEA8EPW4TTr9m24zghzbjcGau/grepotvbTDNrQ\n\
A89r+kAJVyYra/ep6K2dv8GbgEuApxbxGJcqm1jsFeuyKRQik2j1hkp9pMjy+GTu\n\
UFwLL5Zur28TMcIIMWMaaCL5OiVrk9lKXPYdTBmkHH0pb9mPSpszmDJ6oaILwCXe\n\
Y4PeI8sCgYAkcciBsGKp3plML8uPQU68jWJyI3pzNfKtZgsLPwuYmB1Sx0AVCLFp\n\
Dkj5Bnl7Dw0zimxPj+lrbn0mz3Zei5Rj7ZkdjaUh7+xj4NngTxLMx3uvOwceFr3y\n\
RIh+thcfmMPdN+F0qahf+Mt4jLdaafXCrEzsCgigblIdQ1ZN64ODhQKBgQCNvReY\n\
x+Wj/NqXATlHfcKVd2mub6jStw2Oec9ZUBY9DWX1OZlIGlTr5PA43Xhk2SXObKRS\n\
g2spNe4giGkT/sLe/35IeM1iVwGvM6u7UHFw42fsqrRCGFtI91PutyMcAFNUZ02N\n\
RcvGxyGfhN7bExeLRb/MO4tIqxYPhseJIZP8vQKBgDwyNTC25AVP/aKiVbtkDCjN\n\
0Xhvjej/DqUE5pn+xx6Z09bRWwaaghCwN9Fvtp90ygSfirnYYIhqAEqc2CB1suZf\n\
+tPmXs6BuOP/MJtHX+n4ioch8ftE4BLEvvpH/Y1iDpZdnRRGMd0FoUKGUAgO37hE\n\
CuD7oT7a6LGoQgGnia1T\n\
-----END PRIVATE KEY-----\n";

/// Request classes for fault injection and counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /token`
    Token,
    /// `GET /auth`
    Auth,
    /// `GET /drive/v3/about`
    About,
    /// `GET /drive/v3/files`
    List,
    /// `GET /drive/v3/files/{id}` (metadata)
    Get,
    /// `GET /drive/v3/files/{id}?alt=media`
    Download,
    /// `POST /drive/v3/files` (metadata only, e.g. folders)
    Create,
    /// `PATCH /drive/v3/files/{id}` (metadata)
    Update,
    /// `DELETE /drive/v3/files/{id}` and `DELETE /drive/v3/files/trash`
    Delete,
    /// `POST /upload/drive/v3/files?uploadType=media|multipart` (and `PATCH .../files/{id}`)
    Upload,
    /// `POST /upload/drive/v3/files?uploadType=resumable` (session start)
    UploadInit,
    /// `PUT` (or `POST`/`DELETE`) to a resumable session URI (`...&upload_id=...`)
    UploadChunk,
    /// Anything else (answered with 404).
    Other,
    /// Matches every request (only meaningful in `inject`).
    Any,
}

/// One-shot faults. Each injected fault is consumed by the first request of its route.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this status and Google's error JSON (OAuth error JSON on `Route::Token`).
    /// The request has no effect (an upload chunk is NOT received).
    Status(u16),
    /// 429 (`rateLimitExceeded`) or 403 (`userRateLimitExceeded`), optional `Retry-After`.
    RateLimit {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    /// Close the TCP connection without a response. On `Route::UploadChunk` about half of the
    /// body is read first; none of it is recorded as received.
    DropConnection,
    /// Sleep this long, then handle the request normally.
    Delay(Duration),
    /// On an upload route (`Upload`, `UploadChunk` final chunk): flip one byte of the stored
    /// content; `md5Checksum` is computed from the corrupted bytes, so it differs from the MD5 of
    /// what the client sent. On `Route::Download`: serve one flipped byte (storage untouched).
    CorruptStoredContent,
    /// Expire the bearer token this request carries, so it gets 401.
    ExpireTokenBefore,
    /// On `Route::UploadChunk`: accept the chunk but persist only part of it (rounded down to
    /// 256 KiB), answering 308 with the shorter `Range` — Google documents that the server may
    /// persist fewer bytes than sent and that clients must resume from `Range`.
    PartialCommit,
}

/// A file (or folder) as stored by the fake.
#[derive(Clone, Debug)]
pub struct DriveFile {
    pub id: String,
    pub name: String,
    pub mime_type: String,
    pub parents: Vec<String>,
    pub app_properties: BTreeMap<String, String>,
    pub properties: BTreeMap<String, String>,
    pub description: Option<String>,
    pub content: Vec<u8>,
    /// Hex MD5 computed when the content was stored (stale after `corrupt_at_rest`).
    pub md5_checksum: Option<String>,
    pub sha256_checksum: Option<String>,
    pub created_time: DateTime<Utc>,
    pub modified_time: DateTime<Utc>,
    pub trashed: bool,
    pub explicitly_trashed: bool,
    pub starred: bool,
    /// Set for items in a shared drive.
    pub drive_id: Option<String>,
    pub version: u64,
    seq: u64,
}

impl DriveFile {
    pub fn is_folder(&self) -> bool {
        self.mime_type == FOLDER_MIME
    }

    pub fn size(&self) -> Option<u64> {
        (!self.is_folder()).then_some(self.content.len() as u64)
    }
}

/// A resumable upload session, for inspection.
#[derive(Clone, Debug)]
pub struct UploadSessionInfo {
    pub upload_id: String,
    pub received: u64,
    pub total: Option<u64>,
    /// Id of the file created/updated when the upload completed.
    pub file_id: Option<String>,
    pub cancelled: bool,
    /// Chunks accepted (200/308 answers to requests carrying data).
    pub chunks_accepted: usize,
}

/// One request as the fake saw it. `status` is 0 when the connection was cut without a response.
#[derive(Clone, Debug)]
pub struct DriveLogEntry {
    pub route: Route,
    pub method: String,
    pub path_and_query: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Why the fake rejected the request (also sent as the `X-Fake-Detail` response header).
    pub detail: Option<String>,
}

impl DriveLogEntry {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

struct RefreshToken {
    client_id: String,
    scopes: String,
    revoked: bool,
}

struct AccessToken {
    expires: Instant,
    scopes: String,
}

struct AuthCode {
    client_id: String,
    redirect_uri: String,
    scopes: String,
    challenge: Option<(String, String)>,
    offline: bool,
    used: bool,
    issued: Instant,
}

struct Session {
    created: Instant,
    meta: Meta,
    target: Option<String>,
    data: Vec<u8>,
    total: Option<u64>,
    media_type: Option<String>,
    fields: Option<String>,
    supports_all_drives: bool,
    file_id: Option<String>,
    cancelled: bool,
    chunks: usize,
}

struct Inner {
    clients: HashMap<String, String>,
    default_client: (String, String),
    refresh_tokens: HashMap<String, RefreshToken>,
    default_refresh_token: String,
    access_tokens: HashMap<String, AccessToken>,
    tokens_issued: usize,
    token_lifetime: Duration,
    service_accounts: Vec<String>,
    jwt_claims: Vec<Value>,
    auth_codes: HashMap<String, AuthCode>,
    next_auth_code: Option<String>,
    consent_granted: bool,
    files: Vec<DriveFile>,
    root_id: String,
    seq: u64,
    sessions: HashMap<String, Session>,
    session_order: Vec<String>,
    session_lifetime: Duration,
    session_requires_auth: bool,
    max_page_size: Option<usize>,
    page_tokens: HashMap<String, (String, usize)>,
    storage_quota: Option<u64>,
    faults: VecDeque<(Route, Fault)>,
    log: Vec<DriveLogEntry>,
}

struct Shared {
    base: OnceLock<String>,
    inner: Mutex<Inner>,
}

impl Shared {
    fn base(&self) -> &str {
        self.base.get().map(String::as_str).unwrap_or("")
    }

    fn token_uri(&self) -> String {
        format!("{}/token", self.base())
    }
}

/// The fake Google server. Dropping it stops the server.
pub struct FakeGoogle {
    core: ServerCore,
    shared: Arc<Shared>,
}

fn new_drive_id() -> String {
    format!(
        "1{}",
        random_string(
            32,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
    )
}

fn new_root_like_id() -> String {
    format!("0A{}Uk9PVA", random_string(11, ALNUM))
}

fn now_rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Default for FakeGoogle {
    fn default() -> Self {
        Self::start()
    }
}

impl FakeGoogle {
    /// Starts the server with one installed-app OAuth client, one refresh token for it (scope
    /// `drive.file`), one service account, and an empty "My Drive".
    pub fn start() -> FakeGoogle {
        let client_id = format!(
            "{}-{}.apps.googleusercontent.com",
            random_string(12, b"0123456789"),
            random_string(32, b"abcdefghijklmnopqrstuvwxyz0123456789")
        );
        let client_secret = format!("GOCSPX-{}", random_string(28, ALNUM));
        let refresh_token = format!("1//0{}", random_string(98, ALNUM));
        let root_id = new_root_like_id();
        let root = DriveFile::blank(root_id.clone(), "My Drive", FOLDER_MIME, vec![], None, 0);
        let mut clients = HashMap::new();
        clients.insert(client_id.clone(), client_secret.clone());
        let mut refresh_tokens = HashMap::new();
        refresh_tokens.insert(
            refresh_token.clone(),
            RefreshToken {
                client_id: client_id.clone(),
                scopes: SCOPE_DRIVE_FILE.into(),
                revoked: false,
            },
        );
        let inner = Inner {
            clients,
            default_client: (client_id, client_secret),
            refresh_tokens,
            default_refresh_token: refresh_token,
            access_tokens: HashMap::new(),
            tokens_issued: 0,
            token_lifetime: Duration::from_secs(3599),
            service_accounts: vec!["snapkeep-test@fake-project.iam.gserviceaccount.com".into()],
            jwt_claims: vec![],
            auth_codes: HashMap::new(),
            next_auth_code: None,
            consent_granted: true,
            files: vec![root],
            root_id,
            seq: 1,
            sessions: HashMap::new(),
            session_order: vec![],
            session_lifetime: Duration::from_secs(7 * 24 * 3600),
            session_requires_auth: true,
            max_page_size: None,
            page_tokens: HashMap::new(),
            storage_quota: None,
            faults: VecDeque::new(),
            log: vec![],
        };
        let shared = Arc::new(Shared {
            base: OnceLock::new(),
            inner: Mutex::new(inner),
        });
        let app = Router::new().fallback(entry).with_state(shared.clone());
        let core = ServerCore::start("google", app);
        let _ = shared.base.set(core.base_url());
        FakeGoogle { core, shared }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.shared.inner)
    }

    // ----- URLs -----

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.core.base_url()
    }

    /// Value for `DRIVE_API_ENDPOINT`: the base URL with a trailing slash.
    pub fn drive_endpoint(&self) -> String {
        format!("{}/", self.core.base_url())
    }

    pub fn token_uri(&self) -> String {
        self.shared.token_uri()
    }

    pub fn auth_uri(&self) -> String {
        format!("{}/auth", self.core.base_url())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.core.addr()
    }

    // ----- identities and credential files -----

    pub fn client_id(&self) -> String {
        self.inner().default_client.0.clone()
    }

    pub fn client_secret(&self) -> String {
        self.inner().default_client.1.clone()
    }

    /// The pre-registered refresh token (client = `client_id()`, scope `drive.file`).
    pub fn refresh_token(&self) -> String {
        self.inner().default_refresh_token.clone()
    }

    pub fn service_account_email(&self) -> String {
        self.inner().service_accounts[0].clone()
    }

    /// An authorized-user credentials file (ADC shape, `"type": "authorized_user"`) for the
    /// default client and refresh token, with `token_uri` pointing here.
    pub fn authorized_user_json(&self) -> String {
        json!({
            "type": "authorized_user",
            "client_id": self.client_id(),
            "client_secret": self.client_secret(),
            "refresh_token": self.refresh_token(),
            "token_uri": self.token_uri(),
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }

    /// The same credentials in the shape Python google-auth's `Credentials.to_json()` writes
    /// (no `type`; `scopes`, `universe_domain`, `account`; `token` + `expiry` only when
    /// `with_access_token`, in which case a valid access token is issued for it).
    pub fn python_user_credentials_json(&self, with_access_token: bool) -> String {
        let mut v = json!({
            "refresh_token": self.refresh_token(),
            "token_uri": self.token_uri(),
            "client_id": self.client_id(),
            "client_secret": self.client_secret(),
            "scopes": [SCOPE_DRIVE_FILE],
            "universe_domain": "googleapis.com",
            "account": "",
        });
        if with_access_token {
            let tok = self.issue_access_token(SCOPE_DRIVE_FILE);
            let lifetime = self.inner().token_lifetime;
            let expiry = Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or_default();
            v["token"] = json!(tok);
            v["expiry"] = json!(expiry.to_rfc3339_opts(SecondsFormat::Micros, true));
        }
        v.to_string()
    }

    /// A service-account key file for the default service account (real, parseable RSA key
    /// that exists only for these tests), `token_uri` pointing here.
    pub fn service_account_json(&self) -> String {
        let email = self.service_account_email();
        json!({
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": TEST_ONLY_SA_PRIVATE_KEY_PEM,
            "client_email": email,
            "client_id": "100000000000000000001",
            "auth_uri": self.auth_uri(),
            "token_uri": self.token_uri(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", percent_encode(&email)),
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }

    /// An OAuth client file for an installed app (`{"installed": {...}}`), as downloaded from
    /// the Google Cloud console, with `auth_uri`/`token_uri` pointing here.
    pub fn client_secret_json(&self) -> String {
        json!({
            "installed": {
                "client_id": self.client_id(),
                "project_id": "fake-project",
                "auth_uri": self.auth_uri(),
                "token_uri": self.token_uri(),
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_secret": self.client_secret(),
                "redirect_uris": ["http://localhost"],
            }
        })
        .to_string()
    }

    // ----- OAuth controls -----

    pub fn add_client(&self, client_id: &str, client_secret: &str) {
        self.inner()
            .clients
            .insert(client_id.into(), client_secret.into());
    }

    /// Registers a refresh token for `client_id` with space-separated `scopes`; returns it.
    pub fn add_refresh_token(&self, client_id: &str, scopes: &str) -> String {
        let rt = format!("1//0{}", random_string(98, ALNUM));
        self.inner().refresh_tokens.insert(
            rt.clone(),
            RefreshToken {
                client_id: client_id.into(),
                scopes: scopes.into(),
                revoked: false,
            },
        );
        rt
    }

    /// Later refreshes with `rt` get 400 `invalid_grant`.
    pub fn revoke_refresh_token(&self, rt: &str) {
        if let Some(t) = self.inner().refresh_tokens.get_mut(rt) {
            t.revoked = true;
        }
    }

    /// Every access token issued so far becomes expired (Drive answers 401 until a refresh).
    pub fn expire_all_tokens(&self) {
        let past = Instant::now() - Duration::from_secs(1);
        for t in self.inner().access_tokens.values_mut() {
            t.expires = past;
        }
    }

    /// Lifetime of newly issued access tokens (`expires_in`). Default 3599 s.
    pub fn set_token_lifetime(&self, d: Duration) {
        self.inner().token_lifetime = d;
    }

    /// Issues an access token directly (no HTTP); handy for poking Drive from a test.
    pub fn issue_access_token(&self, scopes: &str) -> String {
        let mut inner = self.inner();
        issue_access(&mut inner, scopes)
    }

    /// Number of access tokens issued by the token endpoint (all grant types).
    pub fn access_tokens_issued(&self) -> usize {
        self.inner().tokens_issued
    }

    /// The code the next successful `GET /auth` consent hands out (default: a random one).
    pub fn set_next_auth_code(&self, code: &str) {
        self.inner().next_auth_code = Some(code.into());
    }

    /// Makes `code` valid for the authorization-code grant without going through `/auth`.
    pub fn issue_auth_code(&self, client_id: &str, redirect_uri: &str, scopes: &str) -> String {
        let code = format!("4/0{}", random_string(60, ALNUM));
        self.inner().auth_codes.insert(
            code.clone(),
            AuthCode {
                client_id: client_id.into(),
                redirect_uri: redirect_uri.into(),
                scopes: scopes.into(),
                challenge: None,
                offline: true,
                used: false,
                issued: Instant::now(),
            },
        );
        code
    }

    /// `false`: the user "clicks Cancel" — `/auth` redirects with `error=access_denied`.
    pub fn set_consent(&self, granted: bool) {
        self.inner().consent_granted = granted;
    }

    pub fn add_service_account(&self, email: &str) {
        self.inner().service_accounts.push(email.into());
    }

    /// Decoded JWT claim sets of every jwt-bearer assertion received (valid or not).
    pub fn jwt_claims(&self) -> Vec<Value> {
        self.inner().jwt_claims.clone()
    }

    // ----- Drive controls -----

    /// Caps every `files.list` page at `n` items (Drive may return fewer than `pageSize`), so
    /// clients must follow `nextPageToken`. `None` = only `pageSize` limits.
    pub fn set_max_page_size(&self, n: Option<usize>) {
        self.inner().max_page_size = n;
    }

    /// Resumable sessions older than this answer 404. Default 7 days.
    pub fn set_session_lifetime(&self, d: Duration) {
        self.inner().session_lifetime = d;
    }

    /// Whether session-URI requests need a valid bearer token (default true).
    pub fn set_session_requires_auth(&self, required: bool) {
        self.inner().session_requires_auth = required;
    }

    /// Storage quota in bytes (trash counts); uploads beyond it get 403 `storageQuotaExceeded`.
    pub fn set_storage_quota(&self, bytes: Option<u64>) {
        self.inner().storage_quota = bytes;
    }

    /// Creates a shared drive; returns its id (which is also the id of its root folder).
    pub fn add_shared_drive(&self, name: &str) -> String {
        let id = new_root_like_id();
        let mut inner = self.inner();
        let f = new_file(&mut inner, name, FOLDER_MIME, vec![], Some(id.clone()));
        let mut f = f;
        f.id = id.clone();
        inner.files.push(f);
        id
    }

    /// The id of "My Drive" (also reachable as `root`).
    pub fn root_id(&self) -> String {
        self.inner().root_id.clone()
    }

    /// Creates a folder (parent `None` = My Drive; a shared-drive id or folder works too).
    pub fn create_folder(&self, name: &str, parent: Option<&str>) -> String {
        self.seed(name, FOLDER_MIME, parent, &[], &[])
    }

    /// Creates a file with content and appProperties; returns its id.
    pub fn create_file(
        &self,
        name: &str,
        parent: Option<&str>,
        content: &[u8],
        app_properties: &[(&str, &str)],
    ) -> String {
        self.seed(
            name,
            "application/octet-stream",
            parent,
            content,
            app_properties,
        )
    }

    fn seed(
        &self,
        name: &str,
        mime: &str,
        parent: Option<&str>,
        content: &[u8],
        app_properties: &[(&str, &str)],
    ) -> String {
        let mut inner = self.inner();
        let parent = match parent {
            Some(p) => resolve_alias(&inner, p),
            None => inner.root_id.clone(),
        };
        let drive_id = inner
            .files
            .iter()
            .find(|f| f.id == parent)
            .unwrap_or_else(|| panic!("FakeGoogle: no folder {parent}"))
            .drive_id
            .clone();
        let mut f = new_file(&mut inner, name, mime, vec![parent], drive_id);
        f.app_properties = app_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if mime != FOLDER_MIME {
            set_content(&mut f, content.to_vec());
        }
        let id = f.id.clone();
        inner.files.push(f);
        id
    }

    pub fn set_created_time(&self, id: &str, t: DateTime<Utc>) {
        if let Some(f) = self.inner().files.iter_mut().find(|f| f.id == id) {
            f.created_time = t;
        }
    }

    /// Moves a file (and, for a folder, its descendants) to the trash.
    pub fn trash(&self, id: &str) {
        let mut inner = self.inner();
        set_trashed(&mut inner, id, true);
    }

    /// Bit rot at rest: flips one byte of the stored content WITHOUT updating `md5Checksum`.
    pub fn corrupt_at_rest(&self, id: &str) {
        if let Some(f) = self.inner().files.iter_mut().find(|f| f.id == id) {
            if let Some(b) = f.content.get_mut(0) {
                *b ^= 0xff;
            }
        }
    }

    // ----- inspection -----

    /// Every stored file and folder (trashed included, deleted excluded; roots excluded), in
    /// creation order.
    pub fn files(&self) -> Vec<DriveFile> {
        self.inner()
            .files
            .iter()
            .filter(|f| !f.parents.is_empty())
            .cloned()
            .collect()
    }

    pub fn file(&self, id: &str) -> Option<DriveFile> {
        self.inner().files.iter().find(|f| f.id == id).cloned()
    }

    /// The first file (creation order, trashed or not) with this exact name.
    pub fn file_by_name(&self, name: &str) -> Option<DriveFile> {
        self.files().into_iter().find(|f| f.name == name)
    }

    pub fn files_named(&self, name: &str) -> Vec<DriveFile> {
        self.files()
            .into_iter()
            .filter(|f| f.name == name)
            .collect()
    }

    pub fn content(&self, id: &str) -> Option<Vec<u8>> {
        self.file(id).map(|f| f.content)
    }

    /// Id of the first non-trashed folder with this name.
    pub fn folder_id(&self, name: &str) -> Option<String> {
        self.files()
            .into_iter()
            .find(|f| f.is_folder() && !f.trashed && f.name == name)
            .map(|f| f.id)
    }

    pub fn sessions(&self) -> Vec<UploadSessionInfo> {
        let inner = self.inner();
        inner
            .session_order
            .iter()
            .filter_map(|id| inner.sessions.get(id).map(|s| (id, s)))
            .map(|(id, s)| UploadSessionInfo {
                upload_id: id.clone(),
                received: s.data.len() as u64,
                total: s.total,
                file_id: s.file_id.clone(),
                cancelled: s.cancelled,
                chunks_accepted: s.chunks,
            })
            .collect()
    }

    pub fn request_log(&self) -> Vec<DriveLogEntry> {
        self.inner().log.clone()
    }

    /// Requests seen for `route` (`Route::Any` = all).
    pub fn count(&self, route: Route) -> usize {
        self.inner()
            .log
            .iter()
            .filter(|e| route == Route::Any || e.route == route)
            .count()
    }

    pub fn clear_log(&self) {
        self.inner().log.clear();
    }

    // ----- faults -----

    pub fn inject(&self, route: Route, fault: Fault) {
        self.inject_n(route, fault, 1);
    }

    pub fn inject_n(&self, route: Route, fault: Fault, n: usize) {
        let mut inner = self.inner();
        for _ in 0..n {
            inner.faults.push_back((route, fault.clone()));
        }
    }

    /// Faults injected but not consumed yet.
    pub fn pending_faults(&self) -> usize {
        self.inner().faults.len()
    }

    pub fn clear_faults(&self) {
        self.inner().faults.clear();
    }

    // ----- lifecycle -----

    /// Stops the server now (same as dropping the handle).
    pub fn stop(self) {
        drop(self);
    }

    /// Close the listener and cut open connections: clients get "connection refused".
    pub fn pause(&self) {
        self.core.pause();
    }

    /// Listen again on the same port.
    pub fn resume(&self) {
        self.core.resume();
    }
}

fn new_file(
    inner: &mut Inner,
    name: &str,
    mime: &str,
    parents: Vec<String>,
    drive_id: Option<String>,
) -> DriveFile {
    inner.seq += 1;
    DriveFile::blank(new_drive_id(), name, mime, parents, drive_id, inner.seq)
}

impl DriveFile {
    /// A new, empty, untrashed file or folder created now (version 1).
    fn blank(
        id: String,
        name: &str,
        mime: &str,
        parents: Vec<String>,
        drive_id: Option<String>,
        seq: u64,
    ) -> DriveFile {
        let now = Utc::now();
        DriveFile {
            id,
            name: name.into(),
            mime_type: mime.into(),
            parents,
            app_properties: BTreeMap::new(),
            properties: BTreeMap::new(),
            description: None,
            content: vec![],
            md5_checksum: None,
            sha256_checksum: None,
            created_time: now,
            modified_time: now,
            trashed: false,
            explicitly_trashed: false,
            starred: false,
            drive_id,
            version: 1,
            seq,
        }
    }
}

fn set_content(f: &mut DriveFile, content: Vec<u8>) {
    f.md5_checksum = Some(md5_hex(&content));
    f.sha256_checksum = Some(sha256_hex(&content));
    f.content = content;
    f.modified_time = Utc::now();
    f.version += 1;
}

fn issue_access(inner: &mut Inner, scopes: &str) -> String {
    let tok = format!("ya29.{}", random_string(120, ALNUM));
    let expires = Instant::now() + inner.token_lifetime;
    inner.access_tokens.insert(
        tok.clone(),
        AccessToken {
            expires,
            scopes: scopes.into(),
        },
    );
    tok
}

fn resolve_alias(inner: &Inner, id: &str) -> String {
    if id == "root" {
        inner.root_id.clone()
    } else {
        id.to_string()
    }
}

fn descendants(inner: &Inner, id: &str) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![id.to_string()];
    while let Some(cur) = stack.pop() {
        for f in inner.files.iter().filter(|f| f.parents.contains(&cur)) {
            out.push(f.id.clone());
            stack.push(f.id.clone());
        }
    }
    out
}

fn set_trashed(inner: &mut Inner, id: &str, trashed: bool) {
    let desc = descendants(inner, id);
    for f in inner.files.iter_mut() {
        if f.id == id {
            f.trashed = trashed;
            f.explicitly_trashed = trashed;
        } else if desc.contains(&f.id) {
            f.trashed = trashed;
            f.explicitly_trashed = false;
        }
    }
}

fn used_bytes(inner: &Inner) -> u64 {
    inner
        .files
        .iter()
        .filter(|f| f.drive_id.is_none())
        .map(|f| f.content.len() as u64)
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct ApiError {
    status: u16,
    reason: &'static str,
    domain: &'static str,
    message: String,
    location: Option<(String, &'static str)>,
    retry_after: Option<u64>,
    www_authenticate: Option<&'static str>,
    detail: Option<String>,
}

impl ApiError {
    fn new(status: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            reason,
            domain: "global",
            message: message.into(),
            location: None,
            retry_after: None,
            www_authenticate: None,
            detail: None,
        }
    }

    fn at(mut self, location: &str, kind: &'static str) -> ApiError {
        self.location = Some((location.to_string(), kind));
        self
    }

    fn detail(mut self, d: impl Into<String>) -> ApiError {
        self.detail = Some(d.into());
        self
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "badRequest", message)
    }

    /// Drive's answer to a bad parameter value: `invalid` / "Invalid Value".
    fn invalid_param(param: &str, detail: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid", "Invalid Value")
            .at(param, "parameter")
            .detail(detail)
    }

    fn not_found(id: &str) -> ApiError {
        ApiError::new(404, "notFound", format!("File not found: {id}.")).at("fileId", "parameter")
    }

    fn not_writable(field: &str) -> ApiError {
        ApiError::new(
            403,
            "fieldNotWritable",
            "The resource body includes fields which are not directly writable.",
        )
        .detail(format!("field {field} is read-only"))
    }

    fn into_response(self) -> Response {
        let mut err = json!({
            "message": self.message,
            "domain": self.domain,
            "reason": self.reason,
        });
        if let Some((loc, kind)) = &self.location {
            err["location"] = json!(loc);
            err["locationType"] = json!(kind);
        }
        let body = json!({
            "error": {"code": self.status, "message": self.message, "errors": [err]}
        });
        let mut headers = vec![(
            "content-type",
            "application/json; charset=UTF-8".to_string(),
        )];
        if let Some(s) = self.retry_after {
            headers.push(("retry-after", s.to_string()));
        }
        if let Some(w) = self.www_authenticate {
            headers.push(("www-authenticate", w.to_string()));
        }
        if let Some(d) = &self.detail {
            headers.push(("x-fake-detail", sanitize_header(d)));
        }
        respond(self.status, &headers, body.to_string())
    }
}

fn sanitize_header(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(500)
        .collect()
}

fn status_error(status: u16) -> ApiError {
    let (reason, message) = match status {
        400 => ("badRequest", "Bad Request"),
        401 => ("authError", "Invalid Credentials"),
        403 => ("forbidden", "Forbidden"),
        404 => ("notFound", "Not Found"),
        409 => ("conflict", "Conflict"),
        429 => ("rateLimitExceeded", "Rate Limit Exceeded"),
        500 => ("backendError", "Backend Error"),
        502 => ("badGateway", "Bad Gateway"),
        503 => ("backendError", "Service Unavailable"),
        504 => ("gatewayTimeout", "Gateway Timeout"),
        _ => ("backendError", "Error"),
    };
    let mut e = ApiError::new(status, reason, message).detail("injected fault");
    if status == 429 {
        e.domain = "usageLimits";
    }
    e
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    respond(
        status,
        &[
            (
                "content-type",
                "application/json; charset=utf-8".to_string(),
            ),
            (
                "cache-control",
                "no-cache, no-store, max-age=0, must-revalidate".to_string(),
            ),
            ("x-fake-detail", sanitize_header(description)),
        ],
        json!({"error": error, "error_description": description}).to_string(),
    )
}

fn oauth_fault(status: u16) -> Response {
    match status {
        400 => oauth_error(400, "invalid_grant", "Bad Request"),
        401 => oauth_error(401, "invalid_client", "Unauthorized"),
        429 => oauth_error(429, "rate_limit_exceeded", "Rate Limit Exceeded"),
        s => oauth_error(s, "internal_failure", super::reason_phrase(s)),
    }
}

// ---------------------------------------------------------------------------------------------
// Entry point: classification, faults, logging
// ---------------------------------------------------------------------------------------------

fn classify(method: &Method, path: &str, params: Option<&Params>) -> Route {
    let has = |k: &str| params.map(|p| p.has(k)).unwrap_or(false);
    let get = |k: &str| params.and_then(|p| p.get(k));
    match path {
        "/token" => return Route::Token,
        "/auth" | "/o/oauth2/auth" | "/o/oauth2/v2/auth" => return Route::Auth,
        "/drive/v3/about" => return Route::About,
        "/drive/v3/files" => {
            return match *method {
                Method::GET => Route::List,
                Method::POST => Route::Create,
                _ => Route::Other,
            }
        }
        _ => {}
    }
    if let Some(id) = path.strip_prefix("/drive/v3/files/") {
        if id.is_empty() || id.contains('/') {
            return Route::Other;
        }
        return match *method {
            Method::GET if get("alt") == Some("media") => Route::Download,
            Method::GET => Route::Get,
            Method::PATCH => Route::Update,
            Method::DELETE => Route::Delete,
            _ => Route::Other,
        };
    }
    let upload_path = path == "/upload/drive/v3/files"
        || path == "/resumable/upload/drive/v3/files"
        || path
            .strip_prefix("/upload/drive/v3/files/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    if upload_path {
        if has("upload_id") {
            return Route::UploadChunk;
        }
        let with_id = path.starts_with("/upload/drive/v3/files/");
        let method_ok = if with_id {
            *method == Method::PATCH
        } else {
            *method == Method::POST
        };
        if !method_ok {
            return Route::Other;
        }
        return if get("uploadType") == Some("resumable") {
            Route::UploadInit
        } else {
            Route::Upload
        };
    }
    Route::Other
}

/// Response extension asking `entry` to cut the connection after logging the request.
#[derive(Clone, Copy)]
struct CutConnection;

fn cut_connection() -> Response {
    let mut r = respond(500, &[], "");
    r.extensions_mut().insert(CutConnection);
    r
}

fn take_fault(shared: &Shared, route: Route) -> Option<Fault> {
    let mut inner = lock(&shared.inner);
    let idx = inner
        .faults
        .iter()
        .position(|(r, _)| *r == route || *r == Route::Any)?;
    inner.faults.remove(idx).map(|(_, f)| f)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let (scheme, tok) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| tok.trim().to_string())
}

async fn entry(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let params = Params::parse(parts.uri.query().unwrap_or(""));
    let route = classify(&parts.method, &path, params.as_ref());
    let fault = take_fault(&shared, route);

    let mut early: Option<Response> = None;
    let mut pass_on = None;
    let mut body = Some(body);
    match fault {
        None => {}
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Status(code)) => {
            if let Some(b) = body.take() {
                let _ = read_body(b, MAX_UPLOAD).await;
            }
            early = Some(if route == Route::Token {
                oauth_fault(code)
            } else {
                status_error(code).into_response()
            });
        }
        Some(Fault::RateLimit {
            status,
            retry_after_secs,
        }) => {
            if let Some(b) = body.take() {
                let _ = read_body(b, MAX_UPLOAD).await;
            }
            early = Some(if route == Route::Token {
                let mut r = oauth_fault(status);
                if let Some(s) = retry_after_secs {
                    r.headers_mut()
                        .insert("retry-after", s.to_string().parse().expect("header"));
                }
                r
            } else {
                let mut e = if status == 403 {
                    ApiError::new(403, "userRateLimitExceeded", "User Rate Limit Exceeded")
                } else {
                    ApiError::new(status, "rateLimitExceeded", "Rate Limit Exceeded")
                };
                e.domain = "usageLimits";
                e.retry_after = retry_after_secs;
                e.detail("injected fault").into_response()
            });
        }
        Some(Fault::DropConnection) if route != Route::UploadChunk => {
            early = Some(cut_connection());
        }
        Some(Fault::ExpireTokenBefore) => {
            if let Some(tok) = bearer(&parts.headers) {
                if let Some(t) = lock(&shared.inner).access_tokens.get_mut(&tok) {
                    t.expires = Instant::now() - Duration::from_secs(1);
                }
            }
        }
        Some(other) => pass_on = Some(other),
    }

    let resp = match early {
        Some(r) => r,
        None => {
            let body = body.take().unwrap_or_default();
            match params {
                None => ApiError::bad_request("Invalid query string")
                    .detail("malformed percent-encoding in the query string")
                    .into_response(),
                Some(params) => {
                    match dispatch(&shared, &parts, &params, body, route, pass_on).await {
                        Ok(r) => r,
                        Err(e) => e.into_response(),
                    }
                }
            }
        }
    };
    let cut = resp.extensions().get::<CutConnection>().is_some();
    let status = if cut { 0 } else { resp.status().as_u16() };
    let detail = resp
        .headers()
        .get("x-fake-detail")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    lock(&shared.inner).log.push(DriveLogEntry {
        route,
        method: parts.method.to_string(),
        path_and_query,
        status,
        headers: headers_vec(&parts.headers),
        detail,
    });
    if cut {
        conn.kill();
    }
    resp
}

async fn dispatch(
    shared: &Arc<Shared>,
    parts: &Parts,
    params: &Params,
    body: Body,
    route: Route,
    fault: Option<Fault>,
) -> Result<Response, ApiError> {
    let path = parts.uri.path();
    let file_id = path
        .strip_prefix("/drive/v3/files/")
        .or_else(|| path.strip_prefix("/upload/drive/v3/files/"))
        .and_then(|s| super::percent_decode(s, false));
    if !matches!(route, Route::Token | Route::Auth | Route::Other) {
        check_standard_params(params, route)?;
    }
    match route {
        Route::Token => Ok(token_endpoint(shared, parts, body).await),
        Route::Auth => Ok(auth_endpoint(shared, parts, params)),
        Route::About => about(shared, parts, params),
        Route::List => list_files(shared, parts, params),
        Route::Get => get_file(shared, parts, params, &file_id.unwrap_or_default()),
        Route::Download => download(shared, parts, params, &file_id.unwrap_or_default(), fault),
        Route::Create => create_metadata(shared, parts, params, body).await,
        Route::Update => {
            update_metadata(shared, parts, params, body, &file_id.unwrap_or_default()).await
        }
        Route::Delete => delete_file(shared, parts, params, &file_id.unwrap_or_default()),
        Route::Upload => upload_simple(shared, parts, params, body, file_id, fault).await,
        Route::UploadInit => upload_init(shared, parts, params, body, file_id).await,
        Route::UploadChunk => upload_chunk(shared, parts, params, body, fault).await,
        Route::Other | Route::Any => Err(ApiError::new(404, "notFound", "Not Found")
            .detail(format!("no such endpoint: {} {}", parts.method, path))),
    }
}

fn check_standard_params(params: &Params, route: Route) -> Result<(), ApiError> {
    for (k, v) in &params.0 {
        match k.as_str() {
            "alt" => {
                let ok = v == "json" || (v == "media" && route == Route::Download);
                if !ok {
                    return Err(ApiError::invalid_param("alt", format!("alt={v} not valid here")));
                }
            }
            "prettyPrint" | "supportsAllDrives" | "supportsTeamDrives"
            | "includeItemsFromAllDrives" | "includeTeamDriveItems" | "useContentAsIndexableText"
            | "keepRevisionForever" | "acknowledgeAbuse" | "ignoreDefaultVisibility"
            | "enforceSingleParent"
                if v != "true" && v != "false" =>
            {
                return Err(ApiError::invalid_param(k, format!("{k} must be true or false")));
            }
            "access_token" => {
                return Err(ApiError::bad_request("Invalid Value").detail(
                    "the access_token query parameter is not accepted by Drive; send an Authorization header",
                ))
            }
            _ => {}
        }
        if params.count(k) > 1 && k != "addParents" && k != "removeParents" {
            return Err(ApiError::invalid_param(
                k,
                format!("parameter {k} repeated"),
            ));
        }
    }
    Ok(())
}

fn flag(params: &Params, name: &str) -> bool {
    params.get(name) == Some("true")
}

fn supports_all_drives(params: &Params) -> bool {
    flag(params, "supportsAllDrives") || flag(params, "supportsTeamDrives")
}

// ---------------------------------------------------------------------------------------------
// Bearer-token checks
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Access {
    /// Listing and reading metadata.
    Metadata,
    /// Downloading content.
    Read,
    /// Any change.
    Write,
}

fn authorize(shared: &Shared, headers: &HeaderMap, access: Access) -> Result<(), ApiError> {
    let Some(tok) = bearer(headers) else {
        let mut e = ApiError::new(
            401,
            "required",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )
        .at("Authorization", "header")
        .detail("no Authorization: Bearer header");
        e.message = "Login Required.".into();
        e.www_authenticate = Some("Bearer realm=\"https://accounts.google.com/\"");
        return Err(e);
    };
    let inner = lock(&shared.inner);
    let invalid = |why: &str| {
        let mut e = ApiError::new(401, "authError", "Invalid Credentials")
            .at("Authorization", "header")
            .detail(why.to_string());
        e.www_authenticate =
            Some("Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"");
        e
    };
    let Some(t) = inner.access_tokens.get(&tok) else {
        return Err(invalid("unknown access token"));
    };
    if Instant::now() >= t.expires {
        return Err(invalid("access token expired"));
    }
    let scopes: Vec<&str> = t.scopes.split_whitespace().collect();
    let has = |s: &str| scopes.contains(&s);
    let ok = match access {
        Access::Write => has(SCOPE_DRIVE) || has(SCOPE_DRIVE_FILE),
        Access::Read => has(SCOPE_DRIVE) || has(SCOPE_DRIVE_FILE) || has(SCOPE_DRIVE_READONLY),
        Access::Metadata => {
            has(SCOPE_DRIVE)
                || has(SCOPE_DRIVE_FILE)
                || has(SCOPE_DRIVE_READONLY)
                || has(SCOPE_DRIVE_METADATA_READONLY)
                || has("https://www.googleapis.com/auth/drive.metadata")
        }
    };
    if !ok {
        return Err(
            ApiError::new(403, "insufficientPermissions", "Insufficient Permission").detail(
                format!("token scopes '{}' do not allow this request", t.scopes),
            ),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// OAuth: token endpoint
// ---------------------------------------------------------------------------------------------

async fn token_endpoint(shared: &Shared, parts: &Parts, body: Body) -> Response {
    if parts.method != Method::POST {
        return oauth_error(405, "invalid_request", "Only POST is supported");
    }
    let ct = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = match read_body(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return oauth_error(400, "invalid_request", "Request body too large or broken"),
    };
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return oauth_error(
            400,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let Some(form) = std::str::from_utf8(&body).ok().and_then(Params::parse) else {
        return oauth_error(400, "invalid_request", "Malformed form body");
    };
    for (k, _) in &form.0 {
        if form.count(k) > 1 {
            return oauth_error(400, "invalid_request", &format!("Duplicate parameter: {k}"));
        }
    }
    match form.get("grant_type").unwrap_or("") {
        "refresh_token" => refresh_grant(shared, parts, &form),
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => jwt_grant(shared, &form),
        "authorization_code" => code_grant(shared, parts, &form),
        other => oauth_error(
            400,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {other}"),
        ),
    }
}

/// Client authentication: `client_id`/`client_secret` in the body, or HTTP Basic.
fn client_auth(inner: &Inner, parts: &Parts, form: &Params) -> Result<String, Response> {
    let mut id = form.get("client_id").map(str::to_string);
    let mut secret = form.get("client_secret").map(str::to_string);
    if let Some(v) = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        if let Some(enc) = v.strip_prefix("Basic ") {
            let decoded = b64_decode(enc.trim(), false)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    oauth_error(400, "invalid_request", "Malformed Basic credentials")
                })?;
            let (u, p) = decoded.split_once(':').unwrap_or((&decoded, ""));
            id = super::percent_decode(u, true);
            secret = super::percent_decode(p, true);
        }
    }
    let Some(id) = id.filter(|s| !s.is_empty()) else {
        return Err(oauth_error(
            400,
            "invalid_request",
            "Could not determine client ID from request.",
        ));
    };
    let Some(expected) = inner.clients.get(&id) else {
        return Err(oauth_error(
            401,
            "invalid_client",
            "The OAuth client was not found.",
        ));
    };
    match secret {
        None => Err(oauth_error(
            400,
            "invalid_request",
            "client_secret is missing.",
        )),
        Some(s) if &s != expected => Err(oauth_error(401, "invalid_client", "Unauthorized")),
        Some(_) => Ok(id),
    }
}

fn token_ok(
    inner: &mut Inner,
    scopes: &str,
    refresh: Option<String>,
    with_scope: bool,
) -> Response {
    let tok = issue_access(inner, scopes);
    inner.tokens_issued += 1;
    let mut v = json!({
        "access_token": tok,
        "expires_in": inner.token_lifetime.as_secs(),
        "token_type": "Bearer",
    });
    if with_scope {
        v["scope"] = json!(scopes);
    }
    if let Some(rt) = refresh {
        v["refresh_token"] = json!(rt);
    }
    respond(
        200,
        &[
            (
                "content-type",
                "application/json; charset=utf-8".to_string(),
            ),
            (
                "cache-control",
                "no-cache, no-store, max-age=0, must-revalidate".to_string(),
            ),
        ],
        v.to_string(),
    )
}

fn refresh_grant(shared: &Shared, parts: &Parts, form: &Params) -> Response {
    let mut inner = lock(&shared.inner);
    let client = match client_auth(&inner, parts, form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(rt) = form.get("refresh_token").filter(|s| !s.is_empty()) else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: refresh_token",
        );
    };
    let scopes = match inner.refresh_tokens.get(rt) {
        Some(t) if !t.revoked && t.client_id == client => t.scopes.clone(),
        _ => {
            return oauth_error(400, "invalid_grant", "Token has been expired or revoked.");
        }
    };
    token_ok(&mut inner, &scopes, None, true)
}

fn decode_jwt_part(s: &str) -> Option<Value> {
    let bytes = b64_decode(s, true)?;
    serde_json::from_slice(&bytes).ok()
}

/// JWT bearer grant (service accounts). Checks header `alg` = RS256, `iss` registered, `aud` =
/// this token URI, `exp - iat <= 3600`, `exp` in the future, `iat` not in the future (60 s skew),
/// `scope` present. The RS256 SIGNATURE IS NOT VERIFIED (only that it is non-empty base64url).
fn jwt_grant(shared: &Shared, form: &Params) -> Response {
    let Some(assertion) = form.get("assertion").filter(|s| !s.is_empty()) else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: assertion",
        );
    };
    let token_uri = shared.token_uri();
    let mut inner = lock(&shared.inner);
    let segs: Vec<&str> = assertion.split('.').collect();
    if segs.len() != 3 {
        return oauth_error(400, "invalid_grant", "Invalid JWT: not three segments");
    }
    let (Some(header), Some(claims)) = (decode_jwt_part(segs[0]), decode_jwt_part(segs[1])) else {
        return oauth_error(
            400,
            "invalid_grant",
            "Invalid JWT: header or claim set is not base64url JSON",
        );
    };
    inner.jwt_claims.push(claims.clone());
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return oauth_error(400, "invalid_grant", "Invalid JWT Signature.");
    }
    if segs[2].is_empty() || b64_decode(segs[2], true).is_none() {
        return oauth_error(400, "invalid_grant", "Invalid JWT Signature.");
    }
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if !inner.service_accounts.iter().any(|s| s == iss) {
        return oauth_error(400, "invalid_grant", "Invalid grant: account not found");
    }
    if claims.get("aud").and_then(Value::as_str) != Some(token_uri.as_str()) {
        return oauth_error(
            400,
            "invalid_grant",
            &format!("Invalid JWT: Failed audience check. The expected value was {token_uri}"),
        );
    }
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_i64),
        claims.get("exp").and_then(Value::as_i64),
    ) else {
        return oauth_error(
            400,
            "invalid_grant",
            "Invalid JWT: iat and exp must be integers",
        );
    };
    let now = Utc::now().timestamp();
    if exp <= iat || exp - iat > 3600 || exp <= now || iat > now + 60 {
        return oauth_error(
            400,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    if scope.trim().is_empty() {
        return oauth_error(
            400,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    token_ok(&mut inner, scope, None, false)
}

fn valid_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'))
}

fn code_grant(shared: &Shared, parts: &Parts, form: &Params) -> Response {
    let mut inner = lock(&shared.inner);
    let client = match client_auth(&inner, parts, form) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(code) = form.get("code").filter(|s| !s.is_empty()) else {
        return oauth_error(400, "invalid_request", "Missing required parameter: code");
    };
    let Some(redirect_uri) = form.get("redirect_uri").filter(|s| !s.is_empty()) else {
        return oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: redirect_uri",
        );
    };
    let Some(ac) = inner.auth_codes.get_mut(code) else {
        return oauth_error(400, "invalid_grant", "Malformed auth code.");
    };
    if ac.used || ac.issued.elapsed() > Duration::from_secs(600) || ac.client_id != client {
        return oauth_error(400, "invalid_grant", "Bad Request");
    }
    if ac.redirect_uri != redirect_uri {
        return oauth_error(400, "redirect_uri_mismatch", "Bad Request");
    }
    if let Some((challenge, method)) = &ac.challenge {
        let Some(verifier) = form.get("code_verifier") else {
            return oauth_error(400, "invalid_grant", "Missing code verifier.");
        };
        let computed = if method == "S256" {
            b64_encode(&Sha256::digest(verifier.as_bytes()), true, false)
        } else {
            verifier.to_string()
        };
        if !valid_pkce_string(verifier) || &computed != challenge {
            return oauth_error(400, "invalid_grant", "Invalid code verifier.");
        }
    }
    ac.used = true;
    let scopes = ac.scopes.clone();
    let offline = ac.offline;
    let refresh = offline.then(|| {
        let rt = format!("1//0{}", random_string(98, ALNUM));
        inner.refresh_tokens.insert(
            rt.clone(),
            RefreshToken {
                client_id: client.clone(),
                scopes: scopes.clone(),
                revoked: false,
            },
        );
        rt
    });
    token_ok(&mut inner, &scopes, refresh, true)
}

// ---------------------------------------------------------------------------------------------
// OAuth: authorization endpoint (consent is automatic)
// ---------------------------------------------------------------------------------------------

fn html_error(status: u16, code: &str, text: &str) -> Response {
    respond(
        status,
        &[
            ("content-type", "text/html; charset=utf-8".to_string()),
            ("x-fake-detail", sanitize_header(&format!("{code}: {text}"))),
        ],
        format!("<html><body><h1>Error {status}: {code}</h1><p>{text}</p></body></html>"),
    )
}

fn is_loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = if let Some(h) = host_port.strip_prefix("[::1]") {
        if h.is_empty() || h.starts_with(':') {
            "[::1]"
        } else {
            return false;
        }
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let port_ok = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && h != "[" => p.parse::<u16>().is_ok() || p.ends_with(']'),
        _ => true,
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") && port_ok
}

fn auth_endpoint(shared: &Shared, parts: &Parts, q: &Params) -> Response {
    if parts.method != Method::GET && parts.method != Method::POST {
        return html_error(405, "invalid_request", "method not allowed");
    }
    let mut inner = lock(&shared.inner);
    let client_id = q.get("client_id").unwrap_or("");
    if !inner.clients.contains_key(client_id) {
        return html_error(401, "invalid_client", "The OAuth client was not found.");
    }
    let Some(redirect_uri) = q.get("redirect_uri") else {
        return html_error(
            400,
            "invalid_request",
            "Missing required parameter: redirect_uri",
        );
    };
    if redirect_uri.starts_with("urn:ietf:wg:oauth:2.0:oob") {
        return html_error(
            400,
            "invalid_request",
            "The out-of-band (OOB) flow has been blocked; use a loopback redirect.",
        );
    }
    if !is_loopback_redirect(redirect_uri) {
        return html_error(
            400,
            "redirect_uri_mismatch",
            "Installed apps must redirect to http://127.0.0.1:PORT or http://localhost:PORT.",
        );
    }
    if q.get("response_type") != Some("code") {
        return html_error(
            400,
            "unsupported_response_type",
            "response_type must be code",
        );
    }
    let scope = q.get("scope").unwrap_or("").trim().to_string();
    if scope.is_empty() {
        return html_error(400, "invalid_request", "Missing required parameter: scope");
    }
    let challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
        (None, None) => None,
        (Some(c), m) => {
            let m = m.unwrap_or("plain");
            if (m != "S256" && m != "plain") || !valid_pkce_string(c) {
                return html_error(
                    400,
                    "invalid_request",
                    "Invalid code_challenge or code_challenge_method",
                );
            }
            Some((c.to_string(), m.to_string()))
        }
        (None, Some(_)) => {
            return html_error(
                400,
                "invalid_request",
                "code_challenge_method without code_challenge",
            )
        }
    };
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let state = q
        .get("state")
        .map(|s| format!("state={}&", percent_encode(s)))
        .unwrap_or_default();
    let location = if !inner.consent_granted {
        format!("{redirect_uri}{sep}{state}error=access_denied")
    } else {
        let code = inner
            .next_auth_code
            .take()
            .unwrap_or_else(|| format!("4/0{}", random_string(60, ALNUM)));
        inner.auth_codes.insert(
            code.clone(),
            AuthCode {
                client_id: client_id.into(),
                redirect_uri: redirect_uri.into(),
                scopes: scope.clone(),
                challenge,
                offline: q.get("access_type") == Some("offline"),
                used: false,
                issued: Instant::now(),
            },
        );
        format!(
            "{redirect_uri}{sep}{state}code={}&scope={}",
            percent_encode(&code),
            percent_encode(&scope)
        )
    };
    respond(302, &[("location", location)], "")
}

// ---------------------------------------------------------------------------------------------
// Field selection (`fields=`)
// ---------------------------------------------------------------------------------------------

const FILE_FIELDS: &[&str] = &[
    "kind",
    "driveId",
    "fileExtension",
    "copyRequiresWriterPermission",
    "md5Checksum",
    "contentHints",
    "writersCanShare",
    "viewedByMe",
    "mimeType",
    "exportLinks",
    "parents",
    "thumbnailLink",
    "iconLink",
    "shared",
    "lastModifyingUser",
    "owners",
    "headRevisionId",
    "sharingUser",
    "webViewLink",
    "webContentLink",
    "size",
    "viewersCanCopyContent",
    "permissions",
    "hasThumbnail",
    "spaces",
    "folderColorRgb",
    "id",
    "name",
    "description",
    "starred",
    "trashed",
    "explicitlyTrashed",
    "createdTime",
    "modifiedTime",
    "modifiedByMeTime",
    "viewedByMeTime",
    "sharedWithMeTime",
    "quotaBytesUsed",
    "version",
    "originalFilename",
    "ownedByMe",
    "fullFileExtension",
    "properties",
    "appProperties",
    "isAppAuthorized",
    "teamDriveId",
    "capabilities",
    "hasAugmentedPermissions",
    "trashingUser",
    "thumbnailVersion",
    "trashedTime",
    "modifiedByMe",
    "permissionIds",
    "imageMediaMetadata",
    "videoMediaMetadata",
    "shortcutDetails",
    "contentRestrictions",
    "resourceKey",
    "linkShareMetadata",
    "labelInfo",
    "sha1Checksum",
    "sha256Checksum",
    "inheritedPermissionsDisabled",
    "downloadRestrictions",
];

/// Fields the client may set in a create/update body.
const WRITABLE_FIELDS: &[&str] = &[
    "name",
    "mimeType",
    "parents",
    "appProperties",
    "properties",
    "description",
    "starred",
    "trashed",
    "createdTime",
    "modifiedTime",
    "originalFilename",
    "folderColorRgb",
    "contentHints",
    "copyRequiresWriterPermission",
    "writersCanShare",
    "viewersCanCopyContent",
    "contentRestrictions",
    "shortcutDetails",
    "downloadRestrictions",
    "inheritedPermissionsDisabled",
    "viewedByMeTime",
    "kind",
];

#[derive(Clone, Debug, Default)]
struct Sel {
    all: bool,
    fields: BTreeMap<String, Option<Sel>>,
}

impl Sel {
    fn of(names: &[&str]) -> Sel {
        Sel {
            all: false,
            fields: names.iter().map(|n| (n.to_string(), None)).collect(),
        }
    }

    fn insert(&mut self, path: &[String], sub: Option<Sel>) {
        let name = &path[0];
        if path.len() == 1 && name == "*" {
            self.all = true;
            return;
        }
        let new = if path.len() == 1 {
            sub
        } else {
            let mut s = Sel::default();
            s.insert(&path[1..], sub);
            Some(s)
        };
        match (self.fields.get_mut(name), new) {
            (Some(Some(existing)), Some(n)) => {
                existing.all |= n.all;
                for (k, v) in n.fields {
                    existing.fields.insert(k, v);
                }
            }
            (Some(slot), None) => *slot = None,
            (Some(None), Some(_)) => {}
            (None, n) => {
                self.fields.insert(name.clone(), n);
            }
        }
    }
}

fn parse_sel(s: &str) -> Result<Sel, String> {
    let c: Vec<char> = s.chars().collect();
    let mut pos = 0;
    let sel = parse_sel_list(&c, &mut pos)?;
    skip_ws(&c, &mut pos);
    if pos != c.len() {
        return Err(format!("unexpected '{}' in fields", c[pos]));
    }
    Ok(sel)
}

fn skip_ws(c: &[char], pos: &mut usize) {
    while *pos < c.len() && c[*pos].is_whitespace() {
        *pos += 1;
    }
}

fn sel_ident(c: &[char], pos: &mut usize) -> Result<String, String> {
    skip_ws(c, pos);
    let start = *pos;
    while *pos < c.len() && (c[*pos].is_ascii_alphanumeric() || c[*pos] == '_' || c[*pos] == '*') {
        *pos += 1;
    }
    if start == *pos {
        return Err("empty field name in fields".into());
    }
    Ok(c[start..*pos].iter().collect())
}

fn parse_sel_list(c: &[char], pos: &mut usize) -> Result<Sel, String> {
    let mut sel = Sel::default();
    loop {
        let mut path = vec![sel_ident(c, pos)?];
        skip_ws(c, pos);
        while *pos < c.len() && c[*pos] == '/' {
            *pos += 1;
            path.push(sel_ident(c, pos)?);
            skip_ws(c, pos);
        }
        let sub = if *pos < c.len() && c[*pos] == '(' {
            *pos += 1;
            let s = parse_sel_list(c, pos)?;
            skip_ws(c, pos);
            if *pos >= c.len() || c[*pos] != ')' {
                return Err("unbalanced parentheses in fields".into());
            }
            *pos += 1;
            Some(s)
        } else {
            None
        };
        sel.insert(&path, sub);
        skip_ws(c, pos);
        if *pos < c.len() && c[*pos] == ',' {
            *pos += 1;
            continue;
        }
        return Ok(sel);
    }
}

fn validate_file_sel(sel: &Sel) -> Result<(), String> {
    for name in sel.fields.keys() {
        if !FILE_FIELDS.contains(&name.as_str()) {
            return Err(name.clone());
        }
    }
    Ok(())
}

fn file_sel(params: &Params) -> Result<Sel, ApiError> {
    let Some(f) = params.get("fields") else {
        return Ok(Sel::of(&["kind", "id", "name", "mimeType"]));
    };
    let bad = |name: String| {
        ApiError::new(
            400,
            "invalidParameter",
            format!("Invalid field selection {name}"),
        )
        .at("fields", "parameter")
    };
    let sel = parse_sel(f).map_err(bad)?;
    validate_file_sel(&sel).map_err(bad)?;
    Ok(sel)
}

fn apply_sel(full: &Map<String, Value>, sel: &Sel) -> Map<String, Value> {
    if sel.all {
        return full.clone();
    }
    let mut out = Map::new();
    for (k, sub) in &sel.fields {
        if let Some(v) = full.get(k) {
            match (sub, v) {
                (Some(s), Value::Object(m)) => {
                    out.insert(k.clone(), Value::Object(apply_sel(m, s)));
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    out
}

fn full_json(f: &DriveFile) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("kind".into(), json!("drive#file"));
    m.insert("id".into(), json!(f.id));
    m.insert("name".into(), json!(f.name));
    m.insert("mimeType".into(), json!(f.mime_type));
    if !f.parents.is_empty() {
        m.insert("parents".into(), json!(f.parents));
    }
    if !f.app_properties.is_empty() {
        m.insert("appProperties".into(), json!(f.app_properties));
    }
    if !f.properties.is_empty() {
        m.insert("properties".into(), json!(f.properties));
    }
    if let Some(d) = &f.description {
        m.insert("description".into(), json!(d));
    }
    m.insert("starred".into(), json!(f.starred));
    m.insert("trashed".into(), json!(f.trashed));
    m.insert("explicitlyTrashed".into(), json!(f.explicitly_trashed));
    m.insert("createdTime".into(), json!(now_rfc3339(&f.created_time)));
    m.insert("modifiedTime".into(), json!(now_rfc3339(&f.modified_time)));
    m.insert("version".into(), json!(f.version.to_string()));
    m.insert("spaces".into(), json!(["drive"]));
    m.insert("ownedByMe".into(), json!(f.drive_id.is_none()));
    if let Some(d) = &f.drive_id {
        m.insert("driveId".into(), json!(d));
        m.insert("teamDriveId".into(), json!(d));
    }
    if f.is_folder() {
        m.insert(
            "webViewLink".into(),
            json!(format!("https://drive.google.com/drive/folders/{}", f.id)),
        );
        m.insert("quotaBytesUsed".into(), json!("0"));
    } else {
        m.insert(
            "webViewLink".into(),
            json!(format!(
                "https://drive.google.com/file/d/{}/view?usp=drivesdk",
                f.id
            )),
        );
        m.insert(
            "webContentLink".into(),
            json!(format!(
                "https://drive.google.com/uc?id={}&export=download",
                f.id
            )),
        );
        m.insert("size".into(), json!(f.content.len().to_string()));
        m.insert("quotaBytesUsed".into(), json!(f.content.len().to_string()));
        m.insert("originalFilename".into(), json!(f.name));
        if let Some(md5) = &f.md5_checksum {
            m.insert("md5Checksum".into(), json!(md5));
        }
        if let Some(sha) = &f.sha256_checksum {
            m.insert("sha256Checksum".into(), json!(sha));
        }
        m.insert("headRevisionId".into(), json!(format!("rev{}", f.version)));
        if let Some((_, ext)) = f.name.rsplit_once('.') {
            if !ext.is_empty() {
                m.insert("fileExtension".into(), json!(ext));
                let full = f.name.split_once('.').map(|(_, e)| e).unwrap_or(ext);
                m.insert("fullFileExtension".into(), json!(full));
            }
        }
    }
    if f.trashed {
        m.insert("trashedTime".into(), json!(now_rfc3339(&f.modified_time)));
    }
    m
}

fn file_response(f: &DriveFile, sel: &Sel) -> Response {
    json_response(200, &Value::Object(apply_sel(&full_json(f), sel)))
}

// ---------------------------------------------------------------------------------------------
// Query language (`q=`)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Str(String),
    Word(String),
    Op(&'static str),
    LParen,
    RParen,
    LBrace,
    RBrace,
}

fn lex(q: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = q.chars().collect();
    let mut i = 0;
    let mut out = vec![];
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
            continue;
        }
        match ch {
            '\'' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match c.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => match c.get(i + 1) {
                            Some('\'') => {
                                s.push('\'');
                                i += 2;
                            }
                            Some('\\') => {
                                s.push('\\');
                                i += 2;
                            }
                            _ => {
                                return Err(
                                    "bad escape in string literal (only \\' and \\\\)".into()
                                )
                            }
                        },
                        Some(other) => {
                            s.push(*other);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '{' => {
                out.push(Tok::LBrace);
                i += 1;
            }
            '}' => {
                out.push(Tok::RBrace);
                i += 1;
            }
            '=' => {
                out.push(Tok::Op("="));
                i += 1;
            }
            '!' if c.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op("!="));
                i += 2;
            }
            '<' | '>' => {
                let eq = c.get(i + 1) == Some(&'=');
                out.push(Tok::Op(match (ch, eq) {
                    ('<', true) => "<=",
                    ('<', false) => "<",
                    ('>', true) => ">=",
                    _ => ">",
                }));
                i += if eq { 2 } else { 1 };
            }
            c0 if c0.is_ascii_alphanumeric() || c0 == '_' => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Word(c[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

#[derive(Debug)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    InParents(String),
    Name(Cmp, String),
    Mime(Cmp, String),
    Trashed(Cmp, bool),
    Starred(Cmp, bool),
    Time(bool, Cmp, DateTime<Utc>),
    Has(bool, String, String),
}

struct QParser {
    toks: Vec<Tok>,
    pos: usize,
}

impl QParser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(format!("expected {t:?}, found {other:?}")),
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Word(x)) if x == w => Ok(()),
            other => Err(format!("expected '{w}', found {other:?}")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            other => Err(format!("expected a quoted string, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.is_word("or") {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.is_word("and") {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.is_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        self.term()
    }

    fn cmp(&mut self, allowed: &[Cmp]) -> Result<Cmp, String> {
        let c = match self.next() {
            Some(Tok::Op("=")) => Cmp::Eq,
            Some(Tok::Op("!=")) => Cmp::Ne,
            Some(Tok::Op("<")) => Cmp::Lt,
            Some(Tok::Op("<=")) => Cmp::Le,
            Some(Tok::Op(">")) => Cmp::Gt,
            Some(Tok::Op(">=")) => Cmp::Ge,
            Some(Tok::Word(w)) if w == "contains" => Cmp::Contains,
            other => return Err(format!("expected an operator, found {other:?}")),
        };
        if !allowed.contains(&c) {
            return Err(format!("operator {c:?} not supported for this field"));
        }
        Ok(c)
    }

    fn boolean(&mut self) -> Result<bool, String> {
        match self.next() {
            Some(Tok::Word(w)) if w == "true" => Ok(true),
            Some(Tok::Word(w)) if w == "false" => Ok(false),
            other => Err(format!("expected true or false, found {other:?}")),
        }
    }

    fn term(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Str(s)) => {
                self.expect_word("in")?;
                match self.next() {
                    Some(Tok::Word(w)) if w == "parents" => Ok(Expr::InParents(s)),
                    other => Err(format!(
                        "only '<id>' in parents is supported by the fake, found in {other:?}"
                    )),
                }
            }
            Some(Tok::Word(field)) => match field.as_str() {
                "name" => {
                    let c = self.cmp(&[Cmp::Eq, Cmp::Ne, Cmp::Contains])?;
                    Ok(Expr::Name(c, self.string()?))
                }
                "mimeType" => {
                    let c = self.cmp(&[Cmp::Eq, Cmp::Ne, Cmp::Contains])?;
                    Ok(Expr::Mime(c, self.string()?))
                }
                "trashed" => {
                    let c = self.cmp(&[Cmp::Eq, Cmp::Ne])?;
                    Ok(Expr::Trashed(c, self.boolean()?))
                }
                "starred" => {
                    let c = self.cmp(&[Cmp::Eq, Cmp::Ne])?;
                    Ok(Expr::Starred(c, self.boolean()?))
                }
                "createdTime" | "modifiedTime" => {
                    let c = self.cmp(&[Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge])?;
                    let s = self.string()?;
                    let t = DateTime::parse_from_rfc3339(&s)
                        .map_err(|e| format!("bad RFC 3339 time '{s}': {e}"))?
                        .with_timezone(&Utc);
                    Ok(Expr::Time(field == "createdTime", c, t))
                }
                "appProperties" | "properties" => {
                    self.expect_word("has")?;
                    self.expect(Tok::LBrace)?;
                    self.expect_word("key")?;
                    self.expect(Tok::Op("="))?;
                    let k = self.string()?;
                    self.expect_word("and")?;
                    self.expect_word("value")?;
                    self.expect(Tok::Op("="))?;
                    let v = self.string()?;
                    self.expect(Tok::RBrace)?;
                    Ok(Expr::Has(field == "appProperties", k, v))
                }
                other => Err(format!("query term '{other}' is not supported")),
            },
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

fn parse_q(q: &str) -> Result<Expr, String> {
    let toks = lex(q)?;
    if toks.is_empty() {
        return Err("empty query".into());
    }
    let mut p = QParser { toks, pos: 0 };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(format!("trailing input at {:?}", p.peek()));
    }
    Ok(e)
}

fn cmp_str(c: Cmp, actual: &str, want: &str, word_prefix: bool) -> bool {
    match c {
        Cmp::Eq => actual == want,
        Cmp::Ne => actual != want,
        Cmp::Contains => {
            let a = actual.to_lowercase();
            let w = want.to_lowercase();
            if word_prefix {
                a.starts_with(&w)
                    || a.split(|ch: char| !ch.is_alphanumeric())
                        .any(|tok| tok.starts_with(&w))
            } else {
                a.contains(&w)
            }
        }
        _ => false,
    }
}

fn eval(e: &Expr, f: &DriveFile, root_id: &str) -> bool {
    match e {
        Expr::And(a, b) => eval(a, f, root_id) && eval(b, f, root_id),
        Expr::Or(a, b) => eval(a, f, root_id) || eval(b, f, root_id),
        Expr::Not(a) => !eval(a, f, root_id),
        Expr::InParents(id) => {
            let id = if id == "root" { root_id } else { id.as_str() };
            f.parents.iter().any(|p| p == id)
        }
        Expr::Name(c, v) => cmp_str(*c, &f.name, v, true),
        Expr::Mime(c, v) => cmp_str(*c, &f.mime_type, v, false),
        Expr::Trashed(c, v) => (f.trashed == *v) == (*c == Cmp::Eq),
        Expr::Starred(c, v) => (f.starred == *v) == (*c == Cmp::Eq),
        Expr::Time(created, c, t) => {
            let a = if *created {
                f.created_time
            } else {
                f.modified_time
            };
            match c {
                Cmp::Eq => a == *t,
                Cmp::Ne => a != *t,
                Cmp::Lt => a < *t,
                Cmp::Le => a <= *t,
                Cmp::Gt => a > *t,
                Cmp::Ge => a >= *t,
                Cmp::Contains => false,
            }
        }
        Expr::Has(app, k, v) => {
            let map = if *app {
                &f.app_properties
            } else {
                &f.properties
            };
            map.get(k) == Some(v)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Drive: about, list, get, download, delete
// ---------------------------------------------------------------------------------------------

fn about(shared: &Shared, parts: &Parts, params: &Params) -> Result<Response, ApiError> {
    authorize(shared, &parts.headers, Access::Metadata)?;
    let Some(fields) = params.get("fields") else {
        return Err(ApiError::new(
            400,
            "required",
            "The 'fields' parameter is required for this method.",
        )
        .at("fields", "parameter"));
    };
    let sel = parse_sel(fields).map_err(|e| {
        ApiError::new(
            400,
            "invalidParameter",
            format!("Invalid field selection {e}"),
        )
        .at("fields", "parameter")
    })?;
    let inner = lock(&shared.inner);
    let used = used_bytes(&inner);
    let trash: u64 = inner
        .files
        .iter()
        .filter(|f| f.trashed && f.drive_id.is_none())
        .map(|f| f.content.len() as u64)
        .sum();
    let mut quota = json!({
        "usage": used.to_string(),
        "usageInDrive": used.to_string(),
        "usageInDriveTrash": trash.to_string(),
    });
    if let Some(l) = inner.storage_quota {
        quota["limit"] = json!(l.to_string());
    }
    let full = json!({
        "kind": "drive#about",
        "user": {"kind": "drive#user", "displayName": "Fake User", "me": true,
                 "permissionId": "00000000000000000001", "emailAddress": "fake.user@example.com"},
        "storageQuota": quota,
    });
    let Value::Object(full) = full else {
        unreachable!()
    };
    Ok(json_response(200, &Value::Object(apply_sel(&full, &sel))))
}

const ORDER_KEYS: &[&str] = &[
    "createdTime",
    "folder",
    "modifiedByMeTime",
    "modifiedTime",
    "name",
    "name_natural",
    "quotaBytesUsed",
    "recency",
    "sharedWithMeTime",
    "starred",
    "viewedByMeTime",
];

fn parse_order(s: &str) -> Result<Vec<(String, bool)>, ApiError> {
    let mut out = vec![];
    for part in s.split(',') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let (key, desc) = match words.as_slice() {
            [k] => (*k, false),
            [k, d] if *d == "desc" => (*k, true),
            [k, a] if *a == "asc" => (*k, false),
            _ => {
                return Err(ApiError::invalid_param(
                    "orderBy",
                    format!("bad orderBy term '{part}'"),
                ))
            }
        };
        if !ORDER_KEYS.contains(&key) {
            return Err(ApiError::invalid_param(
                "orderBy",
                format!("unknown orderBy key '{key}'"),
            ));
        }
        out.push((key.to_string(), desc));
    }
    Ok(out)
}

fn compare_files(a: &DriveFile, b: &DriveFile, order: &[(String, bool)]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for (key, desc) in order {
        let o = match key.as_str() {
            "createdTime" => (a.created_time, a.seq).cmp(&(b.created_time, b.seq)),
            "modifiedTime" | "recency" | "modifiedByMeTime" => {
                (a.modified_time, a.seq).cmp(&(b.modified_time, b.seq))
            }
            "name" | "name_natural" => a.name.cmp(&b.name),
            "folder" => b.is_folder().cmp(&a.is_folder()),
            "quotaBytesUsed" => a.content.len().cmp(&b.content.len()),
            "starred" => b.starred.cmp(&a.starred),
            _ => Ordering::Equal,
        };
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.seq.cmp(&b.seq)
}

fn list_files(shared: &Shared, parts: &Parts, params: &Params) -> Result<Response, ApiError> {
    authorize(shared, &parts.headers, Access::Metadata)?;
    let bad_fields = |name: String| {
        ApiError::new(
            400,
            "invalidParameter",
            format!("Invalid field selection {name}"),
        )
        .at("fields", "parameter")
    };
    let sel = match params.get("fields") {
        None => {
            let mut s = Sel::of(&["kind", "incompleteSearch", "nextPageToken"]);
            s.fields.insert(
                "files".into(),
                Some(Sel::of(&["kind", "id", "name", "mimeType"])),
            );
            s
        }
        Some(f) => {
            let s = parse_sel(f).map_err(bad_fields)?;
            for (k, sub) in &s.fields {
                if !["kind", "incompleteSearch", "nextPageToken", "files"].contains(&k.as_str()) {
                    return Err(bad_fields(k.clone()));
                }
                if let Some(sub) = sub {
                    if k != "files" {
                        return Err(bad_fields(k.clone()));
                    }
                    validate_file_sel(sub).map_err(bad_fields)?;
                }
            }
            s
        }
    };
    let page_size = match params.get("pageSize") {
        None => 100,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_param(
                    "pageSize",
                    format!("Invalid value '{s}'. Values must be within the range: [1, 1000]"),
                ))
            }
        },
    };
    let order = match params.get("orderBy") {
        Some(o) => parse_order(o)?,
        None => vec![],
    };
    let query = match params.get("q") {
        Some(q) => Some(parse_q(q).map_err(|e| ApiError::invalid_param("q", e))?),
        None => None,
    };
    let spaces = params.get("spaces").unwrap_or("drive");
    let mut in_drive_space = false;
    for s in spaces.split(',').map(str::trim) {
        match s {
            "drive" => in_drive_space = true,
            "appDataFolder" => {}
            other => {
                return Err(ApiError::invalid_param(
                    "spaces",
                    format!("unsupported space '{other}'"),
                ))
            }
        }
    }
    let corpora = params.get("corpora").unwrap_or("user");
    let drive_id = params.get("driveId");
    let include_all =
        flag(params, "includeItemsFromAllDrives") || flag(params, "includeTeamDriveItems");
    match corpora {
        "user" | "domain" | "allDrives" | "drive" => {}
        other => {
            return Err(ApiError::invalid_param(
                "corpora",
                format!("unsupported corpora '{other}'"),
            ))
        }
    }
    if (corpora == "drive") != drive_id.is_some() {
        return Err(ApiError::bad_request(
            "The driveId parameter must be specified if and only if corpora is set to drive.",
        )
        .detail("corpora=drive and driveId go together"));
    }
    if (corpora == "drive" || corpora == "allDrives") && !include_all {
        return Err(ApiError::new(
            403,
            "teamDrivesParameterRequired",
            "The includeItemsFromAllDrives parameter must be set to true when corpora is set to drive or allDrives.",
        ));
    }

    let mut inner = lock(&shared.inner);
    if let Some(d) = drive_id {
        if !inner
            .files
            .iter()
            .any(|f| f.id == d && f.parents.is_empty())
        {
            return Err(
                ApiError::new(404, "notFound", format!("Shared drive not found: {d}"))
                    .at("driveId", "parameter"),
            );
        }
    }
    let root = inner.root_id.clone();
    let mut items: Vec<&DriveFile> = inner
        .files
        .iter()
        .filter(|f| !f.parents.is_empty() && in_drive_space)
        .filter(|f| match corpora {
            "drive" => f.drive_id.as_deref() == drive_id,
            "allDrives" => true,
            _ => f.drive_id.is_none(),
        })
        .filter(|f| query.as_ref().is_none_or(|q| eval(q, f, &root)))
        .collect();
    items.sort_by(|a, b| compare_files(a, b, &order));
    let signature = format!(
        "{:?}|{:?}|{}|{:?}|{}|{}",
        params.get("q"),
        params.get("orderBy"),
        corpora,
        drive_id,
        spaces,
        include_all
    );
    let offset = match params.get("pageToken") {
        None => 0,
        Some(tok) => match inner.page_tokens.get(tok) {
            Some((sig, off)) if *sig == signature => *off,
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "pageToken",
                    "pageToken used with different q/orderBy/corpora/spaces than the request that produced it",
                ))
            }
            None => return Err(ApiError::invalid_param("pageToken", "unknown pageToken")),
        },
    };
    let n = inner
        .max_page_size
        .map_or(page_size, |m| m.min(page_size))
        .max(1);
    let end = (offset + n).min(items.len());
    let page: Vec<Value> = items[offset.min(end)..end]
        .iter()
        .map(|f| Value::Object(full_json(f)))
        .collect();
    let next = (end < items.len()).then(|| {
        let tok = random_string(40, ALNUM);
        (tok, end)
    });
    if let Some((tok, off)) = &next {
        inner
            .page_tokens
            .insert(tok.clone(), (signature.clone(), *off));
    }
    let mut full = Map::new();
    full.insert("kind".into(), json!("drive#fileList"));
    full.insert("incompleteSearch".into(), json!(false));
    if let Some((tok, _)) = &next {
        full.insert("nextPageToken".into(), json!(tok));
    }
    let files_sel = sel.fields.get("files").cloned();
    let files: Vec<Value> = page
        .into_iter()
        .map(|v| match (&files_sel, v) {
            (Some(Some(s)), Value::Object(m)) => Value::Object(apply_sel(&m, s)),
            (_, v) => v,
        })
        .collect();
    full.insert("files".into(), Value::Array(files));
    let mut top = sel.clone();
    if let Some(slot) = top.fields.get_mut("files") {
        *slot = None;
    }
    Ok(json_response(200, &Value::Object(apply_sel(&full, &top))))
}

fn visible_file<'a>(
    inner: &'a Inner,
    id: &str,
    supports_all: bool,
) -> Result<&'a DriveFile, ApiError> {
    let rid = resolve_alias(inner, id);
    match inner.files.iter().find(|f| f.id == rid) {
        Some(f) if f.drive_id.is_none() || supports_all => Ok(f),
        Some(_) => Err(ApiError::not_found(id)
            .detail("item is in a shared drive; the request needs supportsAllDrives=true")),
        None => Err(ApiError::not_found(id)),
    }
}

fn get_file(
    shared: &Shared,
    parts: &Parts,
    params: &Params,
    id: &str,
) -> Result<Response, ApiError> {
    authorize(shared, &parts.headers, Access::Metadata)?;
    let sel = file_sel(params)?;
    let inner = lock(&shared.inner);
    let f = visible_file(&inner, id, supports_all_drives(params))?;
    Ok(file_response(f, &sel))
}

fn download(
    shared: &Shared,
    parts: &Parts,
    params: &Params,
    id: &str,
    fault: Option<Fault>,
) -> Result<Response, ApiError> {
    authorize(shared, &parts.headers, Access::Read)?;
    let inner = lock(&shared.inner);
    let f = visible_file(&inner, id, supports_all_drives(params))?;
    if f.mime_type.starts_with("application/vnd.google-apps.") {
        return Err(ApiError::new(
            403,
            "fileNotDownloadable",
            "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
        )
        .at("alt", "parameter"));
    }
    let mut data = f.content.clone();
    let mime = f.mime_type.clone();
    drop(inner);
    if fault == Some(Fault::CorruptStoredContent) {
        let mid = data.len() / 2;
        if let Some(b) = data.get_mut(mid) {
            *b ^= 0x01;
        }
    }
    let total = data.len() as u64;
    let range = parts
        .headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(range) = range else {
        return Ok(respond(
            200,
            &[
                ("content-type", mime),
                ("accept-ranges", "bytes".to_string()),
            ],
            data,
        ));
    };
    let unsatisfiable = || respond(416, &[("content-range", format!("bytes */{total}"))], "");
    let Some(spec) = range.strip_prefix("bytes=") else {
        return Ok(unsatisfiable());
    };
    if spec.contains(',') {
        // Multiple ranges are not supported: serve the whole file, as a server may.
        return Ok(respond(200, &[("content-type", mime)], data));
    }
    let (a, b) = spec.split_once('-').unwrap_or(("", ""));
    let (start, end) = match (a.trim().parse::<u64>().ok(), b.trim().parse::<u64>().ok()) {
        (Some(s), Some(e)) if s <= e => (s, e.min(total.saturating_sub(1))),
        (Some(s), None) if b.trim().is_empty() => (s, total.saturating_sub(1)),
        (None, Some(n)) if a.trim().is_empty() && n > 0 => {
            (total.saturating_sub(n), total.saturating_sub(1))
        }
        _ => return Ok(unsatisfiable()),
    };
    if total == 0 || start >= total {
        return Ok(unsatisfiable());
    }
    Ok(respond(
        206,
        &[
            ("content-type", mime),
            ("content-range", format!("bytes {start}-{end}/{total}")),
        ],
        data[start as usize..=end as usize].to_vec(),
    ))
}

fn delete_file(
    shared: &Shared,
    parts: &Parts,
    params: &Params,
    id: &str,
) -> Result<Response, ApiError> {
    authorize(shared, &parts.headers, Access::Write)?;
    let mut inner = lock(&shared.inner);
    if id == "trash" {
        let trashed: Vec<String> = inner
            .files
            .iter()
            .filter(|f| f.explicitly_trashed && f.drive_id.is_none())
            .map(|f| f.id.clone())
            .collect();
        let mut gone = trashed.clone();
        for t in &trashed {
            gone.extend(descendants(&inner, t));
        }
        inner.files.retain(|f| !gone.contains(&f.id));
        return Ok(respond(204, &[], ""));
    }
    let f = visible_file(&inner, id, supports_all_drives(params))?;
    if f.parents.is_empty() {
        return Err(ApiError::new(
            403,
            "insufficientFilePermissions",
            "The user does not have sufficient permissions for this file.",
        )
        .detail("cannot delete a root folder"));
    }
    let fid = f.id.clone();
    let mut gone = descendants(&inner, &fid);
    gone.push(fid);
    inner.files.retain(|f| !gone.contains(&f.id));
    Ok(respond(204, &[], ""))
}

// ---------------------------------------------------------------------------------------------
// Drive: metadata bodies, create, update
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct Meta {
    name: Option<String>,
    mime_type: Option<String>,
    parents: Option<Vec<String>>,
    app_properties: Option<Map<String, Value>>,
    properties: Option<Map<String, Value>>,
    description: Option<Option<String>>,
    trashed: Option<bool>,
    starred: Option<bool>,
    created_time: Option<DateTime<Utc>>,
    modified_time: Option<DateTime<Utc>>,
}

fn is_json_content_type(ct: &str) -> bool {
    ct.split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

fn content_type(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn parse_meta(body: &[u8], ct: Option<&str>, update: bool) -> Result<Meta, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Meta::default());
    }
    if !ct.is_some_and(is_json_content_type) {
        return Err(ApiError::bad_request("Bad Request").detail(format!(
            "metadata must be sent as application/json, got {ct:?}"
        )));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(400, "parseError", "Parse Error").detail(format!("metadata is not JSON: {e}"))
    })?;
    let Value::Object(obj) = v else {
        return Err(ApiError::new(400, "parseError", "Parse Error")
            .detail("metadata must be a JSON object"));
    };
    let mut m = Meta::default();
    let wrong_type = |k: &str| {
        ApiError::bad_request(format!("Invalid value for field {k}"))
            .detail(format!("{k} has the wrong JSON type"))
    };
    for (k, v) in &obj {
        if !FILE_FIELDS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Invalid JSON payload received. Unknown name \"{k}\""
            ))
            .detail(format!("unknown File field {k}")));
        }
        if !WRITABLE_FIELDS.contains(&k.as_str()) {
            return Err(ApiError::not_writable(k));
        }
        match k.as_str() {
            "name" => m.name = Some(v.as_str().ok_or_else(|| wrong_type(k))?.to_string()),
            "mimeType" => m.mime_type = Some(v.as_str().ok_or_else(|| wrong_type(k))?.to_string()),
            "parents" => {
                if update {
                    return Err(ApiError::new(
                        403,
                        "fieldNotWritable",
                        "The parents field is not directly writable in update requests. Use the addParents and removeParents parameters instead.",
                    ));
                }
                let arr = v.as_array().ok_or_else(|| wrong_type(k))?;
                let ps = arr
                    .iter()
                    .map(|p| p.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| wrong_type(k))?;
                m.parents = Some(ps);
            }
            "appProperties" | "properties" => {
                let map = v.as_object().ok_or_else(|| wrong_type(k))?;
                for (pk, pv) in map {
                    let vs = match pv {
                        Value::String(s) => s.as_str(),
                        Value::Null => "",
                        _ => return Err(wrong_type(k)),
                    };
                    if pk.is_empty() || pk.len() + vs.len() > 124 {
                        return Err(ApiError::bad_request(
                            "The size of a property, computed as the sum of the UTF-8 byte lengths of its key and value, must be at most 124 bytes.",
                        )
                        .detail(format!("{k}.{pk} too long or empty key")));
                    }
                }
                if k == "appProperties" {
                    m.app_properties = Some(map.clone());
                } else {
                    m.properties = Some(map.clone());
                }
            }
            "description" => {
                m.description = Some(match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    _ => return Err(wrong_type(k)),
                })
            }
            "trashed" => m.trashed = Some(v.as_bool().ok_or_else(|| wrong_type(k))?),
            "starred" => m.starred = Some(v.as_bool().ok_or_else(|| wrong_type(k))?),
            "createdTime" | "modifiedTime" => {
                if update && k == "createdTime" {
                    return Err(ApiError::not_writable(k));
                }
                let s = v.as_str().ok_or_else(|| wrong_type(k))?;
                let t = DateTime::parse_from_rfc3339(s)
                    .map_err(|_| wrong_type(k))?
                    .with_timezone(&Utc);
                if k == "createdTime" {
                    m.created_time = Some(t);
                } else {
                    m.modified_time = Some(t);
                }
            }
            "kind" if v.as_str() != Some("drive#file") => return Err(wrong_type(k)),
            _ => {}
        }
    }
    Ok(m)
}

fn merge_props(
    target: &mut BTreeMap<String, String>,
    changes: &Map<String, Value>,
) -> Result<(), ApiError> {
    for (k, v) in changes {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::String(s) => {
                target.insert(k.clone(), s.clone());
            }
            _ => {}
        }
    }
    if target.len() > 30 {
        return Err(ApiError::bad_request(
            "The limit of 30 private properties per file per app has been exceeded.",
        ));
    }
    Ok(())
}

/// Checks parents for a new file; returns (parents, drive_id).
fn check_parents(
    inner: &Inner,
    parents: Option<&Vec<String>>,
    supports_all: bool,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let parents = match parents {
        None => return Ok((vec![inner.root_id.clone()], None)),
        Some(p) if p.is_empty() => return Ok((vec![inner.root_id.clone()], None)),
        Some(p) => p,
    };
    if parents.len() > 1 {
        return Err(ApiError::new(
            403,
            "cannotAddParent",
            "Increasing the number of parents is not allowed. A file can only have one parent.",
        ));
    }
    let f = visible_file(inner, &parents[0], supports_all)?;
    if !f.is_folder() {
        return Err(
            ApiError::bad_request("The specified parent is not a folder.")
                .detail(format!("parent {} is not a folder", parents[0])),
        );
    }
    Ok((vec![f.id.clone()], f.drive_id.clone()))
}

fn quota_check(inner: &Inner, extra: u64, drive_id: Option<&String>) -> Result<(), ApiError> {
    if drive_id.is_some() {
        return Ok(());
    }
    if let Some(limit) = inner.storage_quota {
        if used_bytes(inner) + extra > limit {
            let mut e = ApiError::new(
                403,
                "storageQuotaExceeded",
                "The user's Drive storage quota has been exceeded.",
            );
            e.domain = "usageLimits";
            return Err(e);
        }
    }
    Ok(())
}

/// Creates a file from metadata (+ optional content) after all checks. Returns its id.
fn create_from_meta(
    inner: &mut Inner,
    meta: &Meta,
    content: Option<Vec<u8>>,
    media_type: Option<&str>,
    supports_all: bool,
    corrupt: bool,
) -> Result<String, ApiError> {
    let (parents, drive_id) = check_parents(inner, meta.parents.as_ref(), supports_all)?;
    let size = content.as_ref().map_or(0, |c| c.len() as u64);
    quota_check(inner, size, drive_id.as_ref())?;
    let mime = meta
        .mime_type
        .clone()
        .or_else(|| media_type.map(str::to_string))
        .unwrap_or_else(|| "application/octet-stream".into());
    let name = meta.name.clone().unwrap_or_else(|| "Untitled".into());
    let mut f = new_file(inner, &name, &mime, parents, drive_id);
    if let Some(p) = &meta.app_properties {
        merge_props(&mut f.app_properties, p)?;
    }
    if let Some(p) = &meta.properties {
        merge_props(&mut f.properties, p)?;
    }
    f.description = meta.description.clone().flatten();
    f.starred = meta.starred.unwrap_or(false);
    if !f.is_folder() {
        let mut data = content.unwrap_or_default();
        if corrupt {
            if let Some(b) = data.get_mut(0) {
                *b ^= 0xff;
            }
        }
        set_content(&mut f, data);
        f.version = 1;
    } else if content.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(ApiError::bad_request("Folders cannot have content."));
    }
    if let Some(t) = meta.created_time {
        f.created_time = t;
    }
    if let Some(t) = meta.modified_time {
        f.modified_time = t;
    }
    let id = f.id.clone();
    let trashed = meta.trashed.unwrap_or(false);
    inner.files.push(f);
    if trashed {
        set_trashed(inner, &id, true);
    }
    Ok(id)
}

/// Applies metadata (+ optional new content) to an existing file.
fn update_from_meta(
    inner: &mut Inner,
    id: &str,
    meta: &Meta,
    params: &Params,
    content: Option<Vec<u8>>,
    media_type: Option<&str>,
    corrupt: bool,
) -> Result<(), ApiError> {
    let supports_all = supports_all_drives(params);
    let fid = visible_file(inner, id, supports_all)?.id.clone();
    if let Some(c) = &content {
        let drive = visible_file(inner, &fid, supports_all)?.drive_id.clone();
        let old = visible_file(inner, &fid, supports_all)?.content.len() as u64;
        quota_check(inner, (c.len() as u64).saturating_sub(old), drive.as_ref())?;
    }
    // addParents / removeParents
    let mut new_parents = visible_file(inner, &fid, supports_all)?.parents.clone();
    if let Some(rem) = params.get("removeParents") {
        for r in rem.split(',').filter(|s| !s.is_empty()) {
            let r = resolve_alias(inner, r);
            if !new_parents.contains(&r) {
                return Err(ApiError::bad_request("Bad Request")
                    .detail(format!("removeParents: {r} is not a parent")));
            }
            new_parents.retain(|p| *p != r);
        }
    }
    if let Some(add) = params.get("addParents") {
        for a in add.split(',').filter(|s| !s.is_empty()) {
            let pf = visible_file(inner, a, supports_all)?;
            if !pf.is_folder() {
                return Err(ApiError::bad_request(
                    "The specified parent is not a folder.",
                ));
            }
            if !new_parents.contains(&pf.id) {
                new_parents.push(pf.id.clone());
            }
        }
    }
    if new_parents.len() > 1 {
        return Err(ApiError::new(
            403,
            "cannotAddParent",
            "Increasing the number of parents is not allowed. A file can only have one parent.",
        ));
    }
    if new_parents.is_empty() {
        return Err(ApiError::bad_request("Bad Request").detail("a file must keep one parent"));
    }
    let f = inner
        .files
        .iter_mut()
        .find(|f| f.id == fid)
        .expect("file exists");
    let mut app = f.app_properties.clone();
    if let Some(p) = &meta.app_properties {
        merge_props(&mut app, p)?;
    }
    let mut props = f.properties.clone();
    if let Some(p) = &meta.properties {
        merge_props(&mut props, p)?;
    }
    f.app_properties = app;
    f.properties = props;
    f.parents = new_parents;
    if let Some(n) = &meta.name {
        f.name = n.clone();
    }
    if let Some(m) = media_type
        .map(str::to_string)
        .or_else(|| meta.mime_type.clone())
    {
        if !f.is_folder() {
            f.mime_type = m;
        }
    }
    if let Some(d) = &meta.description {
        f.description = d.clone();
    }
    if let Some(s) = meta.starred {
        f.starred = s;
    }
    if let Some(mut c) = content {
        if corrupt {
            if let Some(b) = c.get_mut(0) {
                *b ^= 0xff;
            }
        }
        set_content(f, c);
    } else {
        f.modified_time = Utc::now();
        f.version += 1;
    }
    if let Some(t) = meta.modified_time {
        f.modified_time = t;
    }
    if let Some(t) = meta.trashed {
        set_trashed(inner, &fid, t);
    }
    Ok(())
}

async fn create_metadata(
    shared: &Shared,
    parts: &Parts,
    params: &Params,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, MAX_METADATA)
        .await
        .map_err(|_| ApiError::bad_request("Request too large"))?;
    authorize(shared, &parts.headers, Access::Write)?;
    let sel = file_sel(params)?;
    let meta = parse_meta(&body, content_type(parts).as_deref(), false)?;
    let mut inner = lock(&shared.inner);
    let id = create_from_meta(
        &mut inner,
        &meta,
        None,
        None,
        supports_all_drives(params),
        false,
    )?;
    let f = inner.files.iter().find(|f| f.id == id).expect("created");
    Ok(file_response(f, &sel))
}

async fn update_metadata(
    shared: &Shared,
    parts: &Parts,
    params: &Params,
    body: Body,
    id: &str,
) -> Result<Response, ApiError> {
    let body = read_body(body, MAX_METADATA)
        .await
        .map_err(|_| ApiError::bad_request("Request too large"))?;
    authorize(shared, &parts.headers, Access::Write)?;
    let sel = file_sel(params)?;
    let meta = parse_meta(&body, content_type(parts).as_deref(), true)?;
    let mut inner = lock(&shared.inner);
    update_from_meta(&mut inner, id, &meta, params, None, None, false)?;
    let f = visible_file(&inner, id, supports_all_drives(params))?;
    Ok(file_response(f, &sel))
}

// ---------------------------------------------------------------------------------------------
// Drive: simple + multipart uploads
// ---------------------------------------------------------------------------------------------

struct Part {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Part {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn valid_boundary(b: &str) -> bool {
    (1..=70).contains(&b.len())
        && !b.ends_with(' ')
        && b.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'\''
                        | b'('
                        | b')'
                        | b'+'
                        | b'_'
                        | b','
                        | b'-'
                        | b'.'
                        | b'/'
                        | b':'
                        | b'='
                        | b'?'
                        | b' '
                )
        })
}

/// Extracts the boundary of a `multipart/related` Content-Type (RFC 2046 / RFC 2387).
fn multipart_boundary(ct: &str) -> Result<String, String> {
    let mut it = ct.split(';');
    let media = it.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("multipart/related") {
        return Err(format!(
            "Content-Type must be multipart/related, got '{media}'"
        ));
    }
    for p in it {
        let Some((k, v)) = p.split_once('=') else {
            return Err(format!("malformed Content-Type parameter '{p}'"));
        };
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim();
            let b = if let Some(q) = v.strip_prefix('"') {
                q.strip_suffix('"')
                    .ok_or("unterminated quoted boundary")?
                    .to_string()
            } else {
                v.to_string()
            };
            if !valid_boundary(&b) {
                return Err(format!(
                    "invalid multipart boundary '{b}' (RFC 2046: 1-70 bchars, not ending in space)"
                ));
            }
            return Ok(b);
        }
    }
    Err("multipart/related Content-Type without boundary".into())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

/// Parses a multipart body strictly: CRLF line endings, `--boundary` delimiters, a closing
/// `--boundary--`.
fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}").into_bytes();
    let mut pos = if body.starts_with(&delim) {
        0
    } else {
        let mut crlf_delim = b"\r\n".to_vec();
        crlf_delim.extend_from_slice(&delim);
        find(body, &crlf_delim, 0).ok_or("first boundary delimiter not found")? + 2
    };
    let mut parts = vec![];
    loop {
        pos += delim.len();
        if body[pos..].starts_with(b"--") {
            if parts.is_empty() {
                return Err("multipart body has no parts".into());
            }
            return Ok(parts);
        }
        while pos < body.len() && (body[pos] == b' ' || body[pos] == b'\t') {
            pos += 1;
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err("boundary delimiter line must end with CRLF".into());
        }
        pos += 2;
        let header_end = if body[pos..].starts_with(b"\r\n") {
            pos
        } else {
            find(body, b"\r\n\r\n", pos).ok_or("part headers not terminated by CRLF CRLF")?
        };
        let mut headers = vec![];
        if header_end > pos {
            let text = std::str::from_utf8(&body[pos..header_end])
                .map_err(|_| "part headers are not UTF-8")?;
            for line in text.split("\r\n") {
                let (k, v) = line
                    .split_once(':')
                    .ok_or(format!("malformed part header '{line}'"))?;
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let content_start = header_end + if header_end > pos { 4 } else { 2 };
        let mut next_delim = b"\r\n".to_vec();
        next_delim.extend_from_slice(&delim);
        let content_end =
            find(body, &next_delim, content_start).ok_or("closing boundary delimiter not found")?;
        parts.push(Part {
            headers,
            body: body[content_start..content_end].to_vec(),
        });
        pos = content_end + 2;
    }
}

async fn upload_simple(
    shared: &Shared,
    parts: &Parts,
    params: &Params,
    body: Body,
    target: Option<String>,
    fault: Option<Fault>,
) -> Result<Response, ApiError> {
    let body = read_body(body, MAX_UPLOAD)
        .await
        .map_err(|_| ApiError::bad_request("Request too large or broken"))?;
    authorize(shared, &parts.headers, Access::Write)?;
    let sel = file_sel(params)?;
    let ct = content_type(parts);
    let (meta, media, media_type) = match params.get("uploadType") {
        Some("media") => (Meta::default(), body, ct.clone()),
        Some("multipart") => {
            let boundary = multipart_boundary(ct.as_deref().unwrap_or(""))
                .map_err(|e| ApiError::bad_request("Bad Request").detail(e))?;
            let mut ps = parse_multipart(&body, &boundary)
                .map_err(|e| ApiError::bad_request("Bad Request").detail(e))?;
            if ps.len() != 2 {
                return Err(ApiError::bad_request("Bad Request").detail(format!(
                    "multipart upload needs exactly 2 parts (metadata, media), got {}",
                    ps.len()
                )));
            }
            let media_part = ps.pop().expect("two parts");
            let meta_part = ps.pop().expect("two parts");
            let meta_ct = meta_part.header("content-type").map(str::to_string);
            if !meta_ct.as_deref().is_some_and(is_json_content_type) {
                return Err(ApiError::bad_request("Bad Request")
                    .detail("first multipart part must have Content-Type: application/json"));
            }
            let meta = parse_meta(&meta_part.body, meta_ct.as_deref(), target.is_some())?;
            let Some(media_ct) = media_part.header("content-type").map(str::to_string) else {
                return Err(ApiError::bad_request("Bad Request")
                    .detail("media part must have a Content-Type header"));
            };
            let data = match media_part
                .header("content-transfer-encoding")
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("binary") | Some("8bit") | Some("7bit") => media_part.body,
                Some("base64") => {
                    let text: String = String::from_utf8_lossy(&media_part.body)
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect();
                    b64_decode(&text, false).ok_or_else(|| {
                        ApiError::bad_request("Bad Request").detail("bad base64 media part")
                    })?
                }
                Some(other) => {
                    return Err(ApiError::bad_request("Bad Request")
                        .detail(format!("unsupported Content-Transfer-Encoding {other}")))
                }
            };
            (meta, data, Some(media_ct))
        }
        Some(other) => {
            return Err(ApiError::invalid_param(
                "uploadType",
                format!("unsupported uploadType '{other}'"),
            ))
        }
        None => {
            return Err(ApiError::bad_request("Bad Request").detail(
                "uploads to /upload/drive/v3/files need uploadType=media|multipart|resumable",
            ))
        }
    };
    let corrupt = fault == Some(Fault::CorruptStoredContent);
    let mut inner = lock(&shared.inner);
    let id = match &target {
        Some(t) => {
            update_from_meta(
                &mut inner,
                t,
                &meta,
                params,
                Some(media),
                media_type.as_deref(),
                corrupt,
            )?;
            resolve_alias(&inner, t)
        }
        None => create_from_meta(
            &mut inner,
            &meta,
            Some(media),
            media_type.as_deref(),
            supports_all_drives(params),
            corrupt,
        )?,
    };
    let f = inner.files.iter().find(|f| f.id == id).expect("stored");
    Ok(file_response(f, &sel))
}

// ---------------------------------------------------------------------------------------------
// Drive: resumable uploads
// ---------------------------------------------------------------------------------------------

async fn upload_init(
    shared: &Shared,
    parts: &Parts,
    params: &Params,
    body: Body,
    target: Option<String>,
) -> Result<Response, ApiError> {
    let body = read_body(body, MAX_METADATA)
        .await
        .map_err(|_| ApiError::bad_request("Request too large"))?;
    authorize(shared, &parts.headers, Access::Write)?;
    let _ = file_sel(params)?;
    let declared = match parts.headers.get("x-upload-content-length") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Bad Request")
                        .detail("X-Upload-Content-Length must be a non-negative integer")
                })?,
        ),
    };
    let media_type = parts
        .headers
        .get("x-upload-content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let meta = parse_meta(&body, content_type(parts).as_deref(), target.is_some())?;
    let supports_all = supports_all_drives(params);
    let mut inner = lock(&shared.inner);
    match &target {
        Some(t) => {
            visible_file(&inner, t, supports_all)?;
        }
        None => {
            let (_, drive) = check_parents(&inner, meta.parents.as_ref(), supports_all)?;
            quota_check(&inner, declared.unwrap_or(0), drive.as_ref())?;
        }
    }
    let upload_id = format!("AHVrFx{}", random_string(66, ALNUM));
    let target_id = target.as_ref().map(|t| resolve_alias(&inner, t));
    inner.sessions.insert(
        upload_id.clone(),
        Session {
            created: Instant::now(),
            meta,
            target: target_id,
            data: vec![],
            total: declared,
            media_type,
            fields: params.get("fields").map(str::to_string),
            supports_all_drives: supports_all,
            file_id: None,
            cancelled: false,
            chunks: 0,
        },
    );
    inner.session_order.push(upload_id.clone());
    drop(inner);
    let mut query: Vec<String> = params
        .0
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    query.push(format!("upload_id={upload_id}"));
    let path = match &target {
        Some(t) => format!("/upload/drive/v3/files/{}", percent_encode(t)),
        None => "/upload/drive/v3/files".to_string(),
    };
    let location = format!("{}{}?{}", shared.base(), path, query.join("&"));
    Ok(respond(
        200,
        &[
            ("location", location),
            ("x-guploader-uploadid", upload_id),
            ("content-type", "text/plain; charset=utf-8".to_string()),
        ],
        "",
    ))
}

enum ContentRange {
    /// `bytes */total` or `bytes */*`
    Query(Option<u64>),
    /// `bytes a-b/total` or `bytes a-b/*`
    Range(u64, u64, Option<u64>),
}

fn parse_content_range(v: &str) -> Result<ContentRange, String> {
    let rest = v
        .strip_prefix("bytes ")
        .ok_or_else(|| format!("Content-Range '{v}' must start with 'bytes '"))?;
    let (range, total) = rest
        .split_once('/')
        .ok_or_else(|| format!("Content-Range '{v}' has no '/'"))?;
    let num = |s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("bad number '{s}' in Content-Range '{v}'"));
        }
        s.parse::<u64>().map_err(|e| e.to_string())
    };
    let total = if total == "*" {
        None
    } else {
        Some(num(total)?)
    };
    if range == "*" {
        return Ok(ContentRange::Query(total));
    }
    let (a, b) = range
        .split_once('-')
        .ok_or_else(|| format!("Content-Range '{v}' range has no '-'"))?;
    let (a, b) = (num(a)?, num(b)?);
    if a > b {
        return Err(format!("Content-Range '{v}': first byte after last byte"));
    }
    if let Some(t) = total {
        if b >= t {
            return Err(format!("Content-Range '{v}': last byte beyond total"));
        }
    }
    Ok(ContentRange::Range(a, b, total))
}

fn resume_incomplete(upload_id: &str, received: u64) -> Response {
    let mut h = vec![
        ("x-guploader-uploadid", upload_id.to_string()),
        ("content-type", "text/plain; charset=utf-8".to_string()),
    ];
    if received > 0 {
        h.push(("range", format!("bytes=0-{}", received - 1)));
    }
    respond(308, &h, "")
}

fn chunk_error(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("Bad Request").detail(detail)
}

async fn upload_chunk(
    shared: &Shared,
    parts: &Parts,
    params: &Params,
    mut body: Body,
    fault: Option<Fault>,
) -> Result<Response, ApiError> {
    let upload_id = params.get("upload_id").unwrap_or("").to_string();
    let gone = |why: &str| {
        ApiError::new(404, "notFound", "Not Found").detail(format!("upload session {why}"))
    };
    {
        let inner = lock(&shared.inner);
        let lifetime = inner.session_lifetime;
        match inner.sessions.get(&upload_id) {
            None => return Err(gone("unknown")),
            Some(s) if s.cancelled => return Err(gone("cancelled")),
            Some(s) if s.created.elapsed() >= lifetime => return Err(gone("expired")),
            Some(_) => {}
        }
    }
    let method = parts.method.clone();
    if method != Method::PUT && method != Method::POST && method != Method::DELETE {
        return Err(ApiError::new(405, "methodNotAllowed", "Method Not Allowed"));
    }
    let declared_len = match parts.headers.get("content-length") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| chunk_error("bad Content-Length"))?,
        ),
    };
    if fault == Some(Fault::DropConnection) {
        let want = declared_len.unwrap_or(0) / 2;
        let mut got = 0u64;
        while got < want.max(1) {
            match next_data(&mut body).await {
                Some(Ok(d)) => got += d.len() as u64,
                _ => break,
            }
        }
        return Ok(cut_connection());
    }
    let data = read_body(body, MAX_UPLOAD)
        .await
        .map_err(|_| chunk_error("request body too large or broken"))?;
    let requires_auth = lock(&shared.inner).session_requires_auth;
    if requires_auth {
        authorize(shared, &parts.headers, Access::Write)?;
    }
    let mut guard = lock(&shared.inner);
    let inner = &mut *guard;
    if method == Method::DELETE {
        if let Some(s) = inner.sessions.get_mut(&upload_id) {
            s.cancelled = true;
        }
        return Ok(respond(499, &[], ""));
    }
    let session = inner.sessions.get_mut(&upload_id).expect("session exists");
    let received = session.data.len() as u64;
    let cr = match parts.headers.get("content-range") {
        None => None,
        Some(v) => Some(parse_content_range(v.to_str().unwrap_or("")).map_err(chunk_error)?),
    };
    let body_len = data.len() as u64;
    if let Some(cl) = declared_len {
        if cl != body_len {
            return Err(chunk_error(format!(
                "Content-Length {cl} but {body_len} body bytes"
            )));
        }
    }
    // Completed sessions answer with the file again (idempotent final chunk / status query).
    if let Some(fid) = session.file_id.clone() {
        let total = session.total.unwrap_or(received);
        let ok = match &cr {
            None => body_len == total && received == total,
            Some(ContentRange::Query(t)) => body_len == 0 && t.is_none_or(|t| t == total),
            Some(ContentRange::Range(_, b, t)) => *b < total && t.is_none_or(|t| t == total),
        };
        if !ok {
            return Err(chunk_error(
                "upload already completed; request does not match it",
            ));
        }
        let mut p = Params::default();
        if let Some(f) = &session.fields {
            p.0.push(("fields".into(), f.clone()));
        }
        let sel = file_sel(&p)?;
        let f = inner
            .files
            .iter()
            .find(|f| f.id == fid)
            .ok_or_else(|| gone("file deleted"))?;
        return Ok(file_response(f, &sel));
    }
    let (start, end_excl, total, final_chunk) = match cr {
        None => {
            if received != 0 {
                return Err(chunk_error(format!(
                    "request without Content-Range after {received} bytes were received"
                )));
            }
            (0, body_len, Some(body_len), true)
        }
        Some(ContentRange::Query(t)) => {
            if body_len != 0 {
                return Err(chunk_error(
                    "Content-Range 'bytes */N' must come with an empty body",
                ));
            }
            match t {
                None => {
                    return Ok(resume_incomplete(&upload_id, received));
                }
                Some(t) => {
                    if session.total.is_some_and(|s| s != t) || t < received {
                        return Err(chunk_error(format!(
                            "total {t} contradicts the session (declared {:?}, received {received})",
                            session.total
                        )));
                    }
                    if t > received {
                        session.total = Some(t);
                        return Ok(resume_incomplete(&upload_id, received));
                    }
                    (received, received, Some(t), true)
                }
            }
        }
        Some(ContentRange::Range(a, b, t)) => {
            let len = b - a + 1;
            if len != body_len {
                return Err(chunk_error(format!(
                    "Content-Range covers {len} bytes but the body has {body_len}"
                )));
            }
            if a != received {
                return Err(chunk_error(format!(
                    "chunk starts at {a} but {received} bytes have been received; resume from the Range the server reports"
                )));
            }
            if let (Some(t), Some(s)) = (t, session.total) {
                if t != s {
                    return Err(chunk_error(format!(
                        "total {t} differs from the session's {s}"
                    )));
                }
            }
            let total = t.or(session.total);
            if let Some(t) = total {
                if b >= t {
                    return Err(chunk_error(format!("last byte {b} beyond total {t}")));
                }
            }
            let final_chunk = total.is_some_and(|t| b + 1 == t);
            if !final_chunk && len % CHUNK_GRANULARITY != 0 {
                return Err(chunk_error(format!(
                    "non-final chunk of {len} bytes is not a multiple of 256 KiB (262144)"
                )));
            }
            (a, b + 1, total, final_chunk)
        }
    };
    debug_assert_eq!(start, received);
    if session.total.is_none() {
        session.total = total;
    }
    let mut commit = (end_excl - start) as usize;
    let mut complete = final_chunk;
    if fault == Some(Fault::PartialCommit) && commit > 0 {
        let half = (commit as u64 / 2) / CHUNK_GRANULARITY * CHUNK_GRANULARITY;
        commit = half as usize;
        complete = false;
    }
    session.data.extend_from_slice(&data[..commit]);
    if body_len > 0 {
        session.chunks += 1;
    }
    let received = session.data.len() as u64;
    if !complete {
        return Ok(resume_incomplete(&upload_id, received));
    }
    // Finalize: create (or update) the file.
    let meta = session.meta.clone();
    let content = session.data.clone();
    let media_type = session.media_type.clone().or_else(|| content_type(parts));
    let supports_all = session.supports_all_drives;
    let target = session.target.clone();
    let fields = session.fields.clone();
    let corrupt = fault == Some(Fault::CorruptStoredContent);
    let id = match &target {
        Some(t) => {
            let mut p = Params::default();
            if supports_all {
                p.0.push(("supportsAllDrives".into(), "true".into()));
            }
            update_from_meta(
                inner,
                t,
                &meta,
                &p,
                Some(content),
                media_type.as_deref(),
                corrupt,
            )?;
            t.clone()
        }
        None => create_from_meta(
            inner,
            &meta,
            Some(content),
            media_type.as_deref(),
            supports_all,
            corrupt,
        )?,
    };
    if let Some(s) = inner.sessions.get_mut(&upload_id) {
        s.file_id = Some(id.clone());
    }
    let mut p = Params::default();
    if let Some(f) = fields {
        p.0.push(("fields".into(), f));
    }
    let sel = file_sel(&p)?;
    let f = inner.files.iter().find(|f| f.id == id).expect("stored");
    Ok(file_response(f, &sel))
}
