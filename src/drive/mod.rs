//! Google Drive as a second home for backups: credentials and tokens, the folder, listing,
//! a verified resumable upload, download, and removal — Drive v3 over reqwest.
//!
//! Why not google-drive3's call builders (DESIGN.md's traps, checked in its source): its
//! resumable helper sends chunks with POST, ignores the server's `Range`, skips a chunk when a
//! failed one is retried, never resumes across restarts and underflows on an empty file; its
//! `files().list()` defaults to the `drive.meet.readonly` scope; `FileCreateCall` cannot make a
//! folder; and its hyper client has no timeouts. So every call here is written from Google's
//! Drive v3 documentation with one reqwest client that has timeouts and one retry policy, and
//! google-drive3 supplies the typed response schema (`api::File`, `api::FileList`).

pub mod credentials;
pub mod retry;
pub mod token;
pub mod upload;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use google_drive3::api::{File as DriveFile, FileList};
use serde::Serialize;

use crate::config::{DriveConfig, DriveDelete};
use credentials::Credentials;
use retry::{Reply, RetryPolicy};
use token::TokenSource;

/// The appProperties key that marks a file as snapkeep's: nothing without it is ever touched.
pub const MARK_KEY: &str = "snapkeep";
pub const MARK_VALUE: &str = "backup";
/// The appProperties key naming which database (on which host) a backup is of, so that two
/// installs sharing a folder never rotate or restore each other's backups.
pub const SOURCE_KEY: &str = "source";
const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
const FILE_FIELDS: &str =
    "id,name,md5Checksum,size,appProperties,createdTime,webViewLink,parents,trashed";

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("Drive credentials were rejected: run `snapkeep auth`")]
    CredentialsRejected,
    #[error("Drive credentials: {0}")]
    Credentials(String),
    #[error("Drive: {0}")]
    Transport(String),
    #[error("Drive answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("Drive: {0}")]
    Protocol(String),
    #[error("Drive upload of {name} failed verification: Drive's MD5 {remote} differs from the local {local}; {removed}")]
    ChecksumMismatch {
        name: String,
        local: String,
        remote: String,
        removed: String,
    },
    #[error("Drive unreachable: {0}")]
    GaveUp(String),
    #[error("Drive: {0}")]
    Local(String),
}

/// A backup as Drive has it.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteFile {
    pub id: String,
    pub name: String,
    pub md5: Option<String>,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub link: String,
}

impl RemoteFile {
    fn from_api(f: DriveFile) -> Option<RemoteFile> {
        let id = f.id?;
        let props = f.app_properties.unwrap_or_default();
        Some(RemoteFile {
            link: f
                .web_view_link
                .unwrap_or_else(|| format!("https://drive.google.com/file/d/{id}/view")),
            id,
            name: f.name.unwrap_or_default(),
            md5: f.md5_checksum,
            sha256: props.get("sha256").cloned(),
            bytes: f.size.map(|s| s as u64),
            created: f.created_time,
        })
    }
}

/// A connected Drive: token source, folder, endpoint.
pub struct Drive {
    http: reqwest::Client,
    tokens: TokenSource,
    endpoint: String,
    pub folder_id: String,
    pub policy: RetryPolicy,
    delete: DriveDelete,
    /// This install's source id ([`source_id`]).
    pub source: String,
}

