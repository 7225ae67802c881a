//! SP-side dispatch as a pure function: a request datagram and an
//! [`SpHandler`] in, the reply datagram out.
//!
//! [`handle_request`] applies the protocol's own rules (spec §2.4) before a
//! handler sees anything: undecodable header, too-old version, undecodable
//! body (newer peer vs. garbage), wrong direction, unexpected trailing data.
//! It echoes the request's message id and always replies with
//! [`version::CURRENT`]. Requests the handler does not serve get
//! `RequestUnsupportedForSp`, which every handler method returns by default.
//!
//! The handler is told nothing about who sent a request: an implementation
//! that needs the sender (the serial console only accepts writes from the
//! gateway that attached) learns it out of band, before calling
//! [`handle_request`]. [`details`] holds the wire types of the TLV items
//! that `ComponentDetails` and the bulk ignition requests carry.

use crate::tlv::DeviceDescription;
use crate::{
    encode, version, BadRequestReason, ComponentAction, ComponentActionResponse,
    ComponentUpdatePrepare, DiscoverResponse, DumpRequest, DumpResponse, DumpSegment, Header,
    IgnitionCommand, IgnitionState, LinkEvents, Message, MessageKind, MgsRequest, MgsResponse,
    PowerState, RotBootInfo, RotRequest, RotResponse, SensorRequest, SensorResponse, SpComponent,
    SpError, SpPort, SpResponse, SpStateV2, SpUpdatePrepare, StartupOptions, TlvPage,
    TransceiverSelect, UpdateChunk, UpdateId, UpdateStatus, HF_PAGE_SIZE, MAX_SERIALIZED_SIZE,
    MIN_TRAILING_DATA_LEN, ROT_PAGE_SIZE,
};
use details::ComponentDetail;

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

    /// Ignition ports of this SP's ignition controller (switches only).
    fn num_ignition_ports(&mut self) -> R<u32> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `IgnitionState` of one target.
    fn ignition_state(&mut self, target: u8) -> R<IgnitionState> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// State of port `index` for `BulkIgnitionState`; the dispatcher only
    /// asks for `index < num_ignition_ports()`.
    fn bulk_ignition_state(&mut self, index: u32) -> IgnitionState {
        IgnitionState {
            receiver: crate::ReceiverStatus {
                aligned: false,
                locked: false,
                polarity_inverted: false,
            },
            target: None,
        }
    }
    /// `IgnitionLinkEvents` of one target.
    fn ignition_link_events(&mut self, target: u8) -> R<LinkEvents> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// Link events of port `index` for `BulkIgnitionLinkEvents` (bounds as
    /// for [`SpHandler::bulk_ignition_state`]).
    fn bulk_ignition_link_events(&mut self, index: u32) -> LinkEvents {
        let none = crate::TransceiverEvents {
            encoding_error: false,
            decoding_error: false,
            ordered_set_invalid: false,
            message_version_invalid: false,
            message_type_invalid: false,
            message_checksum_invalid: false,
        };
        LinkEvents {
            controller: none,
            target_link0: none,
            target_link1: none,
        }
    }
    /// `ClearIgnitionLinkEvents`; `None` means every target / transceiver.
    fn clear_ignition_link_events(
        &mut self,
        target: Option<u8>,
        transceiver: Option<TransceiverSelect>,
    ) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `IgnitionCommand`.
    fn ignition_command(&mut self, target: u8, command: IgnitionCommand) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `SerialConsoleAttach` (the sender is known out of band).
    fn serial_console_attach(&mut self, component: SpComponent) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `SerialConsoleWrite`: `data` starts at console input offset `offset`;
    /// returns the furthest offset ingested so far.
    fn serial_console_write(&mut self, offset: u64, data: &[u8]) -> R<u64> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `SerialConsoleDetach`.
    fn serial_console_detach(&mut self) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `SerialConsoleKeepAlive`.
    fn serial_console_keepalive(&mut self) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `SerialConsoleBreak`.
    fn serial_console_break(&mut self) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// Number of detail items `ComponentDetails` reports for `component`.
    fn num_component_details(&mut self, component: SpComponent) -> R<u32> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// Detail item `index` of `component` (`index <` the count above).
    fn component_detail(&mut self, component: SpComponent, index: u32) -> ComponentDetail<'_> {
        ComponentDetail::Measurement {
            name: "",
            kind: details::MeasurementKind::Temperature,
            value: Err(details::MeasurementError::InvalidSensor),
        }
    }
    /// `ComponentClearStatus`.
    fn component_clear_status(&mut self, component: SpComponent) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ComponentAction`; `Ack` is answered `ComponentActionAck`, anything
    /// else `ComponentAction(response)`.
    fn component_action(
        &mut self,
        component: SpComponent,
        action: ComponentAction,
    ) -> R<ComponentActionResponse> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ReadSensor`.
    fn read_sensor(&mut self, request: SensorRequest) -> R<SensorResponse> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `Dump(TaskDumpCount)`.
    fn task_dump_count(&mut self) -> R<u32> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `Dump(TaskDumpReadStart)`: `(task, time, compression)` of dump `index`.
    fn task_dump_read_start(&mut self, index: u32, key: [u8; 16]) -> R<(u16, u64, u8)> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `Dump(TaskDumpReadContinue)`: the segment numbered `seq` with its
    /// compressed bytes copied into `out` (`compressed_length` of them), or
    /// `None` at the end of the dump.
    fn task_dump_read_continue(
        &mut self,
        seq: u32,
        key: [u8; 16],
        out: &mut [u8],
    ) -> R<Option<DumpSegment>> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `SendHostNmi`.
    fn send_host_nmi(&mut self) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `SetIpccKeyLookupValue` with its value.
    fn set_ipcc_key_lookup_value(&mut self, key: u8, value: &[u8]) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `ReadRot`: fill the 512-byte page.
    fn read_rot(&mut self, request: RotRequest, page: &mut [u8; ROT_PAGE_SIZE]) -> R<RotResponse> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `GetStartupOptions`.
    fn get_startup_options(&mut self) -> R<StartupOptions> {
        Err(SpError::RequestUnsupportedForSp)
    }
    /// `SetStartupOptions`.
    fn set_startup_options(&mut self, options: StartupOptions) -> R<()> {
        Err(SpError::RequestUnsupportedForSp)
    }
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

