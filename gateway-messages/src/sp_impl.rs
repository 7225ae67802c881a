//! SP-side dispatch as a pure function: a request datagram and an
//! [`SpHandler`] in, the reply datagram out.
//!
//! [`handle_request`] applies the protocol's own rules (spec §2.4) before a
//! handler sees anything: undecodable header, too-old version, undecodable
//! body (newer peer vs. garbage), wrong direction, unexpected trailing data.
//! It echoes the request's message id and always replies with
//! [`version::CURRENT`]. Requests the handler does not serve get
//! `RequestUnsupportedForSp`, which every handler method returns by default.

use crate::tlv::DeviceDescription;
use crate::{
    encode, version, BadRequestReason, ComponentUpdatePrepare, DiscoverResponse, Header, Message,
    MessageKind, MgsRequest, MgsResponse, PowerState, RotBootInfo, SpComponent, SpError, SpPort,
    SpResponse, SpStateV2, SpUpdatePrepare, TlvPage, UpdateChunk, UpdateId, UpdateStatus,
    HF_PAGE_SIZE, MAX_SERIALIZED_SIZE, MIN_TRAILING_DATA_LEN,
};

/// Whether a `SetPowerState` changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerStateTransition {
    /// A transition happened.
    Changed,
    /// Already in that state.
    Unchanged,
}

/// What a reset trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetOutcome {
    /// The component reset; acknowledge.
    Acked,
    /// The SP itself is rebooting: no reply is ever sent.
    Rebooting,
}

type R<T> = Result<T, SpError>;

