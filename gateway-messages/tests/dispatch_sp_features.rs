//! The dispatcher's arms for the console, ignition, component details,
//! dumps and RoT pages: what reaches the handler and the shape of the
//! replies (pages clamped, trailing data sized by the segment, 512-byte RoT
//! pages), and the defaults for handlers that serve none of them.

use gateway_messages::sp_impl::details::{
    decode_hubpack, ComponentDetail, MeasurementError, MeasurementKind, LINK_EVENTS_TAG,
};
use gateway_messages::sp_impl::{handle_request, SpHandler};
use gateway_messages::tlv::items;
use gateway_messages::*;

#[derive(Default)]
struct Sp {
    written: Vec<(u64, Vec<u8>)>,
}

impl SpHandler for Sp {
    fn serial_console_write(&mut self, offset: u64, data: &[u8]) -> Result<u64, SpError> {
        self.written.push((offset, data.to_vec()));
        Ok(offset + data.len() as u64)
    }
    fn num_ignition_ports(&mut self) -> Result<u32, SpError> {
        Ok(40)
    }
    fn num_component_details(&mut self, _: SpComponent) -> Result<u32, SpError> {
        Ok(3)
    }
    fn component_detail(&mut self, _: SpComponent, index: u32) -> ComponentDetail<'_> {
        ComponentDetail::Measurement {
            name: "fan",
            kind: MeasurementKind::Speed,
            value: if index == 1 {
                Err(MeasurementError::DeviceOff)
            } else {
                Ok(index as f32)
            },
        }
    }
    fn task_dump_read_continue(
        &mut self,
        seq: u32,
        _: [u8; 16],
        out: &mut [u8],
    ) -> Result<Option<DumpSegment>, SpError> {
        if seq > 0 {
            return Ok(None);
        }
        out[..5].copy_from_slice(b"dump!");
        Ok(Some(DumpSegment {
            address: 0x2000_0000,
            compressed_length: 5,
            uncompressed_length: 9,
            seq,
        }))
    }
    fn read_rot(
        &mut self,
        _: RotRequest,
        page: &mut [u8; ROT_PAGE_SIZE],
    ) -> Result<RotResponse, SpError> {
        page.fill(0x5a);
        Ok(RotResponse::Ok)
    }
}

fn ask<H: SpHandler>(sp: &mut H, r: MgsRequest, trailing: &[u8]) -> (SpResponse, Vec<u8>) {
    let d = mgs::RequestDatagram::new(3, r, trailing);
    let mut out = [0u8; MAX_SERIALIZED_SIZE];
    let n = handle_request(d.as_bytes(), sp, &mut out).unwrap();
    let (msg, trailing) = decode(&out[..n]).unwrap();
    let MessageKind::SpResponse(r) = msg.kind else {
        panic!()
    };
    (r, trailing.to_vec())
}

#[test]
fn console_write_gets_its_data_and_acks_the_ingested_offset() {
    let mut sp = Sp::default();
    let (r, _) = ask(
        &mut sp,
        MgsRequest::SerialConsoleWrite { offset: 10 },
        b"hello",
    );
    assert_eq!(
        r,
        SpResponse::SerialConsoleWriteAck {
            furthest_ingested_offset: 15
        }
    );
    assert_eq!(sp.written, [(10, b"hello".to_vec())]);
}

#[test]
fn component_details_and_bulk_pages_are_tlv_and_clamped() {
    let mut sp = Sp::default();
    let req = MgsRequest::ComponentDetails {
        component: SpComponent::MONORAIL,
        offset: 0,
    };
    let (r, data) = ask(&mut sp, req, &[]);
    assert_eq!(
        r,
        SpResponse::ComponentDetails(TlvPage {
            offset: 0,
            total: 3
        })
    );
    let d: Vec<_> = items(&data)
        .map(|(t, v)| ComponentDetail::decode(t, v).unwrap().unwrap())
        .collect();
    assert_eq!(d.len(), 3);
    assert_eq!(
        d[1],
        ComponentDetail::Measurement {
            name: "fan",
            kind: MeasurementKind::Speed,
            value: Err(MeasurementError::DeviceOff)
        }
    );
    let req = MgsRequest::ComponentDetails {
        component: SpComponent::MONORAIL,
        offset: 9,
    };
    assert_eq!(
        ask(&mut sp, req, &[]),
        (
            SpResponse::ComponentDetails(TlvPage {
                offset: 3,
                total: 3
            }),
            vec![]
        )
    );

    let (r, data) = ask(
        &mut sp,
        MgsRequest::BulkIgnitionLinkEvents { offset: 38 },
        &[],
    );
    assert_eq!(
        r,
        SpResponse::BulkIgnitionLinkEvents(TlvPage {
            offset: 38,
            total: 40
        })
    );
    let events: Vec<LinkEvents> = items(&data)
        .map(|(t, v)| {
            assert_eq!(t, LINK_EVENTS_TAG);
            decode_hubpack(v).unwrap()
        })
        .collect();
    assert_eq!(events.len(), 2);
}

#[test]
fn dump_segments_and_rot_pages_carry_their_bytes() {
    let mut sp = Sp::default();
    let key = [1; 16];
    let (r, data) = ask(
        &mut sp,
        MgsRequest::Dump(DumpRequest::TaskDumpReadContinue { seq: 0, key }),
        &[],
    );
    assert!(
        matches!(r, SpResponse::Dump(DumpResponse::TaskDumpRead(Some(s))) if s.compressed_length == 5)
    );
    assert_eq!(data, b"dump!");
    let (r, data) = ask(
        &mut sp,
        MgsRequest::Dump(DumpRequest::TaskDumpReadContinue { seq: 1, key }),
        &[],
    );
    assert_eq!(
        (r, data.len()),
        (SpResponse::Dump(DumpResponse::TaskDumpRead(None)), 0)
    );
    let (r, page) = ask(&mut sp, MgsRequest::ReadRot(RotRequest::ReadCmpa), &[]);
    assert_eq!((r, page.len()), (SpResponse::ReadRot(RotResponse::Ok), 512));
    assert!(page.iter().all(|&b| b == 0x5a));
}

#[test]
fn handlers_that_serve_none_of_it_answer_unsupported() {
    struct Nothing;
    impl SpHandler for Nothing {}
    let unsupported = SpResponse::Error(SpError::RequestUnsupportedForSp);
    for r in [
        MgsRequest::SerialConsoleAttach(SpComponent::SP3_HOST_CPU),
        MgsRequest::IgnitionState { target: 0 },
        MgsRequest::BulkIgnitionState { offset: 0 },
        MgsRequest::ComponentDetails {
            component: SpComponent::SP_ITSELF,
            offset: 0,
        },
        MgsRequest::Dump(DumpRequest::TaskDumpCount),
        MgsRequest::SendHostNmi,
        MgsRequest::ReadRot(RotRequest::ReadCmpa),
    ] {
        assert_eq!(ask(&mut Nothing, r, &[]), (unsupported, vec![]), "{r:?}");
    }
}
