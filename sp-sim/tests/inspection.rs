//! Inspection and power over loopback: inventory paging, component details,
//! sensors and their failures, ignition, task dumps, LED, NMI, RoT pages.

mod common;

use common::{rack, wait_for, Gateway, RpcError};
use gateway_messages::sp_impl::details::{
    decode_hubpack, ComponentDetail, MeasurementError, IGNITION_STATE_TAG,
};
use gateway_messages::tlv::{
    items, DeviceDescriptionHeader, DevicePresence, DEVICE_DESCRIPTION_TAG,
};
use gateway_messages::{
    CfpaPage, ComponentAction, DumpRequest, DumpResponse, DumpSegment, IgnitionCommand,
    IgnitionError, IgnitionState, LedComponentAction, MgsRequest, PowerState, RotRequest,
    SensorDataMissing, SensorRequest, SensorRequestKind, SensorResponse, SpComponent, SpError,
    SpResponse, SystemPowerState, SystemType, TlvPage, TransceiverSelect,
};
use sp_sim::dumps::DumpLzss;
use sp_sim::{LedState, SensorFailure, SensorFault, SimRack};
use tokio::time::Duration;

/// The whole inventory, page by page: (component, device, presence) and
/// the number of pages.
async fn inventory(g: &mut Gateway) -> (Vec<(String, String, DevicePresence)>, usize) {
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let (r, data) = g
            .rpc(
                MgsRequest::Inventory {
                    device_index: out.len() as u32,
                },
                &[],
            )
            .await
            .unwrap();
        let SpResponse::Inventory(TlvPage { offset, total }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(offset as usize, out.len());
        pages += 1;
        for (tag, value) in items(&data) {
            assert_eq!(tag, DEVICE_DESCRIPTION_TAG);
            let (h, rest): (DeviceDescriptionHeader, _) = hubpack::deserialize(value).unwrap();
            let device = String::from_utf8(rest[..h.device_len as usize].to_vec()).unwrap();
            out.push((h.component.to_string(), device, h.presence));
        }
        if out.len() as u32 == total {
            return (out, pages);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventories_page_and_list_each_kind_of_board() {
    let rack = SimRack::start(rack(1, 1, 1)).await.unwrap();
    let mut g = Gateway::new(rack.sps[0].addr).await;
    let (sled, pages) = inventory(&mut g).await;
    assert!(pages >= 2, "{pages} pages");
    let names: Vec<&str> = sled.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(
        &names[..4],
        ["sp", "sp3-host-cpu", "host-boot-flash", "system-led"]
    );
    for expected in ["U350", "U321", "CPU", "M0", "M15"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(sled
        .iter()
        .any(|d| d.1 == "tse2004av" && d.2 == DevicePresence::Present));
    // Past the end (and not 0): refused.
    let past = MgsRequest::Inventory {
        device_index: sled.len() as u32 + 1,
    };
    assert_eq!(
        g.rpc(past, &[]).await.map(|r| r.0),
        Err(RpcError::Sp(SpError::RequestUnsupportedForComponent))
    );
    // A0-only devices are unavailable in A2.
    g.rpc(MgsRequest::SetPowerState(PowerState::A2), &[])
        .await
        .unwrap();
    let (off, _) = inventory(&mut g).await;
    let dimm = off.iter().find(|d| d.0 == "M0").unwrap();
    assert_eq!(dimm.2, DevicePresence::Unavailable);

    let mut s = Gateway::new(rack.sps[1].addr).await;
    let (switch, _) = inventory(&mut s).await;
    let names: Vec<&str> = switch.iter().map(|d| d.0.as_str()).collect();
    for expected in ["monorail", "tofino", "sp-aux-flash", "xcvr0", "xcvr31"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(switch
        .iter()
        .any(|d| d.0 == "xcvr9" && d.2 == DevicePresence::NotPresent));
    let mut p = Gateway::new(rack.sps[2].addr).await;
    let (shelf, _) = inventory(&mut p).await;
    assert_eq!(shelf.iter().filter(|d| d.1 == "mwocp68").count(), 6);
    rack.stop().await;
}

fn details(data: &[u8]) -> Vec<ComponentDetail<'_>> {
    items(data)
        .filter_map(|(tag, value)| ComponentDetail::decode(tag, value).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_details_carry_measurements_and_switch_ports() {
    let rack = SimRack::start(rack(1, 1, 0)).await.unwrap();
    let mut g = Gateway::new(rack.sps[0].addr).await;
    let fans = SpComponent::try_from("U321").unwrap();
    let (r, data) = g
        .rpc(
            MgsRequest::ComponentDetails {
                component: fans,
                offset: 0,
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        SpResponse::ComponentDetails(TlvPage {
            offset: 0,
            total: 6
        })
    );
    let d = details(&data);
    assert_eq!(d.len(), 6);
    let ComponentDetail::Measurement { name, value, .. } = d[0] else {
        panic!()
    };
    assert_eq!(name, "Southeast");
    assert!(
        value.is_ok_and(|rpm| rpm > 4000.0 && rpm < 9000.0),
        "{value:?}"
    );
    assert_eq!(
        g.rpc(
            MgsRequest::ComponentDetails {
                component: SpComponent::ROT,
                offset: 0
            },
            &[]
        )
        .await
        .map(|r| r.0),
        Err(RpcError::Sp(SpError::RequestUnsupportedForComponent))
    );
    assert_eq!(
        g.rpc(MgsRequest::ComponentClearStatus(fans), &[])
            .await
            .map(|r| r.0),
        Err(RpcError::Sp(SpError::RequestUnsupportedForComponent))
    );

    // The switch's management network ports, over several pages.
    let mut s = Gateway::new(rack.sps[1].addr).await;
    let ask = |offset| MgsRequest::ComponentDetails {
        component: SpComponent::MONORAIL,
        offset,
    };
    let mut ports = Vec::new();
    while ports.len() < 53 {
        let (r, data) = s.rpc(ask(ports.len() as u32), &[]).await.unwrap();
        assert!(matches!(
            r,
            SpResponse::ComponentDetails(TlvPage { total: 53, .. })
        ));
        let page = details(&data);
        assert!(!page.is_empty());
        ports.extend(page.into_iter().map(|d| match d {
            ComponentDetail::PortStatus(s) => s,
            other => panic!("{other:?}"),
        }));
    }
    assert!(ports[0].is_ok() && ports[52].is_err());
    s.rpc(MgsRequest::ComponentClearStatus(SpComponent::MONORAIL), &[])
        .await
        .unwrap();
    rack.stop().await;
}

fn reading(r: Result<SensorResponse, SpError>) -> Result<f32, SensorDataMissing> {
    match r {
        Ok(SensorResponse::LastReading(r)) => r.value,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensors_move_and_fail_as_configured() {
    let mut cfg = rack(1, 0, 0);
    cfg.faults.sensor_errors = vec![SensorFault {
        sensor: 1,
        error: SensorFailure::DeviceTimeout,
    }];
    let rack = SimRack::start(cfg).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = Gateway::new(sp.addr).await;
    async fn ask(
        g: &mut Gateway,
        kind: SensorRequestKind,
        id: u32,
    ) -> Result<SpResponse, RpcError> {
        let r = MgsRequest::ReadSensor(SensorRequest { kind, id });
        g.rpc(r, &[]).await.map(|r| r.0)
    }
    // The fault config applies from the first request on.
    let SpResponse::ReadSensor(r) = ask(&mut g, SensorRequestKind::LastReading, 1)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(reading(Ok(r)), Err(SensorDataMissing::DeviceTimeout));
    assert_eq!(
        ask(&mut g, SensorRequestKind::LastData, 1).await,
        Err(RpcError::Sp(SpError::Sensor(
            gateway_messages::SensorError::NoReading
        )))
    );
    assert!(matches!(
        ask(&mut g, SensorRequestKind::ErrorCount, 1).await,
        Ok(SpResponse::ReadSensor(SensorResponse::ErrorCount(n))) if n >= 1
    ));
    assert_eq!(
        ask(&mut g, SensorRequestKind::LastReading, 9999).await,
        Err(RpcError::Sp(SpError::Sensor(
            gateway_messages::SensorError::InvalidSensor
        )))
    );
    // Sensor 0 reads a plausible temperature that changes with time.
    let first = reading(sp.sensor_reading(0)).unwrap();
    assert!((20.0..90.0).contains(&first), "{first}");
    let moved = wait_for(Duration::from_secs(5), || {
        reading(sp.sensor_reading(0)).is_ok_and(|v| v != first)
    })
    .await;
    assert!(moved);
    // A fault set through the handle, then cleared: the error is kept.
    assert!(sp.set_sensor_fault(0, Some(SensorDataMissing::DeviceError)));
    assert_eq!(
        reading(sp.sensor_reading(0)),
        Err(SensorDataMissing::DeviceError)
    );
    sp.set_sensor_fault(0, None);
    assert!(reading(sp.sensor_reading(0)).is_ok());
    assert!(matches!(
        ask(&mut g, SensorRequestKind::LastError, 0).await,
        Ok(SpResponse::ReadSensor(SensorResponse::LastError {
            value: SensorDataMissing::DeviceError,
            ..
        }))
    ));
    // The CPU power controller is off in A2.
    g.rpc(MgsRequest::SetPowerState(PowerState::A2), &[])
        .await
        .unwrap();
    assert_eq!(
        reading(sp.sensor_reading(2)),
        Err(SensorDataMissing::DeviceOff)
    );
    let cpu = SpComponent::try_from("U350").unwrap();
    let (_, data) = g
        .rpc(
            MgsRequest::ComponentDetails {
                component: cpu,
                offset: 0,
            },
            &[],
        )
        .await
        .unwrap();
    assert!(matches!(
        details(&data)[0],
        ComponentDetail::Measurement {
            value: Err(MeasurementError::DeviceOff),
            ..
        }
    ));
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignition_power_off_silences_the_target_until_power_on() {
    let rack = SimRack::start(rack(2, 1, 1)).await.unwrap();
    let (sled1, switch) = (&rack.sps[1], &rack.sps[2]);
    let mut s = Gateway::new(switch.addr).await;
    let mut t = Gateway::new(sled1.addr).await;
    t.attempts = 3;
    t.timeout = Duration::from_millis(50);
    // Sled cubby 1 is target 30 in the real rack map; the shelf 32.
    let state = |target| MgsRequest::IgnitionState { target };
    let (r, _) = s.rpc(state(30), &[]).await.unwrap();
    let SpResponse::IgnitionState(IgnitionState {
        target: Some(ts), ..
    }) = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(
        (ts.system_type, ts.power_state),
        (SystemType::Gimlet, SystemPowerState::On)
    );
    let (r, _) = s.rpc(state(32), &[]).await.unwrap();
    assert!(
        matches!(r, SpResponse::IgnitionState(IgnitionState { target: Some(t), .. }) if t.system_type == SystemType::Psc)
    );
    assert!(matches!(
        s.rpc(state(3), &[]).await,
        Ok((
            SpResponse::IgnitionState(IgnitionState { target: None, .. }),
            _
        ))
    ));
    assert_eq!(
        s.rpc(state(36), &[]).await.map(|r| r.0),
        Err(RpcError::Sp(SpError::Ignition(IgnitionError::InvalidPort)))
    );
    let command = |target, command| MgsRequest::IgnitionCommand { target, command };
    assert_eq!(
        s.rpc(command(3, IgnitionCommand::PowerOff), &[])
            .await
            .map(|r| r.0),
        Err(RpcError::Sp(SpError::Ignition(
            IgnitionError::NoTargetPresent
        )))
    );

    t.rpc(MgsRequest::Discover, &[]).await.unwrap();
    assert_eq!(
        s.rpc(command(30, IgnitionCommand::PowerOff), &[])
            .await
            .map(|r| r.0),
        Ok(SpResponse::IgnitionCommandAck)
    );
    assert!(!sled1.ignition_powered());
    assert_eq!(
        t.rpc(MgsRequest::Discover, &[]).await,
        Err(RpcError::Timeout)
    );
    let (r, _) = s.rpc(state(30), &[]).await.unwrap();
    assert!(
        matches!(r, SpResponse::IgnitionState(IgnitionState { target: Some(t), .. }) if t.power_state == SystemPowerState::Off)
    );
    s.rpc(command(30, IgnitionCommand::PowerOn), &[])
        .await
        .unwrap();
    t.attempts = 40;
    assert!(t.rpc(MgsRequest::Discover, &[]).await.is_ok());
    assert!(sled1.fault_stats().ignored_while_off > 0);
    // A reset cycles power: the SP rebooted (uptime restarted).
    s.rpc(command(30, IgnitionCommand::PowerReset), &[])
        .await
        .unwrap();
    let (r, _) = t.rpc(MgsRequest::CurrentTime, &[]).await.unwrap();
    assert!(
        matches!(r, SpResponse::CurrentTime(ms) if ms < 1000),
        "{r:?}"
    );

    // Link events, bulk state over pages, clearing.
    assert!(switch.inject_link_event(30, TransceiverSelect::TargetLink0));
    let (r, _) = s
        .rpc(MgsRequest::IgnitionLinkEvents { target: 30 }, &[])
        .await
        .unwrap();
    assert!(matches!(r, SpResponse::IgnitionLinkEvents(e) if e.target_link0.encoding_error));
    let clear = MgsRequest::ClearIgnitionLinkEvents {
        target: None,
        transceiver_select: None,
    };
    s.rpc(clear, &[]).await.unwrap();
    assert!(switch
        .link_events(30)
        .is_some_and(|e| !e.target_link0.encoding_error));
    let mut states = Vec::new();
    while states.len() < 36 {
        let (r, data) = s
            .rpc(
                MgsRequest::BulkIgnitionState {
                    offset: states.len() as u32,
                },
                &[],
            )
            .await
            .unwrap();
        assert!(matches!(
            r,
            SpResponse::BulkIgnitionState(TlvPage { total: 36, .. })
        ));
        let page: Vec<IgnitionState> = items(&data)
            .map(|(tag, v)| {
                assert_eq!(tag, IGNITION_STATE_TAG);
                decode_hubpack(v).unwrap()
            })
            .collect();
        assert!(!page.is_empty());
        states.extend(page);
    }
    assert_eq!(states.iter().filter(|s| s.target.is_some()).count(), 4);
    // A later page starts where asked; past the end is an empty page.
    let (r, data) = s
        .rpc(MgsRequest::BulkIgnitionState { offset: 30 }, &[])
        .await
        .unwrap();
    assert_eq!(
        r,
        SpResponse::BulkIgnitionState(TlvPage {
            offset: 30,
            total: 36
        })
    );
    assert_eq!(items(&data).count(), 6);
    let (r, data) = s
        .rpc(MgsRequest::BulkIgnitionState { offset: 99 }, &[])
        .await
        .unwrap();
    assert_eq!(
        (r, data.len()),
        (
            SpResponse::BulkIgnitionState(TlvPage {
                offset: 36,
                total: 36
            }),
            0
        )
    );

    // A sled has no ignition controller.
    assert_eq!(
        t.rpc(command(0, IgnitionCommand::PowerOn), &[])
            .await
            .map(|r| r.0),
        Err(RpcError::Sp(SpError::RequestUnsupportedForSp))
    );
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_task_leaves_a_dump_read_in_segments() {
    let rack = SimRack::start(rack(1, 0, 0)).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = Gateway::new(sp.addr).await;
    let dump = |r| MgsRequest::Dump(r);
    assert_eq!(
        g.rpc(dump(DumpRequest::TaskDumpCount), &[])
            .await
            .map(|r| r.0),
        Ok(SpResponse::Dump(DumpResponse::TaskDumpCount(0)))
    );
    assert_eq!(sp.inject_task_crash(7), Some(0));
    assert_eq!(
        g.rpc(dump(DumpRequest::TaskDumpCount), &[])
            .await
            .map(|r| r.0),
        Ok(SpResponse::Dump(DumpResponse::TaskDumpCount(1)))
    );
    let key = [9u8; 16];
    assert_eq!(
        g.rpc(dump(DumpRequest::TaskDumpReadStart { index: 1, key }), &[])
            .await
            .map(|r| r.0),
        Err(RpcError::Sp(SpError::Dump(
            gateway_messages::DumpError::BadIndex
        )))
    );
    let (r, _) = g
        .rpc(dump(DumpRequest::TaskDumpReadStart { index: 0, key }), &[])
        .await
        .unwrap();
    assert!(matches!(
        r,
        SpResponse::Dump(DumpResponse::TaskDumpReadStarted {
            task: 7,
            compression: 0,
            ..
        })
    ));
    let mut regions = Vec::new();
    for seq in 0.. {
        let (r, data) = g
            .rpc(dump(DumpRequest::TaskDumpReadContinue { seq, key }), &[])
            .await
            .unwrap();
        match r {
            SpResponse::Dump(DumpResponse::TaskDumpRead(Some(DumpSegment {
                address,
                compressed_length,
                uncompressed_length,
                seq: s,
            }))) => {
                assert_eq!((s, data.len()), (seq, usize::from(compressed_length)));
                let plain = DumpLzss::decompress_stack(
                    lzss::SliceReader::new(&data),
                    lzss::VecWriter::with_capacity(512),
                )
                .unwrap();
                assert_eq!(plain.len(), usize::from(uncompressed_length));
                regions.push((address, plain));
            }
            SpResponse::Dump(DumpResponse::TaskDumpRead(None)) => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(regions == sp.task_dump_memory(0));
    // The reader is closed at the end; a reset loses the dump.
    assert_eq!(
        g.rpc(dump(DumpRequest::TaskDumpReadContinue { seq: 0, key }), &[])
            .await
            .map(|r| r.0),
        Err(RpcError::Sp(SpError::Dump(
            gateway_messages::DumpError::BadKey
        )))
    );
    sp.reset_now();
    assert_eq!(sp.task_dump_count(), 0);
    rack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn led_nmi_rot_pages_and_time() {
    let rack = SimRack::start(rack(1, 1, 0)).await.unwrap();
    let sp = &rack.sps[0];
    let mut g = Gateway::new(sp.addr).await;
    let led = |a| MgsRequest::ComponentAction {
        component: SpComponent::SYSTEM_LED,
        action: ComponentAction::Led(a),
    };
    assert_eq!(
        g.rpc(led(LedComponentAction::Blink), &[])
            .await
            .map(|r| r.0),
        Ok(SpResponse::ComponentActionAck)
    );
    assert_eq!(sp.system_led(), LedState::Blink);
    assert_eq!(
        g.rpc(MgsRequest::SendHostNmi, &[]).await.map(|r| r.0),
        Ok(SpResponse::SendHostNmiAck)
    );
    assert_eq!(sp.host_nmi_count(), 1);
    let (r, page) = g
        .rpc(MgsRequest::ReadRot(RotRequest::ReadCmpa), &[])
        .await
        .unwrap();
    assert_eq!(
        (r, page.len()),
        (SpResponse::ReadRot(gateway_messages::RotResponse::Ok), 512)
    );
    assert!(page == sp.rot_page("cmpa"));
    let (_, scratch) = g
        .rpc(
            MgsRequest::ReadRot(RotRequest::ReadCfpa(CfpaPage::Scratch)),
            &[],
        )
        .await
        .unwrap();
    assert!(scratch != page);
    let (r, _) = g.rpc(MgsRequest::CurrentTime, &[]).await.unwrap();
    assert!(matches!(r, SpResponse::CurrentTime(_)));
    let mut s = Gateway::new(rack.sps[1].addr).await;
    assert_eq!(
        s.rpc(MgsRequest::SendHostNmi, &[]).await.map(|r| r.0),
        Err(RpcError::Sp(SpError::RequestUnsupportedForSp))
    );
    assert_eq!(
        s.rpc(led(LedComponentAction::TurnOn), &[])
            .await
            .map(|r| r.0),
        Ok(SpResponse::ComponentActionAck)
    );
    rack.stop().await;
}
