//! Golden-vector tests: one `#[test]` per line of `tests/data/messages.jsonl`.
//!
//! * `encode` vectors: the message is built here as a typed value, encoded
//!   (with its trailing data) and compared byte for byte with `hex`; `hex` is
//!   then decoded back to that same value, with exactly `trailing_hex` left
//!   over, and its `Debug` rendering must equal `desc`.
//! * `decode_error` vectors: `decode` and `decode_header` must fail (or
//!   succeed) exactly as stated.
//! * `sp_reply` vectors: `request_hex` goes through `sp_impl::handle_request`
//!   with a canned handler ([`Stub`]); the reply must equal `hex` and decode
//!   to the typed reply given here.
//!
//! `every_vector_has_a_test` checks that the vectors and the tests match one
//! to one.
//!
//! The data was produced by the reference implementation (upstream
//! `gateway-messages` @ 3c51fa06; see `/work/shared/golden/README.md`). It is
//! ground truth: never edit the data file or a vector to make a test pass.

use gateway_messages::sp_impl::{handle_request, PowerStateTransition, ResetOutcome, SpHandler};
use gateway_messages::tlv::{DeviceDescription, DevicePresence};
use gateway_messages::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use Check::{DecodeFails, DecodeOk, Encode, EncodeOffered, EncodeTrailing, Reply};

const DATA: &str = include_str!("data/messages.jsonl");

// ---------------------------------------------------------------------------
// The vectors, one line each.
// ---------------------------------------------------------------------------

/// `golden! { name => check, ... }` makes one `#[test] fn name()` per entry,
/// running `check` against the vector called `name`, and lists every name in
/// `COVERED`.
macro_rules! golden {
    ($($name:ident => $check:expr),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name), $check);
            }
        )*

        /// Names of all vectors that have a test above.
        const COVERED: &[&str] = &[$(stringify!($name)),*];
    };
}

