//! The update actor's decisions on what the SP answers, as pure
//! functions: what became of a prepare ([`prepare_outcome`]), what the
//! SP's status means for our update ([`read_status`]), when to look at an
//! erase again ([`erase_left`]).

use crate::error::{RpcError, UpdateError};
use crate::record::{FailureKind, SpUpdateState};
use crate::types::SpName;
use gateway_messages::{SpComponent, SpError, SpResponse, UpdateId, UpdateStatus};
use std::time::Duration;
use tokio::time::Instant;

/// What became of a prepare.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// The SP holds the update: it acknowledged, or a resent prepare found
    /// the update already there under our own id (the first ack was lost).
    Accepted,
    /// No answer: the SP may or may not hold it; ask its status.
    Unknown(RpcError),
    /// The SP refused; nothing was started.
    Refused(RpcError),
}

/// Classify the answer to the prepare of update `id`.
pub fn prepare_outcome(
    answer: Result<SpResponse, RpcError>,
    id: UpdateId,
    sp: &SpName,
) -> Prepared {
    match answer {
        Ok(SpResponse::ComponentUpdatePrepareAck | SpResponse::SpUpdatePrepareAck) => {
            Prepared::Accepted
        }
        Err(RpcError::Sp {
            error: SpError::UpdateInProgress(status),
            ..
        }) if status_id(&status) == Some(id) => Prepared::Accepted,
        Ok(other) => Prepared::Refused(RpcError::Unexpected {
            sp: sp.clone(),
            request: "update_prepare",
            response: Box::new(other),
        }),
        Err(e @ RpcError::Timeout { .. }) => Prepared::Unknown(e),
        Err(e) => Prepared::Refused(e),
    }
}

/// The update id a status names.
pub fn status_id(status: &UpdateStatus) -> Option<UpdateId> {
    use UpdateStatus as U;
    match *status {
        U::None => None,
        U::Preparing(p) => Some(p.id),
        U::SpUpdateAuxFlashChckScan { id, .. } => Some(id),
        U::InProgress(p) => Some(p.id),
        U::Complete(id) | U::Aborted(id) => Some(id),
        U::Failed { id, .. } | U::RotError { id, .. } => Some(id),
    }
}

/// What the SP's status means for update `id` of `total` bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum SpView {
    /// Still erasing: `(next sector, sectors)` where the SP says.
    Erasing(Option<(u32, u32)>),
    /// Accepting data from this offset.
    Accepting(u32),
    /// Every byte is in.
    Complete,
    /// Aborted (by us or by someone else).
    Aborted,
    /// The update cannot go on.
    Gone(FailureKind, String),
}

/// Read the SP's status of our update of `total` bytes, the first
/// `aux_len` of which are an aux-flash image (an SP image from an archive).
pub fn read_status(status: UpdateStatus, id: UpdateId, total: u32, aux_len: u32) -> SpView {
    use UpdateStatus as U;
    if status_id(&status) != Some(id) {
        return SpView::Gone(
            FailureKind::SpReset,
            format!(
                "the SP no longer has this update (it reports {:?}): it was reset, lost power, or the update was replaced",
                SpUpdateState::from(status)
            ),
        );
    }
    match status {
        U::Preparing(p) => SpView::Erasing(p.progress.map(|p| (p.current, p.total))),
        U::InProgress(p) if p.total_size != total => SpView::Gone(
            FailureKind::Other,
            format!(
                "the SP expects {} bytes, the image has {total}",
                p.total_size
            ),
        ),
        U::InProgress(p) => SpView::Accepting(p.bytes_received),
        U::SpUpdateAuxFlashChckScan { total_size, .. } if aux_len > 0 && total_size != total => {
            SpView::Gone(
                FailureKind::Other,
                format!("the SP expects {total_size} bytes, the images have {total}"),
            )
        }
        // The SP scanned its aux-flash slots: one holds our aux image
        // already (send only the SP image, after it), or none does.
        U::SpUpdateAuxFlashChckScan { found_match, .. } if aux_len > 0 => {
            SpView::Accepting(if found_match { aux_len } else { 0 })
        }
        U::Complete(_) => SpView::Complete,
        U::Aborted(_) => SpView::Aborted,
        U::Failed { code, .. } => SpView::Gone(
            FailureKind::SpRefused,
            format!("the SP failed the update (code {code:#x})"),
        ),
        U::RotError { error, .. } => SpView::Gone(
            FailureKind::SpRefused,
            format!("the RoT failed the update: {error:?}"),
        ),
        U::SpUpdateAuxFlashChckScan { .. } => SpView::Gone(
            FailureKind::Other,
            "the SP expects an aux-flash image, which this update does not have".into(),
        ),
        U::None => unreachable!("None names no id"),
    }
}

/// Why a start the SP refused (`e`, answering the prepare of update `id`
/// of `component`) was refused, in the terms a client can act on.
pub fn refusal(e: RpcError, id: uuid::Uuid, component: SpComponent) -> UpdateError {
    let RpcError::Sp {
        sp,
        error: SpError::UpdateInProgress(status),
    } = &e
    else {
        return UpdateError::Prepare {
            sp: e.sp().clone(),
            component,
            id,
            source: e,
        };
    };
    let sp = sp.clone();
    match (status_id(status), status) {
        (Some(held), UpdateStatus::Complete(_)) => UpdateError::SpHoldsEnded {
            sp,
            id: held.as_uuid(),
            state: "complete",
        },
        (Some(held), UpdateStatus::Failed { .. }) => UpdateError::SpHoldsEnded {
            sp,
            id: held.as_uuid(),
            state: "failed",
        },
        (Some(held), _) => UpdateError::AlreadyRunning {
            sp,
            component,
            id: held.as_uuid(),
        },
        (None, _) => UpdateError::Prepare {
            sp,
            component,
            id,
            source: e,
        },
    }
}

