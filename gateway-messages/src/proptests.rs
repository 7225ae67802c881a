//! Property tests: every type round-trips through the codec, and no input
//! (random, or any truncation of a golden vector) panics the decoder or the
//! SP dispatcher.

use crate::sp_impl::{handle_request, SpHandler};
use crate::*;
use proptest::prelude::*;

/// CI runs at least this many cases per target (PROPTEST_CASES overrides).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Encode, decode, re-encode: bytes must be identical and the value equal
/// (compared through Debug as well, since NaN floats are never `==`).
fn round_trip<T>(value: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + SerializedSize + core::fmt::Debug,
{
    let mut buf = vec![0u8; T::MAX_SIZE];
    let n = hubpack::serialize(&mut buf, value).expect("MAX_SIZE is enough");
    let (back, rest): (T, _) = hubpack::deserialize(&buf[..n]).expect("decodes");
    assert!(rest.is_empty());
    let mut again = vec![0u8; T::MAX_SIZE];
    let m = hubpack::serialize(&mut again, &back).unwrap();
    assert_eq!(&buf[..n], &again[..m]);
    assert_eq!(format!("{value:?}"), format!("{back:?}"));
}

/// Serves everything, so random requests reach every dispatch arm.
struct Yes;

impl SpHandler for Yes {
    fn sp_state(&mut self) -> Result<SpStateV2, SpError> {
        Err(SpError::Busy)
    }
    fn update_chunk(&mut self, _: UpdateChunk, _: &[u8]) -> Result<(), SpError> {
        Ok(())
    }
    fn read_caboose(
        &mut self,
        _: SpComponent,
        _: u16,
        _: [u8; 4],
        out: &mut [u8],
    ) -> Result<usize, SpError> {
        out.fill(b'x');
        Ok(out.len())
    }
    fn read_host_flash(
        &mut self,
        _: u16,
        _: u32,
        out: &mut [u8; HF_PAGE_SIZE],
    ) -> Result<(), SpError> {
        out.fill(0xa5);
        Ok(())
    }
    fn num_devices(&mut self) -> u32 {
        200
    }
}

/// Decode paths that must never panic, whatever the bytes.
fn poke(bytes: &[u8]) {
    let _ = decode(bytes);
    let _ = decode_header(bytes);
    let _ = mgs::decode_any(bytes);
    let _ = mgs::parse_response(bytes, 1);
    let mut out = [0u8; MAX_SERIALIZED_SIZE];
    if let Some(n) = handle_request(bytes, &mut Yes, &mut out) {
        assert!(n <= MAX_SERIALIZED_SIZE);
        // Whatever the SP says must itself decode as an SpResponse.
        let (msg, _) = decode(&out[..n]).expect("dispatcher replies decode");
        assert!(matches!(msg.kind, MessageKind::SpResponse(_)));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn message_round_trips(m: Message) { round_trip(&m); }

    #[test]
    fn mgs_request_round_trips(r: MgsRequest) { round_trip(&r); }

    #[test]
    fn sp_response_round_trips(r: SpResponse) { round_trip(&r); }

    #[test]
    fn sp_error_round_trips(e: SpError) { round_trip(&e); }

    #[test]
    fn update_status_round_trips(s: UpdateStatus) { round_trip(&s); }

    #[test]
    fn sp_request_and_mgs_response_round_trip(r: SpRequest, m: MgsResponse) {
        round_trip(&r);
        round_trip(&m);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        poke(&bytes);
    }

    /// Random bodies behind a valid current header reach the dispatcher.
    #[test]
    fn random_requests_never_panic(
        id: u32,
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = Vec::with_capacity(8 + body.len());
        bytes.extend_from_slice(&version::CURRENT.to_le_bytes());
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.push(0); // MessageKind::MgsRequest
        bytes.extend_from_slice(&body);
        poke(&bytes);
    }

    /// Requests with random trailing data encode and dispatch cleanly.
    #[test]
    fn encoded_requests_dispatch(
        r: MgsRequest,
        trailing in proptest::collection::vec(any::<u8>(), 0..1100),
    ) {
        let d = mgs::RequestDatagram::new(7, r, &trailing);
        assert!(d.as_bytes().len() <= MAX_SERIALIZED_SIZE);
        poke(d.as_bytes());
    }
}

fn golden_lines() -> impl Iterator<Item = serde_json::Value> {
    include_str!("../tests/data/messages.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("golden line is JSON"))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_truncation_of_every_golden_vector_is_safe() {
    let mut checked = 0;
    for v in golden_lines() {
        for field in ["hex", "request_hex"] {
            let Some(hex) = v.get(field).and_then(|h| h.as_str()) else {
                continue;
            };
            let bytes = unhex(hex);
            let message_len = v
                .get("message_len")
                .and_then(|n| n.as_u64())
                .map(|n| n as usize);
            for cut in 0..=bytes.len() {
                poke(&bytes[..cut]);
                // A prefix shorter than the message can only be truncated.
                if field == "hex" && message_len.is_some_and(|len| cut < len) {
                    assert_eq!(decode(&bytes[..cut]).unwrap_err(), DecodeError::Truncated);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 7_000, "only {checked} truncations checked");
}

#[test]
fn max_sizes_match_reference() {
    let facts: serde_json::Value =
        serde_json::from_str(include_str!("../tests/data/facts.json")).unwrap();
    let max = &facts["max_size"];
    let expect = [
        ("Header", Header::MAX_SIZE),
        ("Message", Message::MAX_SIZE),
        ("MessageKind", MessageKind::MAX_SIZE),
        ("MgsRequest", MgsRequest::MAX_SIZE),
        ("RotBootInfo", RotBootInfo::MAX_SIZE),
        ("RotError", RotError::MAX_SIZE),
        ("RotStateV2", RotStateV2::MAX_SIZE),
        ("RotStateV3", RotStateV3::MAX_SIZE),
        ("SpError", SpError::MAX_SIZE),
        ("SpResponse", SpResponse::MAX_SIZE),
        ("SpStateV1", SpStateV1::MAX_SIZE),
        ("SpStateV2", SpStateV2::MAX_SIZE),
        ("SpStateV3", SpStateV3::MAX_SIZE),
        ("UpdateStatus", UpdateStatus::MAX_SIZE),
    ];
    assert_eq!(
        max.as_object().unwrap().len(),
        expect.len(),
        "facts list other types"
    );
    for (name, ours) in expect {
        assert_eq!(max[name].as_u64(), Some(ours as u64), "MAX_SIZE of {name}");
    }
    assert_eq!(facts["version_current"], version::CURRENT);
    assert_eq!(facts["version_min"], version::MIN);
    assert_eq!(facts["min_trailing_data_len"], MIN_TRAILING_DATA_LEN);
    assert_eq!(facts["update_chunk_max_data_bytes"], MAX_UPDATE_CHUNK_DATA);
    assert_eq!(facts["update_chunk_message_len"], UPDATE_CHUNK_MESSAGE_LEN);
    assert_eq!(facts["hf_page_size"], HF_PAGE_SIZE);
    assert_eq!(facts["rot_page_size"], ROT_PAGE_SIZE);
}

/// Variant tags of every nested enum match the reference's serialization.
#[test]
fn variant_tables_match_reference() {
    let facts: serde_json::Value =
        serde_json::from_str(include_str!("../tests/data/facts.json")).unwrap();
    let counts = |name: &str| facts["variants_snake_case"][name].as_array().unwrap().len();
    // Appending a variant is a protocol change: these counts pin the tables.
    assert_eq!(counts("MgsRequest"), 51);
    assert_eq!(counts("SpResponse"), 53);
    assert_eq!(counts("SpError"), 39);
    let tags = facts["tags_by_serialization"].as_object().unwrap();
    let mut buf = [0u8; 64];
    let mut first = |v: &dyn erased::Ser| v.first_byte(&mut buf);
    let checks: Vec<(&str, Vec<u8>)> = vec![
        (
            "PowerState",
            vec![
                first(&PowerState::A0),
                first(&PowerState::A1),
                first(&PowerState::A2),
            ],
        ),
        ("SpPort", vec![first(&SpPort::One), first(&SpPort::Two)]),
        (
            "HfError",
            [
                HfError::NotMuxedToSp,
                HfError::BadAddress,
                HfError::QspiTimeout,
                HfError::QspiTransferError,
                HfError::HashUncalculated,
                HfError::RecalculateHash,
                HfError::HashInProgress,
            ]
            .iter()
            .map(|e| first(e))
            .collect(),
        ),
    ];
    for (name, ours) in checks {
        let reference: Vec<u8> = tags[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_u64().unwrap() as u8)
            .collect();
        assert_eq!(reference, ours, "tags of {name}");
    }
}

/// Tiny object-safe wrapper so the table above can mix types.
mod erased {
    pub trait Ser {
        fn first_byte(&self, buf: &mut [u8]) -> u8;
    }
    impl<T: serde::Serialize> Ser for T {
        fn first_byte(&self, buf: &mut [u8]) -> u8 {
            hubpack::serialize(buf, self).unwrap();
            buf[0]
        }
    }
}