golden! {
    // ----- MGS -> SP requests -----
    req_discover => Encode(req(1, MgsRequest::Discover)),
    req_sp_state => Encode(req(2, MgsRequest::SpState)),
    req_get_power_state => Encode(req(3, MgsRequest::GetPowerState)),
    req_set_power_state_a0 => Encode(req(4, MgsRequest::SetPowerState(PowerState::A0))),
    req_set_power_state_a1 => Encode(req(5, MgsRequest::SetPowerState(PowerState::A1))),
    req_set_power_state_a2 => Encode(req(6, MgsRequest::SetPowerState(PowerState::A2))),
    req_reset_prepare => Encode(req(7, MgsRequest::ResetPrepare)),
    req_reset_trigger => Encode(req(8, MgsRequest::ResetTrigger)),
    req_reset_component_prepare_sp =>
        Encode(req(9, MgsRequest::ResetComponentPrepare { component: SP })),
    req_reset_component_prepare_rot =>
        Encode(req(10, MgsRequest::ResetComponentPrepare { component: ROT })),
    req_reset_component_trigger_sp =>
        Encode(req(11, MgsRequest::ResetComponentTrigger { component: SP })),
    req_reset_component_trigger_rot =>
        Encode(req(12, MgsRequest::ResetComponentTrigger { component: ROT })),
    req_component_get_active_slot_hbf => Encode(req(13, MgsRequest::ComponentGetActiveSlot(HBF))),
    req_component_get_active_slot_rot => Encode(req(14, MgsRequest::ComponentGetActiveSlot(ROT))),
    req_component_set_active_slot_hbf_1 =>
        Encode(req(15, MgsRequest::ComponentSetActiveSlot { component: HBF, slot: 1 })),
    req_component_set_active_slot_rot_0 =>
        Encode(req(16, MgsRequest::ComponentSetActiveSlot { component: ROT, slot: 0 })),
    req_component_set_and_persist_active_slot_hbf_0 =>
        Encode(req(17, MgsRequest::ComponentSetAndPersistActiveSlot { component: HBF, slot: 0 })),
    req_component_set_and_persist_active_slot_sp_1 =>
        Encode(req(18, MgsRequest::ComponentSetAndPersistActiveSlot { component: SP, slot: 1 })),
    req_component_set_and_persist_active_slot_rot_0x0102 =>
        Encode(req(19, MgsRequest::ComponentSetAndPersistActiveSlot { component: ROT, slot: 0x0102 })),
    req_read_caboose_bord => Encode(req(20, MgsRequest::ReadCaboose { key: *b"BORD" })),
    req_read_caboose_gitc => Encode(req(21, MgsRequest::ReadCaboose { key: *b"GITC" })),
    req_read_component_caboose_sp_0_vers =>
        Encode(req(22, MgsRequest::ReadComponentCaboose { component: SP, slot: 0, key: *b"VERS" })),
    req_read_component_caboose_rot_1_bord =>
        Encode(req(23, MgsRequest::ReadComponentCaboose { component: ROT, slot: 1, key: *b"BORD" })),
    req_read_component_caboose_stage0_0_name =>
        Encode(req(24, MgsRequest::ReadComponentCaboose { component: STAGE0, slot: 0, key: *b"NAME" })),
    req_sp_update_prepare_no_aux => Encode(req(25, MgsRequest::SpUpdatePrepare(SpUpdatePrepare {
        id: ID1,
        aux_flash_size: 0,
        aux_flash_chck: [0; 32],
        sp_image_size: 1 << 20,
    }))),
    req_sp_update_prepare_with_aux => Encode(req(26, MgsRequest::SpUpdatePrepare(SpUpdatePrepare {
        id: ID2,
        aux_flash_size: 200_000,
        aux_flash_chck: seq(90, 17),
        sp_image_size: 987_700,
    }))),
    req_component_update_prepare_hbf_slot1 =>
        Encode(req(27, MgsRequest::ComponentUpdatePrepare(ComponentUpdatePrepare {
            component: HBF,
            id: ID1,
            slot: 1,
            total_size: 32 << 20,
        }))),
    req_component_update_prepare_rot_slot0 =>
        Encode(req(28, MgsRequest::ComponentUpdatePrepare(ComponentUpdatePrepare {
            component: ROT,
            id: ID2,
            slot: 0,
            total_size: 250_000,
        }))),
    req_component_update_prepare_stage0_slot1 =>
        Encode(req(29, MgsRequest::ComponentUpdatePrepare(ComponentUpdatePrepare {
            component: STAGE0,
            id: ID1,
            slot: 1,
            total_size: 32_512,
        }))),
    // The generator offered 2000 data bytes; only 978 fit in the datagram.
    req_update_chunk_sp_offset0_full =>
        EncodeOffered(chunk(30, SP, ID1, 0), 2000),
    req_update_chunk_hbf_offset_978_small => Encode(chunk(31, HBF, ID1, 978)),
    req_update_chunk_rot_offset_0x0003d08e => Encode(chunk(32, ROT, ID2, 0x0003_d08e)),
    req_update_chunk_aux_flash_offset0 => Encode(chunk(33, SpComponent::SP_AUX_FLASH, ID2, 0)),
    req_update_status_sp => Encode(req(34, MgsRequest::UpdateStatus(SP))),
    req_update_status_hbf => Encode(req(35, MgsRequest::UpdateStatus(HBF))),
    req_update_status_rot => Encode(req(36, MgsRequest::UpdateStatus(ROT))),
    req_update_abort_hbf => Encode(req(37, MgsRequest::UpdateAbort { component: HBF, id: ID1 })),
    req_update_abort_sp => Encode(req(38, MgsRequest::UpdateAbort { component: SP, id: ID2 })),
    req_start_host_flash_hash_0 => Encode(req(39, MgsRequest::StartHostFlashHash { slot: 0 })),
    req_start_host_flash_hash_1 => Encode(req(40, MgsRequest::StartHostFlashHash { slot: 1 })),
    req_get_host_flash_hash_0 => Encode(req(41, MgsRequest::GetHostFlashHash { slot: 0 })),
    req_get_host_flash_hash_1 => Encode(req(42, MgsRequest::GetHostFlashHash { slot: 1 })),
    req_read_host_flash_slot1_addr_0x10000 =>
        Encode(req(43, MgsRequest::ReadHostFlash { slot: 1, addr: 0x0001_0000 })),
    req_read_host_flash_slot0_addr_0x01fffe00 =>
        Encode(req(44, MgsRequest::ReadHostFlash { slot: 0, addr: 0x01ff_fe00 })),
    req_component_get_persistent_slot_hbf =>
        Encode(req(45, MgsRequest::ComponentGetPersistentSlot(HBF))),
    req_component_get_persistent_slot_sp =>
        Encode(req(46, MgsRequest::ComponentGetPersistentSlot(SP))),
    req_inventory_0 => Encode(req(47, MgsRequest::Inventory { device_index: 0 })),
    req_inventory_5 => Encode(req(48, MgsRequest::Inventory { device_index: 5 })),
    req_serial_console_attach_sp3 =>
        Encode(req(49, MgsRequest::SerialConsoleAttach(SpComponent::SP3_HOST_CPU))),
    req_serial_console_write_offset_1000 =>
        EncodeTrailing(req(50, MgsRequest::SerialConsoleWrite { offset: 1000 }), b"hello\r\n".to_vec()),
    req_serial_console_detach => Encode(req(51, MgsRequest::SerialConsoleDetach)),
    req_serial_console_keepalive => Encode(req(52, MgsRequest::SerialConsoleKeepAlive)),
    req_serial_console_break => Encode(req(53, MgsRequest::SerialConsoleBreak)),
    req_other_ignition_state => Encode(req(54, MgsRequest::IgnitionState { target: 7 })),
    req_other_bulk_ignition_state => Encode(req(55, MgsRequest::BulkIgnitionState { offset: 2 })),
    req_other_ignition_command => Encode(req(56, MgsRequest::IgnitionCommand {
        target: 3,
        command: IgnitionCommand::AlwaysTransmit { enabled: true },
    })),
    req_other_get_startup_options => Encode(req(57, MgsRequest::GetStartupOptions)),
    req_other_set_startup_options =>
        Encode(req(58, MgsRequest::SetStartupOptions(StartupOptions(0x101)))),
    req_other_component_details => Encode(req(59, MgsRequest::ComponentDetails {
        component: SpComponent::MONORAIL,
        offset: 4,
    })),
    req_other_ignition_link_events => Encode(req(60, MgsRequest::IgnitionLinkEvents { target: 1 })),
    req_other_bulk_ignition_link_events =>
        Encode(req(61, MgsRequest::BulkIgnitionLinkEvents { offset: 0 })),
    req_other_clear_ignition_link_events => Encode(req(62, MgsRequest::ClearIgnitionLinkEvents {
        target: Some(5),
        transceiver_select: Some(TransceiverSelect::TargetLink1),
    })),
    req_other_component_clear_status =>
        Encode(req(63, MgsRequest::ComponentClearStatus(SpComponent::MONORAIL))),
    req_other_send_host_nmi => Encode(req(64, MgsRequest::SendHostNmi)),
    req_other_set_ipcc_key_lookup_value =>
        EncodeTrailing(req(65, MgsRequest::SetIpccKeyLookupValue { key: 2 }), vec![1, 2, 3]),
    req_other_switch_default_image => Encode(req(66, MgsRequest::SwitchDefaultImage {
        component: ROT,
        slot: RotSlotId::B,
        duration: SwitchDuration::Forever,
    })),
    req_other_component_action_led_blink => Encode(req(67, MgsRequest::ComponentAction {
        component: SpComponent::SYSTEM_LED,
        action: ComponentAction::Led(LedComponentAction::Blink),
    })),
    req_other_read_sensor => Encode(req(68, MgsRequest::ReadSensor(SensorRequest {
        kind: SensorRequestKind::LastData,
        id: 12,
    }))),
    req_other_current_time => Encode(req(69, MgsRequest::CurrentTime)),
    req_other_read_rot =>
        Encode(req(70, MgsRequest::ReadRot(RotRequest::ReadCfpa(CfpaPage::Scratch)))),
    req_other_vpd_lock_state => Encode(req(71, MgsRequest::VpdLockState)),
    req_other_reset_component_trigger_with_watchdog =>
        Encode(req(72, MgsRequest::ResetComponentTriggerWithWatchdog { component: SP, time_ms: 90_000 })),
    req_other_disable_component_watchdog =>
        Encode(req(73, MgsRequest::DisableComponentWatchdog { component: SP })),
    req_other_component_watchdog_supported =>
        Encode(req(74, MgsRequest::ComponentWatchdogSupported { component: SP })),
    req_other_versioned_rot_boot_info =>
        Encode(req(75, MgsRequest::VersionedRotBootInfo { version: 3 })),
    req_other_dump_task_dump_count => Encode(req(76, MgsRequest::Dump(DumpRequest::TaskDumpCount))),

    // ----- SP -> MGS responses -----
    rsp_discover_port1 => Encode(rsp(77, discover(SpPort::One))),
    rsp_discover_port2 => Encode(rsp(78, discover(SpPort::Two))),
    rsp_sp_state_v2_rot_ok => Encode(rsp(79, SpResponse::SpStateV2(sp_state_v2_rot_ok()))),
    rsp_sp_state_v2_rot_ok_all_some => Encode(rsp(80, SpResponse::SpStateV2(sp_state_v2(
        PowerState::A2,
        Ok(RotStateV2 {
            active: RotSlotId::B,
            persistent_boot_preference: RotSlotId::B,
            pending_persistent_boot_preference: Some(RotSlotId::A),
            transient_boot_preference: None,
            slot_a_sha3_256_digest: Some(seq(16, 17)),
            slot_b_sha3_256_digest: Some(seq(32, 17)),
        }),
    )))),
    rsp_sp_state_v2_rot_err_sprot_timeout => Encode(rsp(81, SpResponse::SpStateV2(sp_state_v2(
        PowerState::A1,
        Err(RotError::Sprot(SprotProtocolError::Timeout)),
    )))),
    rsp_sp_state_v2_rot_err_message_error => Encode(rsp(82, SpResponse::SpStateV2(sp_state_v2(
        PowerState::A0,
        Err(RotError::MessageError { code: 0x0102_0304 }),
    )))),
    rsp_sp_state_v3 => Encode(rsp(83, SpResponse::SpStateV3(SpStateV3 {
        hubris_archive_id: [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef],
        serial_number: ascii("BRM44220011"),
        model: ascii("913-0000023"),
        revision: 2,
        base_mac_address: [0xa8, 0x40, 0x25, 0x05, 0x06, 0x07],
        power_state: PowerState::A2,
    }))),
    rsp_sp_state_v1_legacy => Encode(rsp(84, SpResponse::SpState(SpStateV1 {
        hubris_archive_id: [1, 2, 3, 4, 5, 6, 7, 8],
        serial_number: ascii("SN1"),
        model: ascii("MODEL"),
        revision: 1,
        base_mac_address: [0x02, 0, 0, 0, 0, 0x01],
        version: ImageVersion { epoch: 0, version: 3 },
        power_state: PowerState::A2,
        rot: Ok(RotState {
            rot_updates: RotUpdateDetails {
                boot_state: RotBootState {
                    active: RotSlotId::A,
                    slot_a: Some(RotImageDetails {
                        digest: seq(51, 17),
                        version: ImageVersion { epoch: 1, version: 2 },
                    }),
                    slot_b: None,
                },
            },
        }),
    }))),
    rsp_power_state_a0 => Encode(rsp(85, SpResponse::PowerState(PowerState::A0))),
    rsp_power_state_a1 => Encode(rsp(86, SpResponse::PowerState(PowerState::A1))),
    rsp_power_state_a2 => Encode(rsp(87, SpResponse::PowerState(PowerState::A2))),
    rsp_power_state_set => Encode(rsp(88, SpResponse::PowerStateSet)),
    rsp_power_state_unchanged => Encode(rsp(89, SpResponse::PowerStateUnchanged)),
    rsp_reset_prepare_ack => Encode(rsp(90, SpResponse::ResetPrepareAck)),
    rsp_reset_component_prepare_ack => Encode(rsp(91, SpResponse::ResetComponentPrepareAck)),
    rsp_reset_component_trigger_ack => Encode(rsp(92, SpResponse::ResetComponentTriggerAck)),
    rsp_component_active_slot_0 => Encode(rsp(93, SpResponse::ComponentActiveSlot(0))),
    rsp_component_active_slot_1 => Encode(rsp(94, SpResponse::ComponentActiveSlot(1))),
    rsp_component_set_active_slot_ack => Encode(rsp(95, SpResponse::ComponentSetActiveSlotAck)),
    rsp_component_set_and_persist_active_slot_ack =>
        Encode(rsp(96, SpResponse::ComponentSetAndPersistActiveSlotAck)),
    rsp_component_persistent_slot_1 => Encode(rsp(97, SpResponse::ComponentPersistentSlot(1))),
    rsp_caboose_value_bord => EncodeTrailing(rsp(98, SpResponse::CabooseValue), BORD_VALUE.to_vec()),
    rsp_caboose_value_vers => EncodeTrailing(rsp(99, SpResponse::CabooseValue), b"1.0.33".to_vec()),
    rsp_sp_update_prepare_ack => Encode(rsp(100, SpResponse::SpUpdatePrepareAck)),
    rsp_component_update_prepare_ack => Encode(rsp(101, SpResponse::ComponentUpdatePrepareAck)),
    rsp_update_chunk_ack => Encode(rsp(102, SpResponse::UpdateChunkAck)),
    rsp_update_abort_ack => Encode(rsp(103, SpResponse::UpdateAbortAck)),
    rsp_update_status_none => Encode(rsp(104, SpResponse::UpdateStatus(UpdateStatus::None))),
    rsp_update_status_preparing_no_progress => Encode(rsp(105, SpResponse::UpdateStatus(
        UpdateStatus::Preparing(UpdatePreparationStatus { id: ID1, progress: None }),
    ))),
    rsp_update_status_preparing_progress => Encode(rsp(106, SpResponse::UpdateStatus(
        UpdateStatus::Preparing(UpdatePreparationStatus {
            id: ID1,
            progress: Some(UpdatePreparationProgress { current: 1, total: 512 }),
        }),
    ))),
    rsp_update_status_aux_chck_scan_found => Encode(rsp(107, SpResponse::UpdateStatus(
        UpdateStatus::SpUpdateAuxFlashChckScan { id: ID2, found_match: true, total_size: 1_187_700 },
    ))),
    rsp_update_status_aux_chck_scan_not_found => Encode(rsp(108, SpResponse::UpdateStatus(
        UpdateStatus::SpUpdateAuxFlashChckScan { id: ID2, found_match: false, total_size: 1_187_700 },
    ))),
    rsp_update_status_in_progress => Encode(rsp(109, SpResponse::UpdateStatus(
        UpdateStatus::InProgress(UpdateInProgressStatus {
            id: ID1,
            bytes_received: 4890,
            total_size: 32 << 20,
        }),
    ))),
    rsp_update_status_complete =>
        Encode(rsp(110, SpResponse::UpdateStatus(UpdateStatus::Complete(ID1)))),
    rsp_update_status_aborted =>
        Encode(rsp(111, SpResponse::UpdateStatus(UpdateStatus::Aborted(ID2)))),
    rsp_update_status_failed =>
        Encode(rsp(112, SpResponse::UpdateStatus(UpdateStatus::Failed { id: ID1, code: 6 }))),
    rsp_update_status_rot_error_update => Encode(rsp(113, SpResponse::UpdateStatus(
        UpdateStatus::RotError { id: ID2, error: RotError::Update(UpdateError::BlockOutOfOrder) },
    ))),
    rsp_update_status_rot_error_sprot_unknown => Encode(rsp(114, SpResponse::UpdateStatus(
        UpdateStatus::RotError { id: ID2, error: RotError::Sprot(SprotProtocolError::Unknown(0xabcd)) },
    ))),
    rsp_start_host_flash_hash_ack => Encode(rsp(115, SpResponse::StartHostFlashHashAck)),
    rsp_host_flash_hash => Encode(rsp(116, SpResponse::HostFlashHash(HOST_FLASH_HASH))),
    rsp_read_host_flash =>
        EncodeTrailing(rsp(117, SpResponse::ReadHostFlash), HOST_FLASH_PAGE.to_vec()),
    rsp_inventory_page => EncodeTrailing(
        rsp(118, SpResponse::Inventory(TlvPage { offset: 0, total: 1 })),
        dsc0(DeviceDescription {
            component: SpComponent::SP3_HOST_CPU,
            device: "sp3-host-cpu",
            description: "AMD host CPU",
            capabilities: 1 << 2, // HAS_SERIAL_CONSOLE
            presence: DevicePresence::Present,
        }),
    ),
    rsp_serial_console_attach_ack => Encode(rsp(119, SpResponse::SerialConsoleAttachAck)),
    rsp_serial_console_write_ack =>
        Encode(rsp(120, SpResponse::SerialConsoleWriteAck { furthest_ingested_offset: 1007 })),
    rsp_other_ignition_state => Encode(rsp(121, SpResponse::IgnitionState(IgnitionState {
        receiver: receiver(true, true, false),
        target: Some(TargetState {
            system_type: SystemType::Unknown(0x0104),
            power_state: SystemPowerState::On,
            power_reset_in_progress: false,
            faults: SystemFaults { power_a3: false, power_a2: true, sp: false, rot: false },
            controller0_present: true,
            controller1_present: false,
            link0_receiver_status: receiver(true, true, false),
            link1_receiver_status: receiver(false, false, true),
        }),
    }))),
    rsp_other_bulk_ignition_state =>
        Encode(rsp(122, SpResponse::BulkIgnitionState(TlvPage { offset: 0, total: 0 }))),
    rsp_other_ignition_command_ack => Encode(rsp(123, SpResponse::IgnitionCommandAck)),
    rsp_other_serial_console_detach_ack => Encode(rsp(124, SpResponse::SerialConsoleDetachAck)),
    rsp_other_startup_options => Encode(rsp(125, SpResponse::StartupOptions(StartupOptions(24)))),
    rsp_other_set_startup_options_ack => Encode(rsp(126, SpResponse::SetStartupOptionsAck)),
    rsp_other_component_details =>
        Encode(rsp(127, SpResponse::ComponentDetails(TlvPage { offset: 2, total: 2 }))),
    rsp_other_ignition_link_events => Encode(rsp(128, SpResponse::IgnitionLinkEvents({
        let events = TransceiverEvents {
            encoding_error: true,
            decoding_error: false,
            ordered_set_invalid: false,
            message_version_invalid: true,
            message_type_invalid: false,
            message_checksum_invalid: false,
        };
        LinkEvents { controller: events, target_link0: events, target_link1: events }
    }))),
    rsp_other_bulk_ignition_link_events =>
        Encode(rsp(129, SpResponse::BulkIgnitionLinkEvents(TlvPage { offset: 0, total: 0 }))),
    rsp_other_clear_ignition_link_events_ack =>
        Encode(rsp(130, SpResponse::ClearIgnitionLinkEventsAck)),
    rsp_other_component_clear_status_ack => Encode(rsp(131, SpResponse::ComponentClearStatusAck)),
    rsp_other_serial_console_break_ack => Encode(rsp(132, SpResponse::SerialConsoleBreakAck)),
    rsp_other_send_host_nmi_ack => Encode(rsp(133, SpResponse::SendHostNmiAck)),
    rsp_other_set_ipcc_key_lookup_value_ack =>
        Encode(rsp(134, SpResponse::SetIpccKeyLookupValueAck)),
    rsp_other_serial_console_keep_alive_ack =>
        Encode(rsp(135, SpResponse::SerialConsoleKeepAliveAck)),
    rsp_other_switch_default_image_ack => Encode(rsp(136, SpResponse::SwitchDefaultImageAck)),
    rsp_other_component_action_ack => Encode(rsp(137, SpResponse::ComponentActionAck)),
    rsp_other_read_sensor => Encode(rsp(138, SpResponse::ReadSensor(SensorResponse::LastData {
        value: 1.5,
        timestamp: 123_456,
    }))),
    rsp_other_current_time => Encode(rsp(139, SpResponse::CurrentTime(0x123_4567_89ab))),
    rsp_other_read_rot => Encode(rsp(140, SpResponse::ReadRot(RotResponse::Ok))),
    rsp_other_vpd_lock_state => EncodeTrailing(rsp(141, SpResponse::VpdLockState), vec![1, 0, 1]),
    rsp_other_disable_component_watchdog_ack =>
        Encode(rsp(142, SpResponse::DisableComponentWatchdogAck)),
    rsp_other_component_watchdog_supported_ack =>
        Encode(rsp(143, SpResponse::ComponentWatchdogSupportedAck)),
    rsp_other_rot_boot_info_v3 => Encode(rsp(144, SpResponse::RotBootInfo(RotBootInfo::V3(RotStateV3 {
        active: RotSlotId::B,
        persistent_boot_preference: RotSlotId::B,
        pending_persistent_boot_preference: None,
        transient_boot_preference: Some(RotSlotId::A),
        slot_a_fwid: Fwid::Sha3_256(seq(1, 17)),
        slot_b_fwid: Fwid::Sha3_256(seq(2, 17)),
        stage0_fwid: Fwid::Sha3_256(seq(3, 17)),
        stage0next_fwid: Fwid::Sha3_256(seq(4, 17)),
        slot_a_status: Ok(()),
        slot_b_status: Err(ImageError::Signature),
        stage0_status: Ok(()),
        stage0next_status: Err(ImageError::Unchecked),
    })))),
    rsp_other_component_action_apob => Encode(rsp(145, SpResponse::ComponentAction(
        ComponentActionResponse::Apob(ApobResult::Success),
    ))),
    rsp_other_dump_task_dump_count =>
        Encode(rsp(146, SpResponse::Dump(DumpResponse::TaskDumpCount(3)))),

    // ----- SP errors -----
    err_busy => Encode(err(147, SpError::Busy)),
    err_bad_request_wrong_version =>
        Encode(bad(148, BadRequestReason::WrongVersion { sp: 25, request: 1 })),
    err_bad_request_wrong_direction => Encode(bad(149, BadRequestReason::WrongDirection)),
    err_bad_request_unexpected_trailing_data =>
        Encode(bad(150, BadRequestReason::UnexpectedTrailingData)),
    err_bad_request_deserialization_error =>
        Encode(bad(151, BadRequestReason::DeserializationError)),
    err_request_unsupported_for_sp => Encode(err(152, SpError::RequestUnsupportedForSp)),
    err_request_unsupported_for_component =>
        Encode(err(153, SpError::RequestUnsupportedForComponent)),
    err_ignition_other => Encode(err(154, SpError::Ignition(IgnitionError::Other(5)))),
    err_serial_console_not_attached => Encode(err(155, SpError::SerialConsoleNotAttached)),
    err_serial_console_already_attached => Encode(err(156, SpError::SerialConsoleAlreadyAttached)),
    err_other_component_update_in_progress_sp =>
        Encode(err(157, SpError::OtherComponentUpdateInProgress(SP))),
    err_update_not_prepared => Encode(err(158, SpError::UpdateNotPrepared)),
    err_invalid_update_id => Encode(err(159, SpError::InvalidUpdateId { sp_update_id: ID2 })),
    err_update_in_progress_in_progress => Encode(err(160, SpError::UpdateInProgress(
        UpdateStatus::InProgress(UpdateInProgressStatus {
            id: ID1,
            bytes_received: 1956,
            total_size: 1 << 20,
        }),
    ))),
    err_update_in_progress_complete =>
        Encode(err(161, SpError::UpdateInProgress(UpdateStatus::Complete(ID1)))),
    err_update_in_progress_preparing => Encode(err(162, SpError::UpdateInProgress(
        UpdateStatus::Preparing(UpdatePreparationStatus {
            id: ID2,
            progress: Some(UpdatePreparationProgress { current: 37, total: 512 }),
        }),
    ))),
    err_invalid_update_chunk => Encode(err(163, SpError::InvalidUpdateChunk)),
    err_update_failed_0x1de0001 => Encode(err(164, SpError::UpdateFailed(0x01de_0001))),
    err_update_slot_busy => Encode(err(165, SpError::UpdateSlotBusy)),
    err_power_state_error => Encode(err(166, SpError::PowerStateError(3))),
    err_reset_trigger_without_prepare => Encode(err(167, SpError::ResetTriggerWithoutPrepare)),
    err_invalid_slot_for_component => Encode(err(168, SpError::InvalidSlotForComponent)),
    err_component_operation_failed => Encode(err(169, SpError::ComponentOperationFailed(5))),
    err_update_is_too_large => Encode(err(170, SpError::UpdateIsTooLarge)),
    err_set_ipcc_key_lookup_value_failed => Encode(err(171, SpError::SetIpccKeyLookupValueFailed(
        IpccKeyLookupValueError::ValueTooLong { max_len: 512 },
    ))),
    err_no_caboose => Encode(err(172, SpError::NoCaboose)),
    err_no_such_caboose_key => Encode(err(173, SpError::NoSuchCabooseKey(*b"ABCD"))),
    err_caboose_value_overflow => Encode(err(174, SpError::CabooseValueOverflow(2000))),
    err_caboose_read_error => Encode(err(175, SpError::CabooseReadError)),
    err_bad_caboose_checksum => Encode(err(176, SpError::BadCabooseChecksum)),
    err_image_board_unknown => Encode(err(177, SpError::ImageBoardUnknown)),
    err_image_board_mismatch => Encode(err(178, SpError::ImageBoardMismatch)),
    err_reset_component_trigger_without_prepare =>
        Encode(err(179, SpError::ResetComponentTriggerWithoutPrepare)),
    err_switch_default_image_error => Encode(err(180, SpError::SwitchDefaultImageError(4))),
    err_sprot_timeout => Encode(err(181, SpError::Sprot(SprotProtocolError::Timeout))),
    err_sprot_unknown =>
        Encode(err(182, SpError::Sprot(SprotProtocolError::Unknown(0x1234_5678)))),
    err_spi_bad_device => Encode(err(183, SpError::Spi(SpiError::BadDevice))),
    err_sprockets_unknown => Encode(err(184, SpError::Sprockets(SprocketsError::Unknown(9)))),
    err_update_block_out_of_order =>
        Encode(err(185, SpError::Update(UpdateError::BlockOutOfOrder))),
    err_update_unknown => Encode(err(186, SpError::Update(UpdateError::Unknown(77)))),
    err_sensor_no_reading => Encode(err(187, SpError::Sensor(SensorError::NoReading))),
    err_vpd_is_locked => Encode(err(188, SpError::Vpd(VpdError::IsLocked))),
    err_watchdog_rot_other =>
        Encode(err(189, SpError::Watchdog(WatchdogError::Rot(RotWatchdogError::Other(3))))),
    err_monorail_locked =>
        Encode(err(190, SpError::Monorail(MonorailError::ManagementNetworkLocked))),
    err_dump_bad_key => Encode(err(191, SpError::Dump(DumpError::BadKey))),
    err_hf_not_muxed_to_sp => Encode(err(192, SpError::Hf(HfError::NotMuxedToSp))),
    err_hf_bad_address => Encode(err(193, SpError::Hf(HfError::BadAddress))),
    err_hf_qspi_timeout => Encode(err(194, SpError::Hf(HfError::QspiTimeout))),
    err_hf_qspi_transfer_error => Encode(err(195, SpError::Hf(HfError::QspiTransferError))),
    err_hf_hash_uncalculated => Encode(err(196, SpError::Hf(HfError::HashUncalculated))),
    err_hf_recalculate_hash => Encode(err(197, SpError::Hf(HfError::RecalculateHash))),
    err_hf_hash_in_progress => Encode(err(198, SpError::Hf(HfError::HashInProgress))),

    // ----- header byte order -----
    hdr_msgid_0xdeadbeef_discover => Encode(req(0xdead_beef, MgsRequest::Discover)),

    // ----- decoder failures -----
    decode_fail_truncated_header_5_bytes =>
        DecodeFails(DecodeError::Truncated, Err(DecodeError::Truncated)),
    decode_fail_empty => DecodeFails(DecodeError::Truncated, Err(DecodeError::Truncated)),
    decode_fail_header_only => DecodeFails(DecodeError::Truncated, Ok(header(7))),
    decode_fail_truncated_update_chunk => DecodeFails(DecodeError::Truncated, Ok(header(8))),
    decode_fail_unknown_mgs_request_tag_51 => DecodeFails(DecodeError::Custom, Ok(header(7))),
    decode_fail_known_tag_missing_payload => DecodeFails(DecodeError::Truncated, Ok(header(7))),
    decode_fail_unknown_mgs_request_tag_255 => DecodeFails(DecodeError::Custom, Ok(header(7))),
    decode_fail_unknown_message_kind_tag_4 => DecodeFails(DecodeError::Custom, Ok(header(7))),
    decode_fail_unknown_sp_response_tag_53 => DecodeFails(DecodeError::Custom, Ok(header(9))),
    decode_fail_sp_port_0 => DecodeFails(DecodeError::Custom, Ok(header(10))),
    decode_fail_sp_port_3 => DecodeFails(DecodeError::Custom, Ok(header(10))),
    decode_fail_option_tag_2 => DecodeFails(DecodeError::Invalid, Ok(header(11))),
    decode_fail_bool_7 => DecodeFails(DecodeError::Invalid, Ok(header(12))),
    decode_ok_with_leftover => DecodeOk(req(7, MgsRequest::Discover), &[0xaa, 0xbb]),

    // ----- the SP-side dispatcher -----
    sp_reply_discover => Reply(Some(rsp(7, discover(SpPort::One)))),
    sp_reply_too_old_version_1 =>
        Reply(Some(bad(85, BadRequestReason::WrongVersion { sp: 25, request: 1 }))),
    sp_reply_too_old_version_0_garbage_body =>
        Reply(Some(bad(86, BadRequestReason::WrongVersion { sp: 25, request: 0 }))),
    sp_reply_min_version_2_ok => Reply(Some(rsp(87, discover(SpPort::One)))),
    sp_reply_truncated_header =>
        Reply(Some(bad(0xffff_ffff, BadRequestReason::DeserializationError))),
    sp_reply_empty_datagram => Reply(Some(bad(0xffff_ffff, BadRequestReason::DeserializationError))),
    sp_reply_unknown_request_current_version =>
        Reply(Some(bad(7, BadRequestReason::DeserializationError))),
    sp_reply_unknown_request_future_version =>
        Reply(Some(bad(88, BadRequestReason::WrongVersion { sp: 25, request: 26 }))),
    sp_reply_future_version_known_request => Reply(Some(rsp(89, discover(SpPort::One)))),
    sp_reply_header_only => Reply(Some(bad(7, BadRequestReason::DeserializationError))),
    sp_reply_wrong_direction_sp_response => Reply(Some(bad(90, BadRequestReason::WrongDirection))),
    sp_reply_wrong_direction_sp_request => Reply(Some(bad(91, BadRequestReason::WrongDirection))),
    sp_reply_mgs_response_no_reply => Reply(None),
    sp_reply_unexpected_trailing_data =>
        Reply(Some(bad(7, BadRequestReason::UnexpectedTrailingData))),
    sp_reply_unexpected_trailing_data_update_status =>
        Reply(Some(bad(93, BadRequestReason::UnexpectedTrailingData))),
    sp_reply_update_chunk_accepts_trailing => Reply(Some(rsp(94, SpResponse::UpdateChunkAck))),
    sp_reply_sp_state_is_v2 => Reply(Some(rsp(95, SpResponse::SpStateV2(sp_state_v2_rot_ok())))),
    sp_reply_reset_trigger_maps_to_component_trigger =>
        Reply(Some(err(96, SpError::ResetComponentTriggerWithoutPrepare))),
    sp_reply_reset_prepare_ack => Reply(Some(rsp(97, SpResponse::ResetPrepareAck))),
    sp_reply_read_caboose_value => Reply(Some(rsp(98, SpResponse::CabooseValue))),
    sp_reply_read_component_caboose_missing_key =>
        Reply(Some(err(99, SpError::NoSuchCabooseKey(*b"XXXX")))),
    sp_reply_read_host_flash => Reply(Some(rsp(100, SpResponse::ReadHostFlash))),
    sp_reply_set_power_state_changed => Reply(Some(rsp(101, SpResponse::PowerStateSet))),
    sp_reply_set_power_state_unchanged => Reply(Some(rsp(102, SpResponse::PowerStateUnchanged))),
    sp_reply_get_host_flash_hash_ok =>
        Reply(Some(rsp(103, SpResponse::HostFlashHash(HOST_FLASH_HASH)))),
    sp_reply_inventory_empty =>
        Reply(Some(rsp(104, SpResponse::Inventory(TlvPage { offset: 0, total: 0 })))),
    sp_reply_inventory_past_end => Reply(Some(err(105, SpError::RequestUnsupportedForComponent))),
}