/// Encode a reply followed by `trailing` (as much as fits); returns its length.
fn reply_with(
    out: &mut [u8; MAX_SERIALIZED_SIZE],
    message_id: u32,
    response: SpResponse,
    trailing: &[u8],
) -> usize {
    let message = Message {
        header: Header {
            version: version::CURRENT,
            message_id,
        },
        kind: MessageKind::SpResponse(response),
    };
    encode(out, &message, trailing).map_or(0, |(n, _)| n)
}

/// Length of a `TaskDumpRead(Some(_))` reply without its data (the longest
/// shape of that reply).
fn dump_read_reply_len() -> usize {
    let segment = DumpSegment {
        address: 0,
        compressed_length: 0,
        uncompressed_length: 0,
        seq: 0,
    };
    let mut buf = [0u8; MAX_SERIALIZED_SIZE];
    reply(
        &mut buf,
        0,
        SpResponse::Dump(DumpResponse::TaskDumpRead(Some(segment))),
    )
}

/// Append TLV items `range` (each encoded by `item` into the space left,
/// `None` when it does not fit) to `buf`; returns the bytes written. Stops at
/// the first item that does not fit.
fn fill_tlv(
    mut buf: &mut [u8],
    range: core::ops::Range<u32>,
    mut item: impl FnMut(u32, &mut [u8]) -> Option<usize>,
) -> usize {
    let mut written = 0;
    for i in range {
        match item(i, buf) {
            Some(n) => {
                written += n;
                buf = &mut buf[n..];
            }
            None => break,
        }
    }
    written
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
        Q::IgnitionState { target } => h.ignition_state(target).map(A::IgnitionState),
        Q::IgnitionLinkEvents { target } => {
            h.ignition_link_events(target).map(A::IgnitionLinkEvents)
        }
        Q::BulkIgnitionState { offset } | Q::BulkIgnitionLinkEvents { offset } => {
            let states = matches!(request, Q::BulkIgnitionState { .. });
            return Some(match h.num_ignition_ports() {
                Err(e) => reply(out, id, A::Error(e)),
                Ok(total) => {
                    // Past the end is clamped: an empty page with the total.
                    let page = TlvPage {
                        offset: offset.min(total),
                        total,
                    };
                    let response = if states {
                        A::BulkIgnitionState(page)
                    } else {
                        A::BulkIgnitionLinkEvents(page)
                    };
                    with_trailing(out, id, response, usize::MAX, |buf| {
                        Ok(fill_tlv(buf, page.offset..total, |i, item| {
                            if states {
                                let state = h.bulk_ignition_state(i);
                                details::encode_hubpack(item, details::IGNITION_STATE_TAG, &state)
                            } else {
                                let events = h.bulk_ignition_link_events(i);
                                details::encode_hubpack(item, details::LINK_EVENTS_TAG, &events)
                            }
                        }))
                    })
                }
            });
        }
        Q::ClearIgnitionLinkEvents {
            target,
            transceiver_select,
        } => h
            .clear_ignition_link_events(target, transceiver_select)
            .map(|()| A::ClearIgnitionLinkEventsAck),
        Q::IgnitionCommand { target, command } => h
            .ignition_command(target, command)
            .map(|()| A::IgnitionCommandAck),
        Q::SerialConsoleAttach(c) => h
            .serial_console_attach(c)
            .map(|()| A::SerialConsoleAttachAck),
        Q::SerialConsoleWrite { offset } => {
            h.serial_console_write(offset, trailing)
                .map(|n| A::SerialConsoleWriteAck {
                    furthest_ingested_offset: n,
                })
        }
        Q::SerialConsoleDetach => h
            .serial_console_detach()
            .map(|()| A::SerialConsoleDetachAck),
        Q::SerialConsoleKeepAlive => h
            .serial_console_keepalive()
            .map(|()| A::SerialConsoleKeepAliveAck),
        Q::SerialConsoleBreak => h.serial_console_break().map(|()| A::SerialConsoleBreakAck),
        Q::ComponentDetails { component, offset } => {
            return Some(match h.num_component_details(component) {
                Err(e) => reply(out, id, A::Error(e)),
                Ok(total) => {
                    let page = TlvPage {
                        offset: offset.min(total),
                        total,
                    };
                    with_trailing(out, id, A::ComponentDetails(page), usize::MAX, |buf| {
                        Ok(fill_tlv(buf, page.offset..total, |i, item| {
                            h.component_detail(component, i).encode(item)
                        }))
                    })
                }
            });
        }
        Q::ComponentClearStatus(c) => h
            .component_clear_status(c)
            .map(|()| A::ComponentClearStatusAck),
        Q::ComponentAction { component, action } => {
            h.component_action(component, action).map(|r| match r {
                ComponentActionResponse::Ack => A::ComponentActionAck,
                other => A::ComponentAction(other),
            })
        }
        Q::ReadSensor(req) => h.read_sensor(req).map(A::ReadSensor),
        Q::Dump(DumpRequest::TaskDumpCount) => h
            .task_dump_count()
            .map(|n| A::Dump(DumpResponse::TaskDumpCount(n))),
        Q::Dump(DumpRequest::TaskDumpReadStart { index, key }) => h
            .task_dump_read_start(index, key)
            .map(|(task, time, compression)| {
                A::Dump(DumpResponse::TaskDumpReadStarted {
                    task,
                    time,
                    compression,
                })
            }),
        Q::Dump(DumpRequest::TaskDumpReadContinue { seq, key }) => {
            // The segment header depends on what the handler reads, so the
            // data goes to a scratch buffer first, sized to what follows the
            // reply in a datagram.
            let mut scratch = [0u8; MAX_SERIALIZED_SIZE];
            let room = MAX_SERIALIZED_SIZE - dump_read_reply_len();
            return Some(
                match h.task_dump_read_continue(seq, key, &mut scratch[..room]) {
                    Ok(segment) => {
                        let n = segment.map_or(0, |s| usize::from(s.compressed_length).min(room));
                        let response = A::Dump(DumpResponse::TaskDumpRead(segment));
                        reply_with(out, id, response, &scratch[..n])
                    }
                    Err(e) => reply(out, id, A::Error(e)),
                },
            );
        }
        Q::SendHostNmi => h.send_host_nmi().map(|()| A::SendHostNmiAck),
        Q::SetIpccKeyLookupValue { key } => h
            .set_ipcc_key_lookup_value(key, trailing)
            .map(|()| A::SetIpccKeyLookupValueAck),
        Q::ReadRot(req) => {
            return Some(with_trailing(
                out,
                id,
                A::ReadRot(RotResponse::Ok),
                ROT_PAGE_SIZE,
                |buf| {
                    let page: &mut [u8; ROT_PAGE_SIZE] = buf
                        .try_into()
                        .map_err(|_| SpError::RequestUnsupportedForSp)?;
                    h.read_rot(req, page).map(|_| ROT_PAGE_SIZE)
                },
            ))
        }
        Q::GetStartupOptions => h.get_startup_options().map(A::StartupOptions),
        Q::SetStartupOptions(options) => h
            .set_startup_options(options)
            .map(|()| A::SetStartupOptionsAck),
        // Everything else decodes but is not served by this dispatcher.
        _ => Err(SpError::RequestUnsupportedForSp),
    };
    let response = result.unwrap_or_else(A::Error);
    Some(reply(out, id, response))
}

