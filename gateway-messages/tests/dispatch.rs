//! The SP dispatcher's own rules (spec §2.4), one test each, plus the
//! special reply shapes (silence on reboot, trailing data on caboose and
//! host-flash reads).

use gateway_messages::sp_impl::{handle_request, ResetOutcome, SpHandler};
use gateway_messages::*;

/// Serves a few requests; everything else is the trait's default.
#[derive(Default)]
struct Sp {
    chunks: Vec<(UpdateChunk, Vec<u8>)>,
    caboose_len: usize,
}

impl SpHandler for Sp {
    fn update_chunk(&mut self, chunk: UpdateChunk, data: &[u8]) -> Result<(), SpError> {
        self.chunks.push((chunk, data.to_vec()));
        Ok(())
    }
    fn reset_component_trigger(&mut self, c: SpComponent) -> Result<ResetOutcome, SpError> {
        if c == SpComponent::SP_ITSELF {
            Ok(ResetOutcome::Rebooting)
        } else {
            Ok(ResetOutcome::Acked)
        }
    }
    fn read_caboose(
        &mut self,
        _: SpComponent,
        _: u16,
        _: [u8; 4],
        out: &mut [u8],
    ) -> Result<usize, SpError> {
        if self.caboose_len > out.len() {
            return Err(SpError::CabooseValueOverflow(self.caboose_len as u32));
        }
        out[..self.caboose_len].fill(b'v');
        Ok(self.caboose_len)
    }
    fn read_host_flash(
        &mut self,
        _: u16,
        addr: u32,
        out: &mut [u8; HF_PAGE_SIZE],
    ) -> Result<(), SpError> {
        out.fill(addr as u8);
        Ok(())
    }
}

fn datagram(version: u32, id: u32, body: &[u8]) -> Vec<u8> {
    let mut d = version.to_le_bytes().to_vec();
    d.extend_from_slice(&id.to_le_bytes());
    d.extend_from_slice(body);
    d
}

/// Dispatch and decode the reply: (message id, response, trailing).
fn ask(sp: &mut Sp, request: &[u8]) -> Option<(Header, SpResponse, Vec<u8>)> {
    let mut out = [0u8; MAX_SERIALIZED_SIZE];
    let n = handle_request(request, sp, &mut out)?;
    let (msg, trailing) = decode(&out[..n]).unwrap();
    let MessageKind::SpResponse(r) = msg.kind else {
        panic!("not a response: {msg:?}")
    };
    Some((msg.header, r, trailing.to_vec()))
}

fn bad(reason: BadRequestReason) -> SpResponse {
    SpResponse::Error(SpError::BadRequest(reason))
}

fn request(id: u32, r: MgsRequest, trailing: &[u8]) -> Vec<u8> {
    mgs::RequestDatagram::new(id, r, trailing)
        .as_bytes()
        .to_vec()
}

#[test]
fn unparseable_header_gets_deserialization_error_with_id_ffffffff() {
    for len in 0..8 {
        let (h, r, _) = ask(&mut Sp::default(), &[0x19; 8][..len]).unwrap();
        assert_eq!(
            h,
            Header {
                version: version::CURRENT,
                message_id: u32::MAX
            }
        );
        assert_eq!(r, bad(BadRequestReason::DeserializationError));
    }
}

#[test]
fn version_below_min_gets_wrong_version_without_looking_at_the_body() {
    for v in [0, 1] {
        // A perfectly good Discover body, and garbage: same answer.
        for body in [&[0u8, 0][..], &[0xff, 0xff, 0xff]] {
            let (h, r, _) = ask(&mut Sp::default(), &datagram(v, 77, body)).unwrap();
            assert_eq!(
                h,
                Header {
                    version: version::CURRENT,
                    message_id: 77
                }
            );
            assert_eq!(
                r,
                bad(BadRequestReason::WrongVersion {
                    sp: version::CURRENT,
                    request: v
                })
            );
        }
    }
}