#[test]
fn every_vector_has_a_test() {
    let in_file: Vec<String> = DATA
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("messages.jsonl line is JSON");
            v["name"].as_str().expect("vector has a name").to_owned()
        })
        .collect();
    let file_set: BTreeSet<&str> = in_file.iter().map(String::as_str).collect();
    assert_eq!(
        file_set.len(),
        in_file.len(),
        "duplicate names in messages.jsonl"
    );

    let covered: BTreeSet<&str> = COVERED.iter().copied().collect();
    assert_eq!(covered.len(), COVERED.len(), "duplicate names in golden!");

    let missing: Vec<&str> = file_set.difference(&covered).copied().collect();
    let extra: Vec<&str> = covered.difference(&file_set).copied().collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "vectors without a test: {missing:?}; tests without a vector: {extra:?}"
    );
    assert_eq!(COVERED.len(), in_file.len());
}

// ---------------------------------------------------------------------------
// What each kind of vector checks.
// ---------------------------------------------------------------------------

/// The expectation for one vector (`kind` in the data says which applies).
enum Check {
    /// `encode`: this message, with `trailing_hex` as trailing data.
    Encode(Message),
    /// `encode`: this message with this trailing data, built here
    /// independently; it must also equal `trailing_hex`.
    EncodeTrailing(Message, Vec<u8>),
    /// `encode` where the caller offered this many trailing bytes and only the
    /// first `trailing_hex.len()` fit in the datagram.
    EncodeOffered(Message, usize),
    /// `decode_error`: `decode` fails with this error; `decode_header` gives
    /// this result.
    DecodeFails(DecodeError, Result<Header, DecodeError>),
    /// `decode_error` with `expected_error: null`: `decode` succeeds with this
    /// message and these leftover bytes.
    DecodeOk(Message, &'static [u8]),
    /// `sp_reply`: the dispatcher answers `request_hex` with this message (and
    /// `trailing_hex`), or stays silent for `None`.
    Reply(Option<Message>),
}

fn run(name: &str, check: Check) {
    let v = vector(name);
    let hex = unhex(field(v, "hex"));
    let trailing = unhex(field(v, "trailing_hex"));
    match check {
        Encode(message) => check_encode(v, &message, &trailing, &trailing),
        EncodeTrailing(message, data) => {
            assert_eq!(
                to_hex(&data),
                field(v, "trailing_hex"),
                "trailing data built by the test"
            );
            check_encode(v, &message, &data, &trailing);
        }
        EncodeOffered(message, offered) => {
            assert!(offered > trailing.len(), "offer more than fits");
            let mut data = trailing.clone();
            data.resize(offered, 0xa5);
            check_encode(v, &message, &data, &trailing);
        }
        DecodeFails(error, header) => {
            assert_eq!(field(v, "kind"), "decode_error");
            assert_eq!(decode(&hex), Err(error));
            assert_eq!(
                v["expected_error"].as_str(),
                Some(format!("{error:?}").as_str())
            );
            assert_eq!(
                format!("Err({error:?})"),
                field(v, "expected_message_decode")
            );
            check_header(v, &hex, header);
        }
        DecodeOk(message, leftover) => {
            assert_eq!(field(v, "kind"), "decode_error");
            assert!(v["expected_error"].is_null(), "vector expects a failure");
            let (decoded, rest) = decode(&hex).expect("decodes");
            assert_eq!(decoded, message);
            assert_eq!(rest, leftover);
            assert_eq!(
                format!("Ok({decoded:?}), leftover {} bytes", rest.len()),
                field(v, "expected_message_decode")
            );
            check_header(v, &hex, Ok(message.header));
        }
        Reply(expected) => {
            assert_eq!(field(v, "kind"), "sp_reply");
            assert_eq!(field(v, "direction"), "sp_to_mgs");
            let request = unhex(field(v, "request_hex"));
            let mut out = [0u8; MAX_SERIALIZED_SIZE];
            let reply = handle_request(&request, &mut Stub, &mut out);
            match expected {
                None => {
                    assert_eq!(field(v, "desc"), "no reply");
                    assert!(hex.is_empty(), "vector has a reply");
                    assert_eq!(
                        reply.map(|n| to_hex(&out[..n])),
                        None,
                        "the SP must stay silent"
                    );
                }
                Some(message) => {
                    let n = reply.expect("the SP stayed silent");
                    assert_eq!(to_hex(&out[..n]), field(v, "hex"), "reply datagram");
                    check_decode(v, &out[..n], &message, &trailing);
                }
            }
        }
    }
}

/// Encode `message` offering `offered` trailing bytes, of which exactly
/// `trailing` must be packed, and compare with the vector; then decode it.
fn check_encode(v: &Value, message: &Message, offered: &[u8], trailing: &[u8]) {
    assert_eq!(field(v, "kind"), "encode");
    let direction = match message.kind {
        MessageKind::MgsRequest(_) | MessageKind::MgsResponse(_) => "mgs_to_sp",
        MessageKind::SpRequest(_) | MessageKind::SpResponse(_) => "sp_to_mgs",
    };
    assert_eq!(field(v, "direction"), direction);
    let message_len = v["message_len"]
        .as_u64()
        .expect("encode vector has message_len") as usize;

    let mut buf = [0u8; 1024];
    let (len, written) = encode(&mut buf, message, offered).expect("encodes");
    assert_eq!(to_hex(&buf[..len]), field(v, "hex"), "encoded datagram");
    assert_eq!(written, trailing.len(), "trailing bytes packed");
    assert_eq!(len - written, message_len, "message_len");

    let mut alone = [0u8; 1024];
    assert_eq!(
        encode(&mut alone, message, &[]),
        Ok((message_len, 0)),
        "message alone"
    );
    assert_eq!(alone[..message_len], buf[..message_len]);

    let datagram = unhex(field(v, "hex"));
    check_decode(v, &datagram, message, trailing);
}

/// `datagram` decodes to `message` with `trailing` left over, and the
/// decoded value's `Debug` is the vector's `desc`.
fn check_decode(v: &Value, datagram: &[u8], message: &Message, trailing: &[u8]) {
    let (decoded, leftover) = decode(datagram).expect("decodes");
    assert_eq!(decoded, *message, "decoded message");
    assert_eq!(
        to_hex(leftover),
        to_hex(trailing),
        "leftover (trailing) bytes"
    );
    assert_eq!(format!("{decoded:?}"), field(v, "desc"), "Debug rendering");
}

fn check_header(v: &Value, datagram: &[u8], expected: Result<Header, DecodeError>) {
    let got = decode_header(datagram);
    assert_eq!(got, expected, "decode_header");
    assert_eq!(format!("{got:?}"), field(v, "expected_header_decode"));
}

// ---------------------------------------------------------------------------
// The canned SP handler behind the `sp_reply` vectors (README, sp_reply).
// ---------------------------------------------------------------------------

struct Stub;

impl SpHandler for Stub {
    fn discover(&mut self) -> Result<DiscoverResponse, SpError> {
        Ok(DiscoverResponse {
            sp_port: SpPort::One,
        })
    }

