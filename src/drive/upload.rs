//! Resumable upload, written from Google's "Perform a resumable upload" guide:
//!
//! 1. POST the metadata to `upload/drive/v3/files?uploadType=resumable`; the session URI comes
//!    back in `Location`.
//! 2. PUT the bytes in chunks that are multiples of 256 KiB (the last may be shorter), each
//!    with `Content-Range: bytes a-b/total`. `308 Resume Incomplete` carries
//!    `Range: bytes=0-N`: the next chunk starts at N+1, *whatever we sent* (the server may
//!    have kept less than a whole chunk).
//! 3. After a failure (5xx, 429, a dropped connection) wait, then ask where the upload stands
//!    with an empty PUT and `Content-Range: bytes */total`, and resume from what the server
//!    confirms. A 404 means the session expired: start a new one.
//!
//! Memory is one chunk, whatever the file size. Afterwards Drive's `md5Checksum` must equal
//! the local MD5, or the remote copy is deleted and the upload has failed.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Instant;

use google_drive3::api::File as DriveFile;
use md5::{Digest, Md5};
use serde::Serialize;

use super::retry::{self, Reply};
use super::{app_properties, status_error, Drive, DriveError, RemoteFile};
use crate::config::DriveDelete;

/// Google requires chunks in multiples of 256 KiB.
pub const CHUNK_GRANULE: usize = 256 * 1024;

/// How many times an expired session is started over before giving up.
const MAX_SESSIONS: u32 = 3;

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
    parents: [&'a str; 1],
    #[serde(rename = "mimeType")]
    mime_type: &'a str,
    #[serde(rename = "appProperties")]
    app_properties: std::collections::HashMap<String, String>,
}

/// MD5 (Drive's `md5Checksum` form) and SHA-256 of a file, hex, in one read.
pub fn md5_and_sha256(path: &Path) -> std::io::Result<(String, String)> {
    use sha2::Sha256;
    let mut f = std::fs::File::open(path)?;
    let (mut md5, mut sha) = (Md5::new(), Sha256::new());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((hex::encode(md5.finalize()), hex::encode(sha.finalize())));
        }
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
    }
}

/// Where the server says the upload stands.
enum Progress {
    /// Bytes 0..n are stored; send from n.
    At(u64),
    Done(Box<DriveFile>),
    /// The session is gone (404/410): start over.
    Expired,
}

/// The `Range: bytes=0-N` header of a 308 as the next offset (no header: nothing stored).
fn confirmed_offset(reply: &Reply) -> Result<u64, DriveError> {
    match reply.headers.get("range") {
        None => Ok(0),
        Some(v) => {
            let text = v.to_str().unwrap_or_default();
            let end = text
                .strip_prefix("bytes=0-")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| DriveError::Protocol(format!("unexpected Range header {text:?}")))?;
            Ok(end + 1)
        }
    }
}

fn judge(reply: Reply) -> Result<Progress, DriveError> {
    match reply.status {
        200 | 201 => serde_json::from_slice(&reply.body)
            .map(|f| Progress::Done(Box::new(f)))
            .map_err(|e| {
                DriveError::Protocol(format!("upload finished with unexpected metadata: {e}"))
            }),
        308 => confirmed_offset(&reply).map(Progress::At),
        404 | 410 => Ok(Progress::Expired),
        _ => Err(status_error(&reply)),
    }
}