#[test]
fn unknown_request_tag_from_newer_peer_gets_wrong_version() {
    let newer = version::CURRENT + 1;
    let (h, r, _) = ask(&mut Sp::default(), &datagram(newer, 5, &[0, 51])).unwrap();
    assert_eq!(h.message_id, 5);
    assert_eq!(
        r,
        bad(BadRequestReason::WrongVersion {
            sp: version::CURRENT,
            request: newer
        })
    );
}

#[test]
fn unknown_request_tag_at_current_version_gets_deserialization_error() {
    for body in [&[0u8, 51][..], &[0, 255], &[0], &[], &[4, 0]] {
        let (h, r, _) = ask(&mut Sp::default(), &datagram(version::CURRENT, 6, body)).unwrap();
        assert_eq!(h.message_id, 6);
        assert_eq!(
            r,
            bad(BadRequestReason::DeserializationError),
            "body {body:02x?}"
        );
    }
}

#[test]
fn newer_peer_with_known_request_is_served() {
    let (h, r, _) = ask(
        &mut Sp::default(),
        &datagram(version::CURRENT + 3, 9, &[0, 0]),
    )
    .unwrap();
    assert_eq!(
        h,
        Header {
            version: version::CURRENT,
            message_id: 9
        }
    );
    assert_eq!(
        r,
        SpResponse::Discover(DiscoverResponse {
            sp_port: SpPort::One
        })
    );
}

#[test]
fn responses_and_sp_requests_sent_to_the_sp_get_wrong_direction() {
    // SpResponse::UpdateChunkAck, and SpRequest::SerialConsole.
    let sp_response = datagram(version::CURRENT, 3, &[3, 7]);
    let mut sp_request = datagram(version::CURRENT, 4, &[2, 0]);
    sp_request.extend_from_slice(&[0; 24]);
    for d in [sp_response, sp_request] {
        let (_, r, _) = ask(&mut Sp::default(), &d).unwrap();
        assert_eq!(r, bad(BadRequestReason::WrongDirection));
    }
}

#[test]
fn mgs_response_gets_no_reply() {
    let d = datagram(version::CURRENT, 3, &[1, 0, 0, 3]);
    assert!(ask(&mut Sp::default(), &d).is_none());
}

#[test]
fn trailing_data_on_a_request_that_takes_none_is_rejected_and_not_served() {
    let mut sp = Sp::default();
    let mut d = request(8, MgsRequest::Discover, &[]);
    d.push(0);
    let (h, r, _) = ask(&mut sp, &d).unwrap();
    assert_eq!(h.message_id, 8);
    assert_eq!(r, bad(BadRequestReason::UnexpectedTrailingData));
}

#[test]
fn update_chunk_gets_its_trailing_data() {
    let mut sp = Sp::default();
    let chunk = UpdateChunk {
        component: SpComponent::HOST_CPU_BOOT_FLASH,
        id: UpdateId([7; 16]),
        offset: 978,
    };
    let data: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
    let (h, r, _) = ask(&mut sp, &request(11, MgsRequest::UpdateChunk(chunk), &data)).unwrap();
    assert_eq!(h.message_id, 11);
    assert_eq!(r, SpResponse::UpdateChunkAck);
    assert_eq!(
        sp.chunks,
        vec![(chunk, data[..MAX_UPDATE_CHUNK_DATA].to_vec())]
    );
}

#[test]
fn requests_not_served_decode_and_get_unsupported() {
    let (_, r, _) = ask(
        &mut Sp::default(),
        &request(2, MgsRequest::IgnitionState { target: 3 }, &[]),
    )
    .unwrap();
    assert_eq!(r, SpResponse::Error(SpError::RequestUnsupportedForSp));
    let (_, r, _) = ask(&mut Sp::default(), &request(2, MgsRequest::SpState, &[])).unwrap();
    assert_eq!(r, SpResponse::Error(SpError::RequestUnsupportedForSp));
}