/// Wire types of the TLV items that `ComponentDetails`, `BulkIgnitionState`
/// and `BulkIgnitionLinkEvents` replies carry as trailing data (tags below),
/// with their encoder and a decoder for the receiving side.
///
/// A `ComponentDetails` item is either a management-network port status
/// (`VSC0`: hubpack `Result<PortStatus, PortStatusError>`) or a measurement
/// (`MEA0`: hubpack [`MeasurementHeader`] then `name_length` bytes of UTF-8
/// name). Variant order is the wire tag order; never reorder.
pub mod details {
    use crate::{tlv, DecodeError, SerializedSize};
    use serde::{Deserialize, Serialize};

    /// Tag of a port status item.
    pub const PORT_STATUS_TAG: [u8; 4] = *b"VSC0";
    /// Tag of a measurement item.
    pub const MEASUREMENT_TAG: [u8; 4] = *b"MEA0";
    /// Tag of a bulk ignition state item (a hubpack `IgnitionState`).
    pub const IGNITION_STATE_TAG: [u8; 4] = *b"IGN0";
    /// Tag of a bulk link events item (a hubpack `LinkEvents`).
    pub const LINK_EVENTS_TAG: [u8; 4] = *b"ILE0";

    /// What a measurement measures (units: °C, W, A, V, RPM).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub enum MeasurementKind {
        Temperature,
        Power,
        Current,
        Voltage,
        InputCurrent,
        InputVoltage,
        Speed,
        CpuTctl,
    }

    /// Why a measurement has no value.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub enum MeasurementError {
        InvalidSensor,
        NoReading,
        NotPresent,
        DeviceError,
        DeviceUnavailable,
        DeviceTimeout,
        DeviceOff,
    }

    /// Header of a `MEA0` item; the name follows.
    #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, SerializedSize)]
    pub struct MeasurementHeader {
        /// Bytes of the name after the header.
        pub name_length: u32,
        /// What is measured.
        pub kind: MeasurementKind,
        /// The value or why there is none.
        pub value: Result<f32, MeasurementError>,
    }

    /// Why a port has no status.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    pub struct PortStatusError {
        /// Port number.
        pub port: u32,
        /// What went wrong.
        pub code: PortStatusErrorCode,
    }

    /// Port status error codes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub enum PortStatusErrorCode {
        Unconfigured,
        Other(u32),
    }

    /// Status of one management-network switch port.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub struct PortStatus {
        pub port: u32,
        pub cfg: PortConfig,
        pub link_status: LinkStatus,
        pub phy_status: Option<PhyStatus>,
        pub counters: PortCounters,
    }

    /// A port's configuration: mode, device and serdes (kind and number).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub struct PortConfig {
        pub mode: PortMode,
        pub dev: (PortDev, u8),
        pub serdes: (PortSerdes, u8),
    }

    /// Port MAC device kinds.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub enum PortDev {
        Dev1g,
        Dev2g5,
        Dev10g,
    }

    /// Port serdes kinds.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub enum PortSerdes {
        Serdes1g,
        Serdes6g,
        Serdes10g,
    }

    /// Link speeds.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub enum Speed {
        Speed100M,
        Speed1G,
        Speed10G,
    }

    /// Port modes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub enum PortMode {
        Sfi,
        BaseKr,
        Sgmii(Speed),
        Qsgmii(Speed),
    }

    /// Packet counters of one direction.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub struct PacketCount {
        pub multicast: u32,
        pub unicast: u32,
        pub broadcast: u32,
    }

    /// A port's counters.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub struct PortCounters {
        pub rx: PacketCount,
        pub tx: PacketCount,
        pub link_down_sticky: bool,
        pub phy_link_down_sticky: bool,
    }

    /// Link states.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub enum LinkStatus {
        Error,
        Down,
        Up,
    }

    /// Status of a port's PHY.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub struct PhyStatus {
        pub ty: PhyType,
        pub mac_link_up: LinkStatus,
        pub media_link_up: LinkStatus,
    }

    /// PHY parts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, SerializedSize)]
    #[allow(missing_docs)]
    pub enum PhyType {
        Vsc8504,
        Vsc8522,
        Vsc8552,
        Vsc8562,
    }

    /// One `ComponentDetails` item.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum ComponentDetail<'a> {
        /// A management-network port (`VSC0`).
        PortStatus(Result<PortStatus, PortStatusError>),
        /// A measurement channel (`MEA0`).
        Measurement {
            /// Channel name (UTF-8).
            name: &'a str,
            /// What is measured.
            kind: MeasurementKind,
            /// The value or why there is none.
            value: Result<f32, MeasurementError>,
        },
    }

    impl<'a> ComponentDetail<'a> {
        /// Append this item to `out` as a TLV item; `None` if it does not fit.
        pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
            match *self {
                Self::PortStatus(status) => encode_hubpack(out, PORT_STATUS_TAG, &status),
                Self::Measurement { name, kind, value } => {
                    let header = MeasurementHeader {
                        name_length: u32::try_from(name.len()).ok()?,
                        kind,
                        value,
                    };
                    let mut buf = [0u8; MeasurementHeader::MAX_SIZE];
                    let n = hubpack::serialize(&mut buf, &header).ok()?;
                    tlv::encode_item(out, MEASUREMENT_TAG, &[&buf[..n], name.as_bytes()])
                }
            }
        }

        /// Decode one item's value; `Ok(None)` for a tag this is not about.
        pub fn decode(tag: [u8; 4], value: &'a [u8]) -> Result<Option<Self>, DecodeError> {
            match tag {
                PORT_STATUS_TAG => {
                    let (status, _) = hubpack::deserialize(value)?;
                    Ok(Some(Self::PortStatus(status)))
                }
                MEASUREMENT_TAG => {
                    let (header, name): (MeasurementHeader, _) = hubpack::deserialize(value)?;
                    if name.len() != header.name_length as usize {
                        return Err(DecodeError::Truncated);
                    }
                    let name = core::str::from_utf8(name).map_err(|_| DecodeError::Invalid)?;
                    Ok(Some(Self::Measurement {
                        name,
                        kind: header.kind,
                        value: header.value,
                    }))
                }
                _ => Ok(None),
            }
        }
    }

    /// Append `value`, hubpack-encoded, as one TLV item tagged `tag`.
    pub fn encode_hubpack<T: Serialize + SerializedSize>(
        out: &mut [u8],
        tag: [u8; 4],
        value: &T,
    ) -> Option<usize> {
        let mut buf = [0u8; 128];
        let buf = buf.get_mut(..T::MAX_SIZE)?;
        let n = hubpack::serialize(buf, value).ok()?;
        tlv::encode_item(out, tag, &[&buf[..n]])
    }

    /// Decode a hubpack value from a TLV item's bytes (e.g. an `IGN0` item
    /// as `IgnitionState`).
    pub fn decode_hubpack<T: serde::de::DeserializeOwned>(value: &[u8]) -> Result<T, DecodeError> {
        Ok(hubpack::deserialize(value)?.0)
    }
}