/// Upload `path` as `name` into the folder, resumably, and verify it. Returns Drive's file.
pub async fn upload(
    drive: &Drive,
    path: &Path,
    name: &str,
    sha256: &str,
    chunk_size: usize,
) -> Result<RemoteFile, DriveError> {
    assert!(chunk_size >= CHUNK_GRANULE && chunk_size.is_multiple_of(CHUNK_GRANULE));
    let (local_md5, local_sha256) = md5_and_sha256(path)
        .map_err(|e| DriveError::Local(format!("cannot read {}: {e}", path.display())))?;
    // A pending backup may be uploaded days after it was made: never send a file that no
    // longer matches its record.
    if local_sha256 != sha256 {
        return Err(DriveError::Local(format!(
            "{name} no longer matches its recorded SHA-256; not uploading it (run `snapkeep verify {name}`)"
        )));
    }
    let total = std::fs::metadata(path)
        .map_err(|e| DriveError::Local(format!("cannot stat {}: {e}", path.display())))?
        .len();
    let mime = if name.ends_with(".gz") {
        "application/gzip"
    } else {
        "application/vnd.sqlite3"
    };

    let mut sessions = 0;
    let file = loop {
        sessions += 1;
        let session = start_session(drive, name, mime, sha256, total).await?;
        match send_all(drive, &session, path, total, chunk_size).await? {
            Some(f) => break f,
            None if sessions < MAX_SESSIONS => {
                tracing::warn!(backup = name, "upload session expired; starting a new one");
            }
            None => return Err(DriveError::GaveUp("upload sessions kept expiring".into())),
        }
    };
    let remote = RemoteFile::from_api(file)
        .ok_or_else(|| DriveError::Protocol("uploaded file has no id".into()))?;
    match remote.md5.as_deref() {
        Some(md5) if md5.eq_ignore_ascii_case(&local_md5) => Ok(remote),
        other => {
            let remote_md5 = other.unwrap_or("none").to_string();
            let removed = match drive.remove_with(&remote, DriveDelete::Delete).await {
                Ok(()) => "the remote copy was removed".to_string(),
                Err(e) => format!("removing the remote copy failed too ({e})"),
            };
            Err(DriveError::ChecksumMismatch {
                name: name.to_string(),
                local: local_md5,
                remote: remote_md5,
                removed,
            })
        }
    }
}

async fn start_session(
    drive: &Drive,
    name: &str,
    mime: &str,
    sha256: &str,
    total: u64,
) -> Result<String, DriveError> {
    let folder = drive.folder_id.clone();
    let reply = drive
        .call("start upload", |c, t| {
            c.post(drive.url("upload/drive/v3/files"))
                .bearer_auth(t)
                .query(&[
                    ("uploadType", "resumable"),
                    ("supportsAllDrives", "true"),
                    ("fields", super::FILE_FIELDS),
                ])
                .header("X-Upload-Content-Type", mime)
                .header("X-Upload-Content-Length", total.to_string())
                .json(&Metadata {
                    name,
                    parents: [&folder],
                    mime_type: mime,
                    app_properties: app_properties(sha256, &drive.source),
                })
        })
        .await?;
    if !reply.is_success() {
        return Err(status_error(&reply));
    }
    let location = reply
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            DriveError::Protocol("resumable upload started without a Location".into())
        })?;
    // Google gives an absolute URI; resolve a relative one against the endpoint.
    Ok(match reqwest::Url::parse(location) {
        Ok(u) => u.to_string(),
        Err(_) => reqwest::Url::parse(drive.endpoint())
            .and_then(|base| base.join(location))
            .map_err(|e| DriveError::Protocol(format!("bad Location {location:?}: {e}")))?
            .to_string(),
    })
}