    fn sp_state(&mut self) -> Result<SpStateV2, SpError> {
        Ok(sp_state_v2_rot_ok())
    }

    fn set_power_state(&mut self, state: PowerState) -> Result<PowerStateTransition, SpError> {
        match state {
            PowerState::A0 => Ok(PowerStateTransition::Changed),
            PowerState::A2 => Ok(PowerStateTransition::Unchanged),
            PowerState::A1 => Err(SpError::PowerStateError(1)),
        }
    }

    fn update_chunk(&mut self, _chunk: UpdateChunk, _data: &[u8]) -> Result<(), SpError> {
        Ok(())
    }

    fn reset_component_prepare(&mut self, _component: SpComponent) -> Result<(), SpError> {
        Ok(())
    }

    fn reset_component_trigger(
        &mut self,
        _component: SpComponent,
    ) -> Result<ResetOutcome, SpError> {
        Err(SpError::ResetComponentTriggerWithoutPrepare)
    }

    fn read_caboose(
        &mut self,
        _component: SpComponent,
        _slot: u16,
        key: [u8; 4],
        out: &mut [u8],
    ) -> Result<usize, SpError> {
        let value: &[u8] = match &key {
            b"BORD" => BORD_VALUE,
            _ => return Err(SpError::NoSuchCabooseKey(key)),
        };
        let overflow = SpError::CabooseValueOverflow(value.len() as u32);
        out.get_mut(..value.len())
            .ok_or(overflow)?
            .copy_from_slice(value);
        Ok(value.len())
    }