/// Polls no closer than this, however near the erase's end looks.
pub const MIN_ERASE_POLL: Duration = Duration::from_millis(10);

/// When to look again at an erase that went from sector `first` to `now`
/// of `total`: when its pace says it ends (so delivery starts within a
/// few milliseconds of the SP being ready, not up to a poll interval
/// later). Unknown pace: soon.
pub fn erase_left(first: (Instant, u32), now: (Instant, u32), total: u32) -> Duration {
    let (sectors, took) = (now.1.saturating_sub(first.1), now.0 - first.0);
    if sectors == 0 {
        return MIN_ERASE_POLL;
    }
    let left = took.mul_f64(f64::from(total.saturating_sub(now.1)) / f64::from(sectors));
    left.max(MIN_ERASE_POLL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_messages::{
        UpdateInProgressStatus, UpdatePreparationProgress, UpdatePreparationStatus,
    };

    #[test]
    fn erase_polls_aim_at_the_predicted_end() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        // 100 sectors in 250 ms; 400 left: 1 s.
        assert_eq!(erase_left((t, 1), (t + ms(250), 101), 501), ms(1000));
        // No pace yet, or nearly done: soon, but not in a spin.
        assert_eq!(erase_left((t, 1), (t, 1), 501), MIN_ERASE_POLL);
        assert_eq!(erase_left((t, 1), (t + ms(250), 500), 501), MIN_ERASE_POLL);
    }

    const ID: UpdateId = UpdateId([9; 16]);
    const OTHER: UpdateId = UpdateId([8; 16]);

    fn timeout() -> RpcError {
        RpcError::Timeout {
            sp: "sled-0".into(),
            attempts: 5,
        }
    }

    fn sp(error: SpError) -> RpcError {
        RpcError::Sp {
            sp: "sled-0".into(),
            error,
        }
    }

    fn in_progress(id: UpdateId, bytes: u32) -> UpdateStatus {
        UpdateStatus::InProgress(UpdateInProgressStatus {
            id,
            bytes_received: bytes,
            total_size: 1000,
        })
    }

    #[test]
    fn a_resent_prepare_that_finds_our_own_update_is_accepted() {
        let name = SpName::from("sled-0");
        let erasing = UpdateStatus::Preparing(UpdatePreparationStatus {
            id: ID,
            progress: Some(UpdatePreparationProgress {
                current: 3,
                total: 512,
            }),
        });
        assert!(matches!(
            prepare_outcome(Ok(SpResponse::ComponentUpdatePrepareAck), ID, &name),
            Prepared::Accepted
        ));
        for status in [erasing, in_progress(ID, 0), UpdateStatus::Complete(ID)] {
            let answer = Err(sp(SpError::UpdateInProgress(status)));
            assert!(matches!(
                prepare_outcome(answer, ID, &name),
                Prepared::Accepted
            ));
        }
        // Someone else's update: refused, and the error names it.
        let theirs = Err(sp(SpError::UpdateInProgress(in_progress(OTHER, 5))));
        assert!(matches!(
            prepare_outcome(theirs, ID, &name),
            Prepared::Refused(_)
        ));
        assert!(matches!(
            prepare_outcome(Err(timeout()), ID, &name),
            Prepared::Unknown(RpcError::Timeout { attempts: 5, .. })
        ));
        assert!(matches!(
            prepare_outcome(Err(sp(SpError::InvalidSlotForComponent)), ID, &name),
            Prepared::Refused(RpcError::Sp {
                error: SpError::InvalidSlotForComponent,
                ..
            })
        ));
    }

    #[test]
    fn status_readings() {
        assert_eq!(
            read_status(in_progress(ID, 500), ID, 1000, 0),
            SpView::Accepting(500)
        );
        assert_eq!(
            read_status(UpdateStatus::Complete(ID), ID, 1000, 0),
            SpView::Complete
        );
        assert_eq!(
            read_status(UpdateStatus::Aborted(ID), ID, 1000, 0),
            SpView::Aborted
        );
        let SpView::Gone(kind, why) = read_status(UpdateStatus::None, ID, 1000, 0) else {
            panic!()
        };
        assert_eq!(kind, FailureKind::SpReset);
        assert!(
            why.contains("no longer has this update") && why.contains("None"),
            "{why}"
        );
        assert!(matches!(
            read_status(in_progress(OTHER, 5), ID, 1000, 0),
            SpView::Gone(FailureKind::SpReset, _)
        ));
        assert!(matches!(
            read_status(in_progress(ID, 5), ID, 999, 0),
            SpView::Gone(FailureKind::Other, _)
        ));
        assert!(matches!(
            read_status(UpdateStatus::Failed { id: ID, code: 6 }, ID, 1000, 0),
            SpView::Gone(FailureKind::SpRefused, _)
        ));
    }
}