/// What an SP does for each request it serves. Every method defaults to
/// `RequestUnsupportedForSp`, so an implementation overrides only what its
/// board serves.
#[allow(unused_variables)]
pub trait SpHandler {
    /// `Discover`: which port the request arrived on.
    fn discover(&mut self) -> R<DiscoverResponse> {
        Ok(DiscoverResponse {
            sp_port: SpPort::One,
        })
    }
    /// `SpState`: the dispatcher always answers with `SpStateV2`.
    fn sp_state(&mut self) -> R<SpStateV2> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `GetPowerState`.
    fn get_power_state(&mut self) -> R<PowerState> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `SetPowerState`.
    fn set_power_state(&mut self, state: PowerState) -> R<PowerStateTransition> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `SpUpdatePrepare`.
    fn sp_update_prepare(&mut self, req: SpUpdatePrepare) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ComponentUpdatePrepare`.
    fn component_update_prepare(&mut self, req: ComponentUpdatePrepare) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `UpdateChunk` with its data.
    fn update_chunk(&mut self, chunk: UpdateChunk, data: &[u8]) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `UpdateStatus`.
    fn update_status(&mut self, component: SpComponent) -> R<UpdateStatus> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `UpdateAbort`.
    fn update_abort(&mut self, component: SpComponent, id: UpdateId) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ResetComponentPrepare` (and legacy `ResetPrepare` for `sp`).
    fn reset_component_prepare(&mut self, component: SpComponent) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ResetComponentTrigger` (and legacy `ResetTrigger` for `sp`).
    fn reset_component_trigger(&mut self, component: SpComponent) -> R<ResetOutcome> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ResetComponentTriggerWithWatchdog`: reset with a rollback watchdog.
    fn reset_component_trigger_with_watchdog(
        &mut self,
        component: SpComponent,
        time_ms: u32,
    ) -> R<ResetOutcome> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `DisableComponentWatchdog`.
    fn disable_component_watchdog(&mut self, component: SpComponent) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ComponentWatchdogSupported`.
    fn component_watchdog_supported(&mut self, component: SpComponent) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `VersionedRotBootInfo`: the RoT state at the highest version not
    /// above `version`.
    fn versioned_rot_boot_info(&mut self, version: u8) -> R<RotBootInfo> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ComponentGetActiveSlot`.
    fn component_get_active_slot(&mut self, component: SpComponent) -> R<u16> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ComponentSetActiveSlot` (`persist = false`) and
    /// `ComponentSetAndPersistActiveSlot` (`persist = true`).
    fn component_set_active_slot(
        &mut self,
        component: SpComponent,
        slot: u16,
        persist: bool,
    ) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ComponentGetPersistentSlot`.
    fn component_get_persistent_slot(&mut self, component: SpComponent) -> R<u16> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ReadComponentCaboose` (and `ReadCaboose` as `sp`, slot 0): copy the
    /// value into `out` and return its length, or `CabooseValueOverflow` if
    /// it is longer than `out`.
    fn read_caboose(
        &mut self,
        component: SpComponent,
        slot: u16,
        key: [u8; 4],
        out: &mut [u8],
    ) -> R<usize> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// Number of inventory devices.
    fn num_devices(&mut self) -> u32 {
        0
    }
    /// Inventory device `index` (< [`SpHandler::num_devices`]).
    fn device_description(&mut self, index: u32) -> DeviceDescription<'_> {
        DeviceDescription {
            component: SpComponent::SP_ITSELF,
            device: "",
            description: "",
            capabilities: 0,
            presence: crate::tlv::DevicePresence::Unavailable,
        }
    }
    /// `ReadHostFlash`: one page at `addr` of `slot`.
    fn read_host_flash(&mut self, slot: u16, addr: u32, out: &mut [u8; HF_PAGE_SIZE]) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `StartHostFlashHash`.
    fn start_host_flash_hash(&mut self, slot: u16) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `GetHostFlashHash`.
    fn get_host_flash_hash(&mut self, slot: u16) -> R<[u8; 32]> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `CurrentTime` (milliseconds since boot).
    fn current_time(&mut self) -> R<u64> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// An `MgsResponse` (answers to SP-initiated requests); never replied to.
    fn mgs_response(&mut self, response: MgsResponse, trailing: &[u8]) {}
}

/// Handle one request datagram. Returns the reply's length in `out`, or
/// `None` when the SP sends nothing (an `MgsResponse`, or the SP rebooting).
pub fn handle_request<H: SpHandler + ?Sized>(
    datagram: &[u8],
    handler: &mut H,
    out: &mut [u8; MAX_SERIALIZED_SIZE],
) -> Option<usize> {
    let bad = |reason| SpResponse::Error(SpError::BadRequest(reason));
    let Ok(header) = crate::decode_header(datagram) else {
        return Some(reply(
            out,
            u32::MAX,
            bad(BadRequestReason::DeserializationError),
        ));
    };
    let id = header.message_id;
    let wrong_version = BadRequestReason::WrongVersion {
        sp: version::CURRENT,
        request: header.version,
    };
    if header.version < version::MIN {
        return Some(reply(out, id, bad(wrong_version)));
    }
    let (message, trailing) = match crate::decode(datagram) {
        Ok(decoded) => decoded,
        Err(_) if header.version > version::CURRENT => {
            return Some(reply(out, id, bad(wrong_version)))
        }
        Err(_) => return Some(reply(out, id, bad(BadRequestReason::DeserializationError))),
    };
    let request = match message.kind {
        MessageKind::MgsRequest(request) => request,
        MessageKind::MgsResponse(response) => {
            handler.mgs_response(response, trailing);
            return None;
        }
        MessageKind::SpRequest(_) | MessageKind::SpResponse(_) => {
            return Some(reply(out, id, bad(BadRequestReason::WrongDirection)))
        }
    };
    if !trailing.is_empty() && !request.accepts_trailing_data() {
        return Some(reply(
            out,
            id,
            bad(BadRequestReason::UnexpectedTrailingData),
        ));
    }
    dispatch(id, request, trailing, handler, out)
}

/// Encode a reply without trailing data; returns its length.
fn reply(out: &mut [u8; MAX_SERIALIZED_SIZE], message_id: u32, response: SpResponse) -> usize {
    let message = Message {
        header: Header {
            version: version::CURRENT,
            message_id,
        },
        kind: MessageKind::SpResponse(response),
    };
    // An SpResponse message is at most 185 bytes: it always fits.
    encode(out, &message, &[]).map_or(0, |(n, _)| n)
}

/// Encode `response` and let `fill` write the trailing data right after it
/// (into at most `cap` bytes); on error, replace everything with the error.
fn with_trailing(
    out: &mut [u8; MAX_SERIALIZED_SIZE],
    message_id: u32,
    response: SpResponse,
    cap: usize,
    fill: impl FnOnce(&mut [u8]) -> R<usize>,
) -> usize {
    let n = reply(out, message_id, response);
    let end = n.saturating_add(cap).min(MAX_SERIALIZED_SIZE);
    match fill(&mut out[n..end]) {
        Ok(len) => n + len.min(end - n),
        Err(e) => reply(out, message_id, SpResponse::Error(e)),
    }
}

fn dispatch<H: SpHandler + ?Sized>(
    id: u32,
    request: MgsRequest,
    trailing: &[u8],
    h: &mut H,
    out: &mut [u8; MAX_SERIALIZED_SIZE],
) -> Option<usize> {
    use MgsRequest as Q;
    use SpResponse as A;
    let result: R<SpResponse> = match request {
        Q::Discover => h.discover().map(A::Discover),
        Q::SpState => h.sp_state().map(A::SpStateV2),
        Q::GetPowerState => h.get_power_state().map(A::PowerState),
        Q::SetPowerState(state) => h.set_power_state(state).map(|t| match t {
            PowerStateTransition::Changed => A::PowerStateSet,
            PowerStateTransition::Unchanged => A::PowerStateUnchanged,
        }),
        Q::SpUpdatePrepare(req) => h.sp_update_prepare(req).map(|()| A::SpUpdatePrepareAck),
        Q::ComponentUpdatePrepare(req) => h
            .component_update_prepare(req)
            .map(|()| A::ComponentUpdatePrepareAck),
        Q::UpdateChunk(chunk) => h.update_chunk(chunk, trailing).map(|()| A::UpdateChunkAck),
        Q::UpdateStatus(c) => h.update_status(c).map(A::UpdateStatus),
        Q::UpdateAbort {
            component,
            id: update,
        } => h
            .update_abort(component, update)
            .map(|()| A::UpdateAbortAck),
        Q::ResetPrepare => h
            .reset_component_prepare(SpComponent::SP_ITSELF)
            .map(|()| A::ResetPrepareAck),
        Q::ResetComponentPrepare { component } => h
            .reset_component_prepare(component)
            .map(|()| A::ResetComponentPrepareAck),
        // The legacy trigger has no ack at all: success means silence.
        Q::ResetTrigger => match h.reset_component_trigger(SpComponent::SP_ITSELF) {
            Ok(_) => return None,
            Err(e) => Err(e),
        },
        Q::ResetComponentTrigger { component } => match h.reset_component_trigger(component) {
            Ok(ResetOutcome::Acked) => Ok(A::ResetComponentTriggerAck),
            Ok(ResetOutcome::Rebooting) => return None,
            Err(e) => Err(e),
        },
        Q::ResetComponentTriggerWithWatchdog { component, time_ms } => {
            match h.reset_component_trigger_with_watchdog(component, time_ms) {
                Ok(ResetOutcome::Acked) => Ok(A::ResetComponentTriggerAck),
                Ok(ResetOutcome::Rebooting) => return None,
                Err(e) => Err(e),
            }
        }
        Q::DisableComponentWatchdog { component } => h
            .disable_component_watchdog(component)
            .map(|()| A::DisableComponentWatchdogAck),
        Q::ComponentWatchdogSupported { component } => h
            .component_watchdog_supported(component)
            .map(|()| A::ComponentWatchdogSupportedAck),
        Q::VersionedRotBootInfo { version } => {
            h.versioned_rot_boot_info(version).map(A::RotBootInfo)
        }
        Q::ComponentGetActiveSlot(c) => h.component_get_active_slot(c).map(A::ComponentActiveSlot),
        Q::ComponentSetActiveSlot { component, slot } => h
            .component_set_active_slot(component, slot, false)
            .map(|()| A::ComponentSetActiveSlotAck),
        Q::ComponentSetAndPersistActiveSlot { component, slot } => h
            .component_set_active_slot(component, slot, true)
            .map(|()| A::ComponentSetAndPersistActiveSlotAck),
        Q::ComponentGetPersistentSlot(c) => h
            .component_get_persistent_slot(c)
            .map(A::ComponentPersistentSlot),
        Q::ReadCaboose { key } => {
            return Some(with_trailing(
                out,
                id,
                A::CabooseValue,
                MIN_TRAILING_DATA_LEN,
                |buf| h.read_caboose(SpComponent::SP_ITSELF, 0, key, buf),
            ))
        }
        Q::ReadComponentCaboose {
            component,
            slot,
            key,
        } => {
            return Some(with_trailing(
                out,
                id,
                A::CabooseValue,
                MIN_TRAILING_DATA_LEN,
                |buf| h.read_caboose(component, slot, key, buf),
            ))
        }
        Q::ReadHostFlash { slot, addr } => {
            return Some(with_trailing(
                out,
                id,
                A::ReadHostFlash,
                HF_PAGE_SIZE,
                |buf| {
                    let page: &mut [u8; HF_PAGE_SIZE] = buf
                        .try_into()
                        .map_err(|_| SpError::RequestUnsupportedForSp)?;
                    h.read_host_flash(slot, addr, page).map(|()| HF_PAGE_SIZE)
                },
            ))
        }
        Q::StartHostFlashHash { slot } => h
            .start_host_flash_hash(slot)
            .map(|()| A::StartHostFlashHashAck),
        Q::GetHostFlashHash { slot } => h.get_host_flash_hash(slot).map(A::HostFlashHash),
        Q::CurrentTime => h.current_time().map(A::CurrentTime),
        Q::Inventory { device_index } => {
            let total = h.num_devices();
            if device_index >= total && device_index != 0 {
                Err(SpError::RequestUnsupportedForComponent)
            } else {
                let page = TlvPage {
                    offset: device_index,
                    total,
                };
                return Some(with_trailing(
                    out,
                    id,
                    A::Inventory(page),
                    usize::MAX,
                    |mut buf| {
                        let mut written = 0;
                        for index in device_index..total {
                            match h.device_description(index).encode(buf) {
                                Some(n) => {
                                    written += n;
                                    buf = &mut buf[n..];
                                }
                                None => break,
                            }
                        }
                        Ok(written)
                    },
                ));
            }
        }
        // Everything else decodes but is not served by this dispatcher.
        _ => Err(SpError::RequestUnsupportedForSp),
    };
    let response = result.unwrap_or_else(A::Error);
    Some(reply(out, id, response))
}