/// Send the file from wherever the server stands until it is complete. Ok(None): the session
/// expired. Gives up when no progress is made for the policy's deadline.
async fn send_all(
    drive: &Drive,
    session: &str,
    path: &Path,
    total: u64,
    chunk_size: usize,
) -> Result<Option<DriveFile>, DriveError> {
    let mut file = std::fs::File::open(path).map_err(|e| DriveError::Local(e.to_string()))?;
    let mut buf = vec![0u8; chunk_size];
    let mut offset = 0u64;
    let mut attempt = 0u32;
    let mut last_progress = Instant::now();
    let mut need_status = false;
    loop {
        if need_status {
            // Ask where we stand before sending anything more.
            match put(
                drive,
                session,
                "bytes */".to_string() + &total.to_string(),
                Vec::new(),
            )
            .await
            {
                Ok(reply)
                    if reply.status == 401
                        || retry::retryable_status(reply.status, &reply.body) =>
                {
                    if reply.status == 401 {
                        drive.tokens().invalidate().await;
                    }
                    let hint = retry::retry_after(&reply.headers);
                    let reason = format!("status query: HTTP {}", reply.status);
                    wait_or_give_up(drive, &mut attempt, last_progress, hint, &reason).await?;
                    continue;
                }
                Ok(reply) => match judge(reply)? {
                    Progress::Done(f) => return Ok(Some(*f)),
                    Progress::Expired => return Ok(None),
                    Progress::At(n) => {
                        offset = n;
                        need_status = false;
                    }
                },
                Err(reason) => {
                    wait_or_give_up(drive, &mut attempt, last_progress, None, &reason).await?;
                    continue;
                }
            }
        }
        let len = (total - offset).min(chunk_size as u64) as usize;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| DriveError::Local(e.to_string()))?;
        file.read_exact(&mut buf[..len])
            .map_err(|e| DriveError::Local(e.to_string()))?;
        let range = if total == 0 {
            "bytes */0".to_string()
        } else {
            format!("bytes {}-{}/{}", offset, offset + len as u64 - 1, total)
        };
        match put(drive, session, range, buf[..len].to_vec()).await {
            Ok(reply) if reply.status == 401 => {
                // The token expired mid-upload: refresh, but a server that keeps saying 401
                // must not make this loop forever.
                drive.tokens().invalidate().await;
                wait_or_give_up(drive, &mut attempt, last_progress, None, "HTTP 401").await?;
                need_status = true;
            }
            Ok(reply) if retry::retryable_status(reply.status, &reply.body) => {
                let hint = retry::retry_after(&reply.headers);
                let reason = format!("HTTP {}", reply.status);
                wait_or_give_up(drive, &mut attempt, last_progress, hint, &reason).await?;
                need_status = true;
            }
            Ok(reply) => match judge(reply)? {
                Progress::Done(f) => return Ok(Some(*f)),
                Progress::Expired => return Ok(None),
                Progress::At(n) => {
                    if n > offset {
                        last_progress = Instant::now();
                        attempt = 0;
                    } else {
                        // The server kept nothing of the chunk: back off before resending.
                        wait_or_give_up(drive, &mut attempt, last_progress, None, "no progress")
                            .await?;
                    }
                    offset = n;
                }
            },
            Err(reason) => {
                wait_or_give_up(drive, &mut attempt, last_progress, None, &reason).await?;
                need_status = true;
            }
        }
    }
}

async fn put(drive: &Drive, session: &str, range: String, body: Vec<u8>) -> Result<Reply, String> {
    let token = drive.tokens().token().await.map_err(|e| e.to_string())?;
    let resp = drive
        .http()
        .put(session)
        .bearer_auth(token.expose())
        .header("Content-Range", range)
        .header("Content-Length", body.len().to_string())
        .body(body)
        .send()
        .await
        .map_err(|e| retry::transport_reason(&e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| retry::transport_reason(&e))?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

async fn wait_or_give_up(
    drive: &Drive,
    attempt: &mut u32,
    last_progress: Instant,
    hint: Option<std::time::Duration>,
    reason: &str,
) -> Result<(), DriveError> {
    let wait = retry::backoff(&drive.policy, *attempt, hint, retry::jitter());
    if last_progress.elapsed() + wait > drive.policy.deadline {
        return Err(DriveError::GaveUp(format!(
            "upload made no progress for {} s ({reason})",
            last_progress.elapsed().as_secs()
        )));
    }
    tracing::info!(
        reason,
        attempt = *attempt,
        wait_ms = wait.as_millis() as u64,
        "upload chunk failed; resuming"
    );
    tokio::time::sleep(wait).await;
    *attempt += 1;
    Ok(())
}
