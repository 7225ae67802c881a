//! MGS-side helpers: build requests, match responses to them, and turn the
//! SP's answer into a typed result.

// `ResponseError::Unexpected` carries the whole response for diagnostics;
// errors are the rare path and nothing here allocates, so size is fine.
#![allow(clippy::result_large_err)]

use crate::{
    encode, version, DecodeError, Header, Message, MessageKind, MgsRequest, SpError, SpResponse,
    MAX_SERIALIZED_SIZE,
};

/// A request datagram ready to send (and to resend unchanged on retry).
#[derive(Clone, Copy)]
pub struct RequestDatagram {
    buf: [u8; MAX_SERIALIZED_SIZE],
    len: usize,
    /// Trailing bytes that fit (for an `UpdateChunk`: the chunk's length).
    pub trailing_len: usize,
    /// The message id the response must echo.
    pub message_id: u32,
}

impl RequestDatagram {
    /// Encode `request` with `message_id` and as much of `trailing` as fits.
    pub fn new(message_id: u32, request: MgsRequest, trailing: &[u8]) -> Self {
        let message = Message {
            header: Header {
                version: version::CURRENT,
                message_id,
            },
            kind: MessageKind::MgsRequest(request),
        };
        let mut buf = [0; MAX_SERIALIZED_SIZE];
        // Every MgsRequest is at most 247 bytes, so a full buffer always fits.
        let (len, trailing_len) = encode(&mut buf, &message, trailing)
            .unwrap_or_else(|_| unreachable!("a message always fits in 1024 bytes"));
        Self {
            buf,
            len,
            trailing_len,
            message_id,
        }
    }

    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Debug for RequestDatagram {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RequestDatagram")
            .field("message_id", &self.message_id)
            .field("len", &self.len)
            .finish()
    }
}

/// Why a datagram is not a usable response to our request.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ResponseError {
    /// Not a decodable message at all.
    #[error("malformed datagram: {0}")]
    Malformed(DecodeError),
    /// The peer speaks a version below [`version::MIN`].
    #[error("SP speaks protocol version {0}, below the minimum {min}", min = version::MIN)]
    VersionTooOld(u32),
    /// A newer peer sent something this version cannot decode.
    #[error("SP speaks newer protocol version {0} and sent a message we cannot decode")]
    VersionMismatch(u32),
    /// An SP-initiated request or a message in the wrong direction.
    #[error("datagram is not a response")]
    NotAResponse,
    /// A response, but to another request (stale or duplicate).
    #[error("response to message {got}, expected {expected}")]
    WrongMessageId {
        /// Our request's id.
        expected: u32,
        /// The id in the response.
        got: u32,
    },
    /// The SP answered with an error.
    #[error("SP error: {0}")]
    Sp(SpError),
    /// The SP answered with something other than what the request expects.
    #[error("unexpected response: {0:?}")]
    Unexpected(SpResponse),
    /// Trailing bytes on a response that carries none, or the wrong amount.
    #[error("unexpected trailing data ({0} bytes)")]
    UnexpectedTrailingData(usize),
}

/// Decode `datagram` as the response to request `expected_id`.
///
/// `SpResponse::Error` becomes [`ResponseError::Sp`]; the trailing bytes are
/// returned with the response.
pub fn parse_response(
    datagram: &[u8],
    expected_id: u32,
) -> Result<(SpResponse, &[u8]), ResponseError> {
    let (kind, header, trailing) = decode_any(datagram)?;
    let MessageKind::SpResponse(response) = kind else {
        return Err(ResponseError::NotAResponse);
    };
    if header.message_id != expected_id {
        return Err(ResponseError::WrongMessageId {
            expected: expected_id,
            got: header.message_id,
        });
    }
    match response {
        SpResponse::Error(e) => Err(ResponseError::Sp(e)),
        other => Ok((other, trailing)),
    }
}

/// Decode any datagram with the receiver-side version rules (spec §2.3).
pub fn decode_any(datagram: &[u8]) -> Result<(MessageKind, Header, &[u8]), ResponseError> {
    let header = crate::decode_header(datagram).map_err(ResponseError::Malformed)?;
    if header.version < version::MIN {
        return Err(ResponseError::VersionTooOld(header.version));
    }
    match crate::decode(datagram) {
        Ok((message, trailing)) => Ok((message.kind, header, trailing)),
        Err(_) if header.version > version::CURRENT => {
            Err(ResponseError::VersionMismatch(header.version))
        }
        Err(e) => Err(ResponseError::Malformed(e)),
    }
}

/// Require a response without trailing data.
pub fn expect_no_trailing(trailing: &[u8]) -> Result<(), ResponseError> {
    if trailing.is_empty() {
        Ok(())
    } else {
        Err(ResponseError::UnexpectedTrailingData(trailing.len()))
    }
}
