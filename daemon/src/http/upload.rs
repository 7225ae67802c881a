//! Request bodies that carry images (`update`, `/recovery/host-phase2`,
//! `/mgsd/v1/control`): read
//! with an idle bound, and written to unlinked files in the state
//! directory a megabyte at a time, off the async threads.

use super::error::ApiError;
use axum::body::{BodyDataStream, Bytes};
use axum::http::StatusCode;
use futures_util::StreamExt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Stream `body` into a new unlinked file in `dir`, refusing it with
/// `too_large(bytes so far)` once it passes `max` bytes, or once it sends
/// nothing for `idle`; an empty body is refused asking for `what`.
pub(super) async fn receive(
    body: axum::body::Body,
    dir: &Path,
    max: u64,
    idle: Duration,
    too_large: impl Fn(u64) -> ApiError,
    what: &str,
) -> Result<std::fs::File, ApiError> {
    let mut upload = Upload::new(body, idle);
    let mut file = UploadFile::new(dir)?;
    while let Some(chunk) = upload.next().await? {
        if upload.received > max {
            return Err(too_large(upload.received));
        }
        file.push(&chunk).await?;
    }
    if upload.received == 0 {
        return Err(ApiError::bad_request(format!(
            "the body is empty: send {what}"
        )));
    }
    file.finish().await
}

/// Bytes gathered before each write to an upload file.
const WRITE_BYTES: usize = 1024 * 1024;

/// A body read a chunk at a time; each must come within `idle`.
pub(super) struct Upload {
    stream: BodyDataStream,
    idle: Duration,
    /// Bytes read so far.
    pub received: u64,
}

impl Upload {
    pub fn new(body: axum::body::Body, idle: Duration) -> Self {
        Self {
            stream: body.into_data_stream(),
            idle,
            received: 0,
        }
    }

    /// The next chunk, `None` at the body's end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ApiError> {
        let idle = self.idle;
        let next = tokio::time::timeout(idle, self.stream.next())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "UploadTimedOut",
                    format!("the upload sent nothing for {idle:?} (http.upload_idle_timeout_ms)"),
                )
            })?;
        match next {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                Ok(Some(chunk))
            }
            Some(Err(e)) => Err(ApiError::bad_request(format!(
                "the upload broke off after {} bytes: {e}",
                self.received
            ))),
            None => Ok(None),
        }
    }
}

/// A new unlinked file in a directory, written in large pieces off the
/// async threads.
pub(super) struct UploadFile {
    /// Back after each write.
    file: Option<std::fs::File>,
    pending: Vec<u8>,
    dir: PathBuf,
}

impl UploadFile {
    pub fn new(dir: &Path) -> Result<Self, ApiError> {
        let file = tempfile::tempfile_in(dir).map_err(|e| unwritable(dir, e))?;
        Ok(Self {
            file: Some(file),
            pending: Vec::with_capacity(WRITE_BYTES),
            dir: dir.to_owned(),
        })
    }

    pub async fn push(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= WRITE_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Everything pushed, in the file, which is rewound for reading.
    pub async fn finish(mut self) -> Result<std::fs::File, ApiError> {
        self.flush().await?;
        let mut file = self.file.take().expect("the file is back after each write");
        use std::io::Seek;
        file.rewind().map_err(|e| unwritable(&self.dir, e))?;
        Ok(file)
    }

    async fn flush(&mut self) -> Result<(), ApiError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut file = self.file.take().expect("the file is back after each write");
        let data = std::mem::take(&mut self.pending);
        let (written, mut data) = tokio::task::spawn_blocking(move || {
            let written = file.write_all(&data).map(|()| file);
            (written, data)
        })
        .await
        .map_err(|e| unwritable(&self.dir, std::io::Error::other(e)))?;
        self.file = Some(written.map_err(|e| unwritable(&self.dir, e))?);
        // The buffer is reused: one allocation for the whole upload.
        data.clear();
        self.pending = data;
        Ok(())
    }
}

fn unwritable(dir: &Path, e: std::io::Error) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "StateUnwritable",
        format!("cannot keep the upload in {}: {e}", dir.display()),
    )
}
