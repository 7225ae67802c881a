//! `wire_decode`: any datagram through the wire decoder and the MGS-side
//! helpers, as both sides receive it.
//!
//! Where a decode succeeds the message must round-trip: re-encoding gives
//! exactly the bytes that were decoded (the codec has one encoding per
//! value), and decoding those again gives the same message. The decoders
//! must agree with each other (`decode`, `decode_header`, `decode_any`,
//! `parse_response`), and the TLV lists that some responses carry as
//! trailing data go through their item decoders.

use gateway_messages::mgs::{decode_any, expect_no_trailing, parse_response, ResponseError};
use gateway_messages::sp_impl::details::{self, ComponentDetail};
use gateway_messages::tlv::{self, DeviceDescriptionHeader};
use gateway_messages::{
    decode, decode_header, encode, version, IgnitionState, LinkEvents, Message, MessageKind,
    SerializedSize, SpResponse, MAX_SERIALIZED_SIZE,
};

/// Decode `data` every way a receiver does and check the round trips.
pub fn wire_decode(data: &[u8]) {
    crate::alloc_limit::bounded(|| {
        let header = decode_header(data);
        match decode(data) {
            Ok((message, trailing)) => {
                assert_eq!(
                    header,
                    Ok(message.header),
                    "header and message decoders agree"
                );
                round_trip(data, &message, trailing);
                if let MessageKind::SpResponse(response) = message.kind {
                    trailing_items(&response, trailing);
                }
                let _ = format!("{message:?}");
            }
            Err(e) => {
                let _ = e.to_string();
                // A header that does not decode means the message does not.
                if let Err(h) = header {
                    assert_eq!(h, e, "a short header fails the message alike");
                }
            }
        }
        check_decode_any(data);
        if let Ok(h) = header {
            for id in [h.message_id, h.message_id.wrapping_add(1)] {
                check_parse_response(data, id);
            }
        }
    })
}

/// Re-encode `message` (decoded from `data`, `trailing` left over) and
/// decode it again.
fn round_trip(data: &[u8], message: &Message, trailing: &[u8]) {
    let consumed = data.len() - trailing.len();
    assert!(
        consumed <= Message::MAX_SIZE,
        "a message is at most MAX_SIZE"
    );
    let mut buf = [0u8; MAX_SERIALIZED_SIZE];
    let (n, written) = encode(&mut buf, message, &[]).expect("a decoded message encodes");
    assert_eq!(written, 0);
    assert_eq!(
        &buf[..n],
        &data[..consumed],
        "re-encoding gives the bytes that were decoded"
    );
    let (again, rest) = decode(&buf[..n]).expect("a re-encoded message decodes");
    assert!(
        rest.is_empty(),
        "nothing is left after a re-encoded message"
    );
    // Bitwise (f32 NaN is not equal to itself): encode the second decode.
    let mut buf2 = [0u8; MAX_SERIALIZED_SIZE];
    let (n2, _) = encode(&mut buf2, &again, &[]).expect("encodes again");
    assert_eq!(&buf2[..n2], &buf[..n], "decode(encode(m)) == m");
    assert_eq!(
        format!("{again:?}"),
        format!("{message:?}"),
        "decode(encode(m)) == m"
    );
    // With its trailing data, as much as the datagram limit leaves room for.
    let (len, taken) = encode(&mut buf, message, trailing).expect("encodes with trailing data");
    assert_eq!(taken, trailing.len().min(MAX_SERIALIZED_SIZE - n));
    assert_eq!(&buf[..len], &data[..consumed + taken]);
}

/// `decode_any` applies the version rules on top of `decode`.
fn check_decode_any(data: &[u8]) {
    match decode_any(data) {
        Ok((kind, header, trailing)) => {
            assert!(header.version >= version::MIN);
            let (message, rest) = decode(data).expect("decode_any implies decode");
            assert_eq!(message.header, header);
            assert_eq!(rest.len(), trailing.len());
            assert_eq!(format!("{kind:?}"), format!("{:?}", message.kind));
        }
        Err(e) => {
            let _ = e.to_string();
            match e {
                ResponseError::VersionTooOld(v) => assert!(v < version::MIN),
                ResponseError::VersionMismatch(v) => {
                    assert!(v > version::CURRENT);
                    assert!(decode(data).is_err());
                }
                ResponseError::Malformed(_) => assert!(decode(data).is_err()),
                other => panic!("decode_any returned {other:?}"),
            }
        }
    }
}

/// `parse_response` as if `data` answered request `id`.
fn check_parse_response(data: &[u8], id: u32) {
    match parse_response(data, id) {
        Ok((response, trailing)) => {
            assert!(!matches!(response, SpResponse::Error(_)));
            let _ = expect_no_trailing(trailing);
            let _ = format!("{response:?}");
            let (message, _) = decode(data).expect("a parsed response decodes");
            assert_eq!(message.header.message_id, id);
        }
        Err(e) => {
            let _ = e.to_string();
            if let ResponseError::Sp(sp) = e {
                let _ = sp.to_string();
            }
            if let ResponseError::WrongMessageId { expected, got } = e {
                assert_eq!(expected, id);
                assert_ne!(got, id);
            }
        }
    }
}

/// The TLV items of responses that carry a list as trailing data.
fn trailing_items(response: &SpResponse, trailing: &[u8]) {
    match response {
        SpResponse::Inventory(_) => {
            for (tag, value) in items(trailing) {
                if tag == tlv::DEVICE_DESCRIPTION_TAG {
                    device_description(value);
                }
            }
        }
        SpResponse::ComponentDetails(_) => {
            for (tag, value) in items(trailing) {
                if let Ok(Some(detail)) = ComponentDetail::decode(tag, value) {
                    // What decodes encodes back to the same item.
                    let mut buf = vec![0u8; value.len() + tlv::ITEM_HEADER_LEN];
                    let n = detail.encode(&mut buf).expect("a decoded detail encodes");
                    assert_eq!(n, buf.len(), "a decoded detail encodes at its size");
                    let _ = format!("{detail:?}");
                }
            }
        }
        SpResponse::BulkIgnitionState(_) | SpResponse::BulkIgnitionLinkEvents(_) => {
            for (tag, value) in items(trailing) {
                match tag {
                    details::IGNITION_STATE_TAG => {
                        let _ = details::decode_hubpack::<IgnitionState>(value);
                    }
                    details::LINK_EVENTS_TAG => {
                        let _ = details::decode_hubpack::<LinkEvents>(value);
                    }
                    _ => {}
                }
            }
        }
        SpResponse::UpdateStatus(status) => {
            let _ = status.to_string();
        }
        _ => {}
    }
}

/// `tlv::items`, checking that every item lies inside `data`.
fn items(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 0usize;
    tlv::items(data).inspect(move |(_, value)| {
        at += tlv::ITEM_HEADER_LEN + value.len();
        assert!(at <= data.len(), "TLV items stay inside the data");
    })
}

/// A `DSC0` value: its header, then the device and description strings.
fn device_description(value: &[u8]) {
    let Ok((header, rest)) = hubpack::deserialize::<DeviceDescriptionHeader>(value) else {
        return;
    };
    assert!(value.len() - rest.len() <= DeviceDescriptionHeader::MAX_SIZE);
    let device = header.device_len as usize;
    let description = header.description_len as usize;
    if let Some(bytes) = rest.get(..device.saturating_add(description)) {
        let _ = std::str::from_utf8(&bytes[..device]);
        let _ = std::str::from_utf8(&bytes[device..]);
    }
    let _ = header.component.as_str();
    let _ = header.component.to_string();
}