    fn read_host_flash(
        &mut self,
        _slot: u16,
        _addr: u32,
        out: &mut [u8; HF_PAGE_SIZE],
    ) -> Result<(), SpError> {
        *out = HOST_FLASH_PAGE;
        Ok(())
    }

    fn get_host_flash_hash(&mut self, _slot: u16) -> Result<[u8; 32], SpError> {
        Ok(HOST_FLASH_HASH)
    }
}

// ---------------------------------------------------------------------------
// Values shared by several vectors.
// ---------------------------------------------------------------------------

/// Update id `00112233-4455-6677-8899-aabbccddeeff`.
const ID1: UpdateId = UpdateId(uuid::uuid!("00112233-4455-6677-8899-aabbccddeeff").into_bytes());
/// Update id `12345678-9abc-def0-0fed-cba987654321`.
const ID2: UpdateId = UpdateId(uuid::uuid!("12345678-9abc-def0-0fed-cba987654321").into_bytes());

const SP: SpComponent = SpComponent::SP_ITSELF;
const ROT: SpComponent = SpComponent::ROT;
const STAGE0: SpComponent = SpComponent::STAGE0;
const HBF: SpComponent = SpComponent::HOST_CPU_BOOT_FLASH;

/// The caboose `BORD` value the stub (and `rsp_caboose_value_bord`) reports.
const BORD_VALUE: &[u8] = b"gimlet-e";
/// The host-flash page the stub returns (and `rsp_read_host_flash` carries).
const HOST_FLASH_PAGE: [u8; HF_PAGE_SIZE] = seq(0x40, 7);
/// The host-flash hash the stub returns (and `rsp_host_flash_hash` carries).
const HOST_FLASH_HASH: [u8; 32] = seq(0xa0, 0x11);

fn header(message_id: u32) -> Header {
    Header {
        version: 25,
        message_id,
    }
}

fn req(message_id: u32, request: MgsRequest) -> Message {
    Message {
        header: header(message_id),
        kind: MessageKind::MgsRequest(request),
    }
}

fn rsp(message_id: u32, response: SpResponse) -> Message {
    Message {
        header: header(message_id),
        kind: MessageKind::SpResponse(response),
    }
}

fn err(message_id: u32, error: SpError) -> Message {
    rsp(message_id, SpResponse::Error(error))
}

fn bad(message_id: u32, reason: BadRequestReason) -> Message {
    err(message_id, SpError::BadRequest(reason))
}

fn chunk(message_id: u32, component: SpComponent, id: UpdateId, offset: u32) -> Message {
    req(
        message_id,
        MgsRequest::UpdateChunk(UpdateChunk {
            component,
            id,
            offset,
        }),
    )
}

fn discover(sp_port: SpPort) -> SpResponse {
    SpResponse::Discover(DiscoverResponse { sp_port })
}

fn receiver(aligned: bool, locked: bool, polarity_inverted: bool) -> ReceiverStatus {
    ReceiverStatus {
        aligned,
        locked,
        polarity_inverted,
    }
}

/// The gimlet `SpStateV2` of the `rsp_sp_state_v2_*` vectors.
fn sp_state_v2(power_state: PowerState, rot: Result<RotStateV2, RotError>) -> SpStateV2 {
    SpStateV2 {
        hubris_archive_id: [0x8a, 0x3b, 0x1c, 0x7d, 0x00, 0xe1, 0x52, 0x9f],
        serial_number: ascii("BRM42220004"),
        model: ascii("913-0000019"),
        revision: 6,
        base_mac_address: [0xa8, 0x40, 0x25, 0x04, 0x01, 0x10],
        power_state,
        rot,
    }
}

/// `rsp_sp_state_v2_rot_ok`: also what the stub answers to `SpState`.
fn sp_state_v2_rot_ok() -> SpStateV2 {
    sp_state_v2(
        PowerState::A0,
        Ok(RotStateV2 {
            active: RotSlotId::A,
            persistent_boot_preference: RotSlotId::A,
            pending_persistent_boot_preference: None,
            transient_boot_preference: Some(RotSlotId::B),
            slot_a_sha3_256_digest: Some(seq(1, 17)),
            slot_b_sha3_256_digest: None,
        }),
    )
}

/// One `DSC0` TLV item, encoded by the library.
fn dsc0(description: DeviceDescription<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_SERIALIZED_SIZE];
    let n = description.encode(&mut buf).expect("fits");
    buf[..n].to_vec()
}

/// `[start, start + step, start + 2·step, …]`, wrapping: the byte patterns
/// the generator used for digests, hashes and data.
const fn seq<const N: usize>(start: u8, step: u8) -> [u8; N] {
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = start.wrapping_add(step.wrapping_mul(i as u8));
        i += 1;
    }
    out
}

/// `s` NUL-padded to `N` bytes (serial numbers, models).
fn ascii<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0; N];
    out[..s.len()].copy_from_slice(s.as_bytes());
    out
}

// ---------------------------------------------------------------------------
// Reading the data file.
// ---------------------------------------------------------------------------

fn vector(name: &str) -> &'static Value {
    static VECTORS: OnceLock<HashMap<String, Value>> = OnceLock::new();
    let vectors = VECTORS.get_or_init(|| {
        let mut map = HashMap::new();
        for line in DATA.lines().filter(|line| !line.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).expect("messages.jsonl line is JSON");
            let name = v["name"].as_str().expect("vector has a name").to_owned();
            assert!(
                map.insert(name.clone(), v).is_none(),
                "duplicate vector {name}"
            );
        }
        map
    });
    vectors
        .get(name)
        .unwrap_or_else(|| panic!("no vector named {name}"))
}

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {key} missing or not a string"))
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd-length hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
