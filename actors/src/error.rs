//! Errors, one enum per layer, each keeping its source: [`RpcError`] (a
//! request to an SP), [`ImageError`] (an image or archive that cannot be
//! sent), [`UpdateError`] (an update's start, abort or delivery, naming
//! its SP, component and id). Sources that must be shared (a refused start
//! answers every caller that asked for the same id) are behind `Arc`.

use crate::types::{ImageHash, Operation, SpName};
use gateway_messages::{SpComponent, SpError, SpResponse};
use std::sync::Arc;

/// How a request to an SP failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// No answer within the request's patience.
    #[error("{sp}: no response after {attempts} attempts")]
    Timeout { sp: SpName, attempts: u32 },
    /// The SP kept answering `Busy`.
    #[error("{sp}: SP stayed busy")]
    Busy { sp: SpName },
    /// The SP answered with an error.
    #[error("{sp}: {error}")]
    Sp {
        sp: SpName,
        #[source]
        error: SpError,
    },
    /// The SP answered something other than what `request` expects.
    #[error("{sp}: unexpected answer to {request}: {response:?}")]
    Unexpected {
        sp: SpName,
        /// The request's kind (its metric label).
        request: &'static str,
        response: Box<SpResponse>,
    },
    /// The SP has not been found yet.
    #[error("{sp}: SP not discovered yet")]
    NotDiscovered { sp: SpName },
    /// The last attempt could not even be sent.
    #[error("{sp}: cannot send: {source}")]
    Io {
        sp: SpName,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The SP's actor went away (removed from the configuration, or the
    /// daemon is stopping).
    #[error("{sp}: SP actor stopped (removed from the configuration, or mgsd is stopping)")]
    Stopped { sp: SpName },
}

impl RpcError {
    /// The SP's own error, if that is what this is.
    pub fn sp_error(&self) -> Option<SpError> {
        match self {
            RpcError::Sp { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// The SP it was sent to.
    pub fn sp(&self) -> &SpName {
        match self {
            RpcError::Timeout { sp, .. }
            | RpcError::Busy { sp }
            | RpcError::Sp { sp, .. }
            | RpcError::Unexpected { sp, .. }
            | RpcError::NotDiscovered { sp }
            | RpcError::Io { sp, .. }
            | RpcError::Stopped { sp } => sp,
        }
    }

    /// Whether the SP said nothing (as opposed to refusing).
    pub fn is_silence(&self) -> bool {
        matches!(
            self,
            RpcError::Timeout { .. } | RpcError::NotDiscovered { .. } | RpcError::Io { .. }
        )
    }
}

/// Why an image (or the archive it comes in) cannot be sent. Found before
/// anything reaches the SP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImageError {
    #[error("the image is empty")]
    Empty,
    #[error("the image is {len} bytes; a {component} slot holds at most {max}")]
    TooLarge {
        component: SpComponent,
        len: u64,
        max: u64,
    },
    #[error("the first 64 KiB of a host-boot-flash image must be 0xFF (the SP keeps its own data there)")]
    HostFlashNotErased,
    #[error("the image must be a regular file; this is {0}")]
    NotRegularFile(&'static str),
    #[error("the file says it has {len} bytes but ended after {got}")]
    Short { len: u64, got: u64 },
    #[error("reading the image would block: it stats as a regular file but reads like a device (a /proc file?)")]
    WouldBlock,
    #[error("reading the image did not finish within {0} s (a hung network file system?); the read is abandoned")]
    ReadTimedOut(u64),
    #[error("{component} takes a raw image, not an archive")]
    NotArchiveTarget { component: SpComponent },
    #[error("archive: {0} bytes; archives of more than {1} are refused")]
    ArchiveTooLarge(u64, u64),
    #[error("archive: {0}")]
    Archive(#[source] Arc<artifacts::Error>),
    #[error(
        "the archive is for board {archive:?}, but {sp} {component} runs {running:?}; \
         use --force-board to send it anyway"
    )]
    WrongBoard {
        sp: SpName,
        component: SpComponent,
        archive: String,
        running: String,
    },
    #[error(
        "the archive's caboose names no board, and {sp} {component} runs {running:?}; \
         use --force-board to send it anyway"
    )]
    NoBoard {
        sp: SpName,
        component: SpComponent,
        running: String,
    },
}