#[test]
fn sp_reset_is_never_answered_but_component_resets_are() {
    let trigger = |c| MgsRequest::ResetComponentTrigger { component: c };
    assert!(ask(
        &mut Sp::default(),
        &request(1, trigger(SpComponent::SP_ITSELF), &[])
    )
    .is_none());
    assert!(ask(
        &mut Sp::default(),
        &request(1, MgsRequest::ResetTrigger, &[])
    )
    .is_none());
    let (_, r, _) = ask(
        &mut Sp::default(),
        &request(1, trigger(SpComponent::ROT), &[]),
    )
    .unwrap();
    assert_eq!(r, SpResponse::ResetComponentTriggerAck);
}

#[test]
fn caboose_value_is_trailing_data_up_to_777_bytes() {
    let key = *b"VERS";
    let mut sp = Sp {
        caboose_len: 777,
        ..Sp::default()
    };
    let (_, r, t) = ask(&mut sp, &request(1, MgsRequest::ReadCaboose { key }, &[])).unwrap();
    assert_eq!((r, t.len()), (SpResponse::CabooseValue, 777));
    sp.caboose_len = 778;
    let (_, r, t) = ask(&mut sp, &request(1, MgsRequest::ReadCaboose { key }, &[])).unwrap();
    assert_eq!(r, SpResponse::Error(SpError::CabooseValueOverflow(778)));
    assert!(t.is_empty());
}

#[test]
fn host_flash_read_returns_exactly_one_page() {
    let read = MgsRequest::ReadHostFlash {
        slot: 1,
        addr: 0x1_0005,
    };
    let (_, r, t) = ask(&mut Sp::default(), &request(1, read, &[])).unwrap();
    assert_eq!(r, SpResponse::ReadHostFlash);
    assert_eq!(t, vec![5u8; HF_PAGE_SIZE]);
}

#[test]
fn mgs_side_parse_checks_id_direction_and_sp_errors() {
    use gateway_messages::mgs::{parse_response, ResponseError};
    let mut out = [0u8; MAX_SERIALIZED_SIZE];
    let n = handle_request(
        &request(41, MgsRequest::Discover, &[]),
        &mut Sp::default(),
        &mut out,
    )
    .unwrap();
    assert!(parse_response(&out[..n], 41).is_ok());
    assert_eq!(
        parse_response(&out[..n], 42).unwrap_err(),
        ResponseError::WrongMessageId {
            expected: 42,
            got: 41
        }
    );
    assert_eq!(
        parse_response(&request(41, MgsRequest::Discover, &[]), 41).unwrap_err(),
        ResponseError::NotAResponse
    );
    let n = handle_request(
        &request(5, MgsRequest::SpState, &[]),
        &mut Sp::default(),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        parse_response(&out[..n], 5).unwrap_err(),
        ResponseError::Sp(SpError::RequestUnsupportedForSp)
    );
    assert_eq!(
        parse_response(&datagram(1, 5, &[3, 7]), 5).unwrap_err(),
        ResponseError::VersionTooOld(1)
    );
    assert_eq!(
        parse_response(&datagram(99, 5, &[3, 200]), 5).unwrap_err(),
        ResponseError::VersionMismatch(99)
    );
}

#[test]
fn component_names_are_checked() {
    assert_eq!(
        SpComponent::try_from("host-boot-flash"),
        Ok(SpComponent::HOST_CPU_BOOT_FLASH)
    );
    assert_eq!(
        SpComponent::try_from("a-name-of-17-char"),
        Err(SpComponentError::TooLong(17))
    );
    assert_eq!(
        SpComponent::try_from("sléd"),
        Err(SpComponentError::NotAscii)
    );
    assert_eq!(SpComponent::try_from(""), Err(SpComponentError::Empty));
    assert_eq!(
        SpComponent::try_from("0123456789abcdef").unwrap().as_str(),
        Some("0123456789abcdef")
    );
}

#[test]
fn update_ids_are_uuids() {
    let u: uuid::Uuid = "00112233-4455-6677-8899-aabbccddeeff".parse().unwrap();
    let id = UpdateId::from(u);
    assert_eq!(id.0[..4], [0x00, 0x11, 0x22, 0x33]);
    assert_eq!(id.to_string(), "00112233-4455-6677-8899-aabbccddeeff");
    assert_eq!(uuid::Uuid::from(id), u);
}