impl Drive {
    /// Load the credentials, get a token and find (or create) the folder. `source` is the
    /// [`source_id`] of the database whose backups this connection handles.
    pub async fn connect(cfg: &DriveConfig, source: &str) -> Result<Drive, DriveError> {
        let credentials = Credentials::load(&cfg.credentials).map_err(DriveError::Credentials)?;
        let http = crate::http::client(Duration::from_secs(120));
        let policy = RetryPolicy::new(cfg.retry_timeout);
        let mut drive = Drive {
            tokens: TokenSource::new(credentials, http.clone(), policy),
            http,
            endpoint: cfg.endpoint.clone(),
            folder_id: String::new(),
            policy,
            delete: cfg.delete,
            source: source.to_string(),
        };
        drive.folder_id = match &cfg.folder_id {
            Some(id) => id.clone(),
            None => drive.find_or_create_folder(&cfg.folder_name).await?,
        };
        Ok(drive)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.endpoint, path)
    }

    /// An authorized request, retried per policy, with one token refresh on 401.
    pub(crate) async fn call(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Reply, DriveError> {
        let mut refreshed = false;
        loop {
            let token = self.tokens.token().await?;
            let reply = retry::with_retries(&self.policy, what, || {
                build(&self.http, token.expose()).send()
            })
            .await?;
            if reply.status == 401 && !refreshed {
                // The access token expired or was revoked early: refresh once.
                self.tokens.invalidate().await;
                refreshed = true;
                continue;
            }
            if reply.status == 401 {
                return Err(DriveError::CredentialsRejected);
            }
            return Ok(reply);
        }
    }

    /// `call`, then insist on success and parse the JSON body.
    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<T, DriveError> {
        let reply = self.call(what, build).await?;
        if !reply.is_success() {
            return Err(status_error(&reply));
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| DriveError::Protocol(format!("{what}: unexpected answer: {e}")))
    }

    /// Every file matching `q`, across all pages.
    pub async fn list(&self, q: &str) -> Result<Vec<RemoteFile>, DriveError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let fields = format!("nextPageToken,files({FILE_FIELDS})");
            let list: FileList = self
                .call_json("list files", |c, t| {
                    let mut query: Vec<(&str, &str)> = vec![
                        ("q", q),
                        ("fields", &fields),
                        ("pageSize", "1000"),
                        ("supportsAllDrives", "true"),
                        ("includeItemsFromAllDrives", "true"),
                    ];
                    if let Some(p) = &page {
                        query.push(("pageToken", p));
                    }
                    c.get(self.url("drive/v3/files"))
                        .bearer_auth(t)
                        .query(&query)
                })
                .await?;
            out.extend(
                list.files
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(RemoteFile::from_api),
            );
            match list.next_page_token {
                Some(next) if !next.is_empty() => page = Some(next),
                _ => return Ok(out),
            }
        }
    }

    async fn find_or_create_folder(&self, name: &str) -> Result<String, DriveError> {
        let q = format!(
            "name = '{}' and mimeType = '{FOLDER_MIME}' and 'root' in parents and trashed = false",
            escape_query(name)
        );
        if let Some(found) = self.list(&q).await?.into_iter().next() {
            return Ok(found.id);
        }
        #[derive(Serialize)]
        struct NewFolder<'a> {
            name: &'a str,
            #[serde(rename = "mimeType")]
            mime_type: &'a str,
        }
        let created: DriveFile = self
            .call_json("create folder", |c, t| {
                c.post(self.url("drive/v3/files"))
                    .bearer_auth(t)
                    .query(&[("fields", "id,name"), ("supportsAllDrives", "true")])
                    .json(&NewFolder {
                        name,
                        mime_type: FOLDER_MIME,
                    })
            })
            .await?;
        tracing::info!(folder = name, "created the Drive folder");
        created
            .id
            .ok_or_else(|| DriveError::Protocol("folder created without an id".into()))
    }

    /// This source's backups in the folder (files snapkeep uploaded for this database).
    pub async fn list_backups(&self) -> Result<Vec<RemoteFile>, DriveError> {
        self.list_marked(Some(&self.source)).await
    }

    /// snapkeep's backups in the folder, of one source or (None) of every source.
    pub async fn list_marked(&self, source: Option<&str>) -> Result<Vec<RemoteFile>, DriveError> {
        let mut q = format!(
            "'{}' in parents and trashed = false and appProperties has {{ key='{MARK_KEY}' and value='{MARK_VALUE}' }}",
            escape_query(&self.folder_id)
        );
        if let Some(source) = source {
            q += &format!(
                " and appProperties has {{ key='{SOURCE_KEY}' and value='{}' }}",
                escape_query(source)
            );
        }
        let mut files = self.list(&q).await?;
        files.retain(|f| crate::names::BackupName::parse(&f.name).is_some());
        Ok(files)
    }

    pub async fn get(&self, id: &str) -> Result<Option<RemoteFile>, DriveError> {
        let reply = self
            .call("get file", |c, t| {
                c.get(self.url(&format!("drive/v3/files/{id}")))
                    .bearer_auth(t)
                    .query(&[("fields", FILE_FIELDS), ("supportsAllDrives", "true")])
            })
            .await?;
        if reply.status == 404 {
            return Ok(None);
        }
        if !reply.is_success() {
            return Err(status_error(&reply));
        }
        let f: DriveFile = serde_json::from_slice(&reply.body)
            .map_err(|e| DriveError::Protocol(format!("get file: {e}")))?;
        Ok(RemoteFile::from_api(f))
    }

    /// Remove a backup from Drive as DRIVE_DELETE says: to the trash (recoverable) or for good.
    pub async fn remove(&self, file: &RemoteFile) -> Result<(), DriveError> {
        self.remove_with(file, self.delete).await
    }

    pub async fn remove_with(&self, file: &RemoteFile, how: DriveDelete) -> Result<(), DriveError> {
        let path = format!("drive/v3/files/{}", file.id);
        let reply = match how {
            DriveDelete::Trash => {
                self.call("trash file", |c, t| {
                    c.patch(self.url(&path))
                        .bearer_auth(t)
                        .query(&[("supportsAllDrives", "true"), ("fields", "id,trashed")])
                        .json(&serde_json::json!({ "trashed": true }))
                })
                .await?
            }
            DriveDelete::Delete => {
                self.call("delete file", |c, t| {
                    c.delete(self.url(&path))
                        .bearer_auth(t)
                        .query(&[("supportsAllDrives", "true")])
                })
                .await?
            }
        };
        if reply.is_success() || reply.status == 404 {
            Ok(())
        } else {
            Err(status_error(&reply))
        }
    }

    /// Download a file's content to `dest` (a new file), streaming.
    pub async fn download(&self, id: &str, dest: &Path) -> Result<u64, DriveError> {
        use tokio::io::AsyncWriteExt;
        let started = std::time::Instant::now();
        let mut attempt = 0;
        loop {
            let token = self.tokens.token().await?;
            let result: Result<u64, String> = async {
                let mut resp = crate::http::streaming_client()
                    .get(self.url(&format!("drive/v3/files/{id}")))
                    .bearer_auth(token.expose())
                    .query(&[("alt", "media"), ("supportsAllDrives", "true")])
                    .send()
                    .await
                    .map_err(|e| retry::transport_reason(&e))?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP {}", resp.status().as_u16()));
                }
                let mut out = tokio::fs::File::create(dest)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut n = 0u64;
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .map_err(|e| retry::transport_reason(&e))?
                {
                    out.write_all(&chunk).await.map_err(|e| e.to_string())?;
                    n += chunk.len() as u64;
                }
                out.sync_all().await.map_err(|e| e.to_string())?;
                Ok(n)
            }
            .await;
            match result {
                Ok(n) => return Ok(n),
                Err(reason) => {
                    let wait = retry::backoff(&self.policy, attempt, None, retry::jitter());
                    if reason.starts_with("HTTP 4")
                        || started.elapsed() + wait > self.policy.deadline
                    {
                        let _ = tokio::fs::remove_file(dest).await;
                        return Err(DriveError::GaveUp(format!("download failed: {reason}")));
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }
    pub(crate) fn tokens(&self) -> &TokenSource {
        &self.tokens
    }
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// Escape a value for a Drive query string literal ('…'): backslash and single quote.
pub fn escape_query(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

/// Google's error JSON folded into one line (never the request, which holds the token).
pub fn status_error(reply: &Reply) -> DriveError {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: Option<String>,
    }
    let message = serde_json::from_slice::<Envelope>(&reply.body)
        .ok()
        .and_then(|e| e.error.message)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&reply.body)
                .chars()
                .take(200)
                .collect()
        });
    DriveError::Status {
        status: reply.status,
        message,
    }
}

/// appProperties for an upload: the mark, the source and the SHA-256 of the stored file.
pub fn app_properties(sha256: &str, source: &str) -> HashMap<String, String> {
    HashMap::from([
        (MARK_KEY.to_string(), MARK_VALUE.to_string()),
        (SOURCE_KEY.to_string(), source.to_string()),
        ("sha256".to_string(), sha256.to_string()),
    ])
}

/// A short stable id for "this database on this host": 16 hex digits of
/// SHA-256(hostname ":" canonical path). Short, because Drive limits an appProperty's key and
/// value to 124 bytes together.
pub fn source_id(database: &Path) -> String {
    use sha2::Digest;
    let path = std::fs::canonicalize(database).unwrap_or_else(|_| database.to_path_buf());
    let digest = sha2::Sha256::digest(format!("{}:{}", hostname(), path.display()));
    hex::encode(&digest[..8])
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is a valid writable buffer of the given length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(escape_query("Bob's \\ backups"), "Bob\\'s \\\\ backups");
    }
}