/// Why an update could not be started, aborted or delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpdateError {
    /// The id is bound to another target or image.
    #[error(
        "update id {id} conflicts: it already names an update of {sp} {component} slot {slot} \
         with image {image}"
    )]
    Conflict {
        id: uuid::Uuid,
        sp: SpName,
        component: SpComponent,
        slot: u16,
        image: ImageHash,
    },
    /// The id names something else than an update.
    #[error("id {id} conflicts: it already names {what}")]
    IdTaken { id: uuid::Uuid, what: &'static str },
    /// An update is running on the SP (it has one update buffer).
    #[error("{sp}: update {id} of {component} is already running")]
    AlreadyRunning {
        sp: SpName,
        component: SpComponent,
        id: uuid::Uuid,
    },
    /// The SP's update buffer holds an update that ended (complete or
    /// failed): the SP takes no other until reset (or that one aborted).
    #[error("{sp}: the SP still holds update {id} ({state}); reset the SP (or abort that update) before starting another")]
    SpHoldsEnded {
        sp: SpName,
        id: uuid::Uuid,
        /// `complete` or `failed`.
        state: &'static str,
    },
    /// Something else holds the SP (see [`Operation`]): a reset while an
    /// update runs would end it; an update while a reset runs would be
    /// lost with it.
    #[error("{sp}: {}", busy_text(.sp, .held))]
    SpBusy { sp: SpName, held: Operation },
    /// The SP refused or did not answer the prepare.
    #[error("{sp}: the SP did not accept the prepare of update {id} of {component}: {source}")]
    Prepare {
        sp: SpName,
        component: SpComponent,
        id: uuid::Uuid,
        #[source]
        source: RpcError,
    },
    #[error("bad image: {0}")]
    BadImage(#[from] ImageError),
    /// The SP refused the abort (another id, or already complete).
    #[error("{sp}: the SP refused to abort update {id} of {component}: {error}")]
    AbortRefused {
        sp: SpName,
        component: SpComponent,
        id: uuid::Uuid,
        #[source]
        error: SpError,
    },
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The image could not be kept in the state directory's spool, so the
    /// update could not survive a restart: it is not started.
    #[error("cannot keep the image for a restart: {0}")]
    Spool(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The start could not be journalled: it is not started.
    #[error("cannot journal the start of update {id}: {source}")]
    Journal {
        id: uuid::Uuid,
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// Reading the image's descriptor failed (e.g. not opened for
    /// reading).
    #[error("cannot read the image: {0}")]
    ImageUnreadable(#[source] Arc<std::io::Error>),
    #[error("mgsd is shutting down and starts no new update")]
    ShuttingDown,
}

/// Why a command of the typed API (the registry's handle)
/// could not be carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown SP {0:?} (not a configured name or a known serial number)")]
    UnknownSp(String),
    #[error(transparent)]
    BadComponent(#[from] crate::types::ComponentError),
    #[error("unknown update id {0}")]
    UnknownUpdate(uuid::Uuid),
    /// Refused before anything is sent: the component has no such slot.
    #[error("{sp}: invalid slot {slot} for {component}: {}", slot_choice(*.slots))]
    BadSlot {
        sp: SpName,
        component: gateway_messages::SpComponent,
        slot: u16,
        slots: u16,
    },
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("SP {sp}: cannot open its socket: {source}")]
    Socket {
        sp: SpName,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A new configuration that cannot be applied; nothing was changed.
    #[error("the new configuration is refused, nothing changed: {0}")]
    Reconfigure(String),
    #[error("daemon is shutting down")]
    Stopped,
    /// A rollout plan is wrong; every problem, each naming its line.
    #[error("the plan is not valid: {}", .0.join("; "))]
    Plan(Vec<String>),
    #[error("unknown rollout id {0}")]
    UnknownRollout(uuid::Uuid),
}

impl From<actix::MailboxError> for RegistryError {
    fn from(_: actix::MailboxError) -> Self {
        RegistryError::Stopped
    }
}

impl From<ImageError> for RegistryError {
    fn from(e: ImageError) -> Self {
        RegistryError::Update(e.into())
    }
}

fn slot_choice(slots: u16) -> String {
    match slots {
        1 => "it has one update slot, 0".into(),
        n => format!("its update slots are 0 to {}", n - 1),
    }
}

fn busy_text(sp: &SpName, held: &Operation) -> String {
    match held {
        Operation::Update { id, component } => format!(
            "update {id} of {component} is running, and a reset would end it; abort it first \
             (mgsctl update abort {sp} {component} {id}) or wait for it"
        ),
        Operation::Reset { component } => format!(
            "a reset of {component} is under way; an update started now would be lost with it: \
             wait for the reset to end"
        ),
    }
}
