//! The sync envelope: one request carries a device's new changes for every document that
//! changed; one response carries acknowledgements and the server's changes for the device's
//! scopes since its cursor.
//!
//! Encoding: postcard (serde, varint integers, length-prefixed byte strings). It is compact (a
//! no-op request is a few dozen bytes), has a stable published wire format, needs no schema
//! compiler, and decodes without allocating more than the input holds. Every message starts
//! with the protocol version so an old peer gets a typed "unsupported version" error rather
//! than garbage. Limits are checked on decode, before anything is applied.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::{DeviceId, DocHeader, DocId};

/// The protocol version this build speaks. Version 2 added [`SyncRequest::actor`], version 3
/// [`SyncRequest::clock`], version 4 compacted snapshots in [`DocPull::changes`] (a phone
/// asking in version 4 reads them; an older one is sent changes only).
pub const PROTOCOL_VERSION: u16 = 4;

/// The oldest version a server still reads: phones upgrade slowly, so a server answers every
/// version from this one to [`PROTOCOL_VERSION`] in the version it was asked in.
pub const OLDEST_PROTOCOL_VERSION: u16 = 1;

/// Content type of encoded sync messages on HTTP.
pub const CONTENT_TYPE: &str = "application/x-gridsync-sync";

/// Hard limits every decoder enforces.
pub mod limits {
    /// Largest encoded request or response, in bytes.
    pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
    /// Most documents in one request or response.
    pub const MAX_DOCS_PER_BATCH: usize = 2_000;
    /// Most changes for one document in one message.
    pub const MAX_CHANGES_PER_DOC: usize = 10_000;
    /// Largest single change or sync message, in bytes.
    pub const MAX_CHANGE_BYTES: usize = 4 * 1024 * 1024;
    /// Most heads reported for one document.
    pub const MAX_HEADS: usize = 256;
    /// Largest opaque cursor, in bytes.
    pub const MAX_CURSOR_BYTES: usize = 64 * 1024;
}

/// A 32-byte Automerge change hash.
pub type Hash = [u8; 32];

/// What a device sends: its changes, and where it is in the server's feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Must be [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The sending device (must match the authenticated token).
    pub device: DeviceId,
    /// Opaque position in the server's feed, as last returned by the server (empty at first).
    pub cursor: ByteBuf,
    /// One entry per document with something to send.
    pub docs: Vec<DocPush>,
    /// The Automerge actor this replica writes with now (bound to `device`); empty means the
    /// device's first actor, which is what a version 1 request implies. The server leaves
    /// this actor's changes out of the pull (the replica has them) but sends other actors of
    /// the same device, which a copy of this store may have written.
    pub actor: ByteBuf,
    /// The phone's clock when it sent the request (ms since the epoch; 0 when unknown, as in
    /// older versions). The server records the device's skew from it and flags entries whose
    /// times its clock cannot have given honestly.
    pub clock: i64,
}

/// A version 2 request: a [`SyncRequest`] without its clock.
#[derive(Deserialize)]
struct SyncRequestV2 {
    version: u16,
    device: DeviceId,
    cursor: ByteBuf,
    docs: Vec<DocPush>,
    actor: ByteBuf,
}

/// A version 1 request: a [`SyncRequest`] without its last two fields.
#[derive(Deserialize)]
struct SyncRequestV1 {
    version: u16,
    device: DeviceId,
    cursor: ByteBuf,
    docs: Vec<DocPush>,
}

/// A device's changes to one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocPush {
    /// The document.
    pub doc: DocId,
    /// The header, when the server may not have the document yet.
    pub header: Option<DocHeader>,
    /// The heads the device has after these changes.
    pub heads: Vec<Hash>,
    /// Raw Automerge changes the server is not known to have, in causal order.
    pub changes: Vec<ByteBuf>,
    /// An Automerge sync-protocol message, when the device fell back to it for this document.
    pub sync: Option<ByteBuf>,
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// One per pushed document, in request order.
    pub acks: Vec<DocAck>,
    /// Changes for the device, grouped by document.
    pub docs: Vec<DocPull>,
    /// The position to send next time.
    pub cursor: ByteBuf,
    /// More changes are waiting: send another request straight away.
    pub more: bool,
    /// The server's history was reset (restored from a backup, new epoch): it may have lost
    /// changes it once acknowledged. Forget what it acknowledged and offer everything again.
    pub reset: bool,
}

/// The outcome for one pushed document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocAck {
    /// The document.
    pub doc: DocId,
    /// What happened.
    pub status: AckStatus,
}

/// What the server did with one document's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckStatus {
    /// Durably stored (or already there). `heads` is the server's heads after the merge when
    /// they differ from the heads the device pushed.
    Stored {
        /// The server's heads, if not the pushed ones.
        heads: Option<Vec<Hash>>,
    },
    /// The changes depend on changes the server does not have: run the Automerge sync
    /// protocol for this document (`DocPull::sync` carries the server's first message).
    NeedSync,
    /// Refused; nothing of this document was stored.
    Rejected {
        /// Machine-readable reason (`out_of_scope`, `actor_mismatch`, `bad_change`, ...).
        code: String,
        /// Human-readable explanation.
        message: String,
    },
}

/// The server's changes to one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocPull {
    /// The document.
    pub doc: DocId,
    /// Raw Automerge changes, in the order the server stored them. From protocol 4 the first
    /// may instead be a saved document (an Automerge document chunk: the compacted state of
    /// many changes), sent on a first sync in place of the history it covers.
    pub changes: Vec<ByteBuf>,
    /// The server's heads for the document when this response was made.
    pub heads: Vec<Hash>,
    /// An Automerge sync-protocol message, while a fallback sync is under way.
    pub sync: Option<ByteBuf>,
}

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than [`limits::MAX_MESSAGE_BYTES`].
    #[error("message is {size} bytes; the limit is {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not a well-formed message (truncated, corrupt or not gridsync at all).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Bytes left over after the message.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
    /// Spoken by a peer of another protocol version.
    #[error("protocol version {found} is not supported (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version in the message.
        found: u16,
    },
    /// A count or size over one of the [`limits`].
    #[error("{what}: {found} exceeds the limit of {max}")]
    OverLimit {
        /// Which limit (`documents`, `changes of <doc>`, ...).
        what: String,
        /// What the message had.
        found: usize,
        /// The limit.
        max: usize,
    },
}

fn check(what: impl FnOnce() -> String, found: usize, max: usize) -> Result<(), DecodeError> {
    if found > max {
        Err(DecodeError::OverLimit {
            what: what(),
            found,
            max,
        })
    } else {
        Ok(())
    }
}

/// The version a message declares, after the size check; refuses versions this build does
/// not read.
fn version_of(bytes: &[u8]) -> Result<u16, DecodeError> {
    if bytes.len() > limits::MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: limits::MAX_MESSAGE_BYTES,
        });
    }
    // The version comes first in both messages; read it alone so a future layout still gets a
    // clear answer.
    let (version, _) = postcard::take_from_bytes::<u16>(bytes)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !(OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    Ok(version)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

fn check_blobs(
    doc: &DocId,
    changes: &[ByteBuf],
    sync: Option<&ByteBuf>,
) -> Result<(), DecodeError> {
    check(
        || format!("changes of document {doc}"),
        changes.len(),
        limits::MAX_CHANGES_PER_DOC,
    )?;
    for c in changes.iter().chain(sync) {
        check(
            || format!("a change of document {doc}"),
            c.len(),
            limits::MAX_CHANGE_BYTES,
        )?;
    }
    Ok(())
}

impl SyncRequest {
    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes (any version a server still reads) and checks every limit.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let req: Self = match version_of(bytes)? {
            1 => {
                let v1: SyncRequestV1 = decode(bytes)?;
                Self {
                    version: v1.version,
                    device: v1.device,
                    cursor: v1.cursor,
                    docs: v1.docs,
                    actor: ByteBuf::new(),
                    clock: 0,
                }
            }
            2 => {
                let v2: SyncRequestV2 = decode(bytes)?;
                Self {
                    version: v2.version,
                    device: v2.device,
                    cursor: v2.cursor,
                    docs: v2.docs,
                    actor: v2.actor,
                    clock: 0,
                }
            }
            _ => decode(bytes)?,
        };
        check(
            || "cursor bytes".into(),
            req.cursor.len(),
            limits::MAX_CURSOR_BYTES,
        )?;
        check(
            || "documents".into(),
            req.docs.len(),
            limits::MAX_DOCS_PER_BATCH,
        )?;
        for d in &req.docs {
            check_blobs(&d.doc, &d.changes, d.sync.as_ref())?;
            check(
                || format!("heads of document {}", d.doc),
                d.heads.len(),
                limits::MAX_HEADS,
            )?;
        }
        Ok(req)
    }
}

impl SyncResponse {
    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes and checks every limit (the layout is the same in every version so far).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        version_of(bytes)?;
        let resp: Self = decode(bytes)?;
        check(
            || "cursor bytes".into(),
            resp.cursor.len(),
            limits::MAX_CURSOR_BYTES,
        )?;
        check(
            || "acknowledgements".into(),
            resp.acks.len(),
            limits::MAX_DOCS_PER_BATCH,
        )?;
        check(
            || "documents".into(),
            resp.docs.len(),
            limits::MAX_DOCS_PER_BATCH,
        )?;
        for d in &resp.docs {
            check_blobs(&d.doc, &d.changes, d.sync.as_ref())?;
            check(
                || format!("heads of document {}", d.doc),
                d.heads.len(),
                limits::MAX_HEADS,
            )?;
        }
        Ok(resp)
    }
}

/// `POST /v1/enroll` body: a phone trades a one-time enrollment code for a device token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The code `gridsync-server device enroll` printed.
    pub code: String,
    /// The device id the phone made for itself; its changes are written with this actor.
    pub device: DeviceId,
}

/// `POST /v1/enroll` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The bearer token for every later request; the server keeps only its hash.
    pub token: String,
    /// The enrolled device.
    pub device: DeviceId,
    /// Display name given at enrollment.
    pub name: String,
    /// `worker`, `dispatcher`, ...
    pub role: String,
    /// The grid codes (or town code) the device may see and write.
    pub scopes: Vec<String>,
    /// The department, for a department clerk's device.
    #[serde(default)]
    pub department: Option<String>,
}

/// The JSON body of every HTTP error: `{ "error": { "code": "...", "message": "..." } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error: a stable machine-readable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code (`unauthorized`, `malformed_request`, `too_large`, ...).
    pub code: String,
    /// What was wrong and where.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
    }

    fn sample_request() -> SyncRequest {
        SyncRequest {
            version: PROTOCOL_VERSION,
            device: DeviceId(id(1)),
            cursor: ByteBuf::from(vec![1, 2, 3]),
            docs: vec![DocPush {
                doc: DocId(id(2)),
                header: Some(DocHeader {
                    id: DocId(id(2)),
                    doc_type: crate::DocType::Household,
                    scope: crate::GridCode::parse("33010200101001002").expect("valid"),
                    creator: DeviceId(id(1)),
                    schema: 1,
                }),
                heads: vec![[7; 32]],
                changes: vec![ByteBuf::from(vec![0x85, 0x6f, 0x4a, 0x83])],
                sync: None,
            }],
            actor: ByteBuf::from(vec![0xaa; 24]),
            clock: 1_760_000_000_000,
        }
    }

    fn sample_response() -> SyncResponse {
        SyncResponse {
            version: PROTOCOL_VERSION,
            acks: vec![
                DocAck {
                    doc: DocId(id(2)),
                    status: AckStatus::Stored { heads: None },
                },
                DocAck {
                    doc: DocId(id(3)),
                    status: AckStatus::NeedSync,
                },
                DocAck {
                    doc: DocId(id(4)),
                    status: AckStatus::Rejected {
                        code: "out_of_scope".into(),
                        message: "grid 33010200101001009 is not yours".into(),
                    },
                },
            ],
            docs: vec![DocPull {
                doc: DocId(id(5)),
                changes: vec![ByteBuf::from(vec![9, 9])],
                heads: vec![[8; 32]],
                sync: Some(ByteBuf::from(vec![0x42])),
            }],
            cursor: ByteBuf::from(vec![4, 5]),
            more: true,
            reset: false,
        }
    }

    #[test]
    fn round_trips() {
        let req = sample_request();
        assert_eq!(SyncRequest::decode(&req.encode()), Ok(req));
        let resp = sample_response();
        assert_eq!(SyncResponse::decode(&resp.encode()), Ok(resp));
    }

    /// The exact bytes of each message type: a change here is a wire-format change.
    #[test]
    fn wire_snapshots() {
        insta::assert_snapshot!("request_bytes", hex(&sample_request().encode()));
        insta::assert_snapshot!("response_bytes", hex(&sample_response().encode()));
        let noop = SyncRequest {
            version: PROTOCOL_VERSION,
            device: DeviceId(id(1)),
            cursor: ByteBuf::from(vec![0; 8]),
            docs: vec![],
            actor: ByteBuf::new(),
            clock: 1_760_000_000_000,
        };
        insta::assert_snapshot!("noop_request_bytes", hex(&noop.encode()));
        insta::assert_json_snapshot!(
            "error_body",
            ErrorBody {
                error: ErrorDetail {
                    code: "malformed_request".into(),
                    message: "malformed message: unexpected end of input".into()
                }
            }
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn truncated_and_garbage_are_malformed() {
        let bytes = sample_request().encode();
        for cut in [1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                matches!(
                    SyncRequest::decode(&bytes[..cut]),
                    Err(DecodeError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            SyncRequest::decode(&[]),
            Err(DecodeError::Malformed(_))
        ));
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(
            SyncRequest::decode(&extra),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn other_versions_are_refused_by_number() {
        let mut req = sample_request();
        req.version = PROTOCOL_VERSION + 1;
        assert_eq!(
            SyncRequest::decode(&req.encode()),
            Err(DecodeError::UnsupportedVersion {
                found: PROTOCOL_VERSION + 1
            })
        );
        req.version = 0;
        assert_eq!(
            SyncRequest::decode(&req.encode()),
            Err(DecodeError::UnsupportedVersion { found: 0 })
        );
    }

    /// A version 1 request, byte for byte as phones before protocol 2 send it (the request
    /// snapshot of that version): still read, with the device's first actor implied.
    const V1_REQUEST: &str = "01100190000000007000800000000000000103010203011001900000000070008000000000000002011001900000000070008000000000000002011133333031303230303130313030313030321001900000000070008000000000000001010107070707070707070707070707070707070707070707070707070707070707070104856f4a8300";

    #[test]
    fn version_1_requests_are_still_read() {
        let bytes: Vec<u8> = (0..V1_REQUEST.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&V1_REQUEST[i..i + 2], 16).expect("hex"))
            .collect();
        let req = SyncRequest::decode(&bytes).expect("a v1 request decodes");
        let mut expected = sample_request();
        expected.version = 1;
        expected.actor = ByteBuf::new();
        expected.clock = 0;
        assert_eq!(req, expected);
    }

    /// The sample request as version 2 wrote it (before the clock): still read, its clock
    /// unknown.
    const V2_REQUEST: &str = "02100190000000007000800000000000000103010203011001900000000070008000000000000002011001900000000070008000000000000002011133333031303230303130313030313030321001900000000070008000000000000001010107070707070707070707070707070707070707070707070707070707070707070104856f4a830018aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn version_2_requests_are_still_read() {
        let bytes: Vec<u8> = (0..V2_REQUEST.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&V2_REQUEST[i..i + 2], 16).expect("hex"))
            .collect();
        let req = SyncRequest::decode(&bytes).expect("a v2 request decodes");
        let mut expected = sample_request();
        expected.version = 2;
        expected.clock = 0;
        assert_eq!(req, expected);
    }

    #[test]
    fn limits_are_enforced_on_decode() {
        let mut req = sample_request();
        req.docs = (0..=limits::MAX_DOCS_PER_BATCH)
            .map(|i| DocPush {
                doc: DocId(id(i as u128)),
                header: None,
                heads: vec![],
                changes: vec![],
                sync: None,
            })
            .collect();
        assert!(matches!(
            SyncRequest::decode(&req.encode()),
            Err(DecodeError::OverLimit { found, .. }) if found == limits::MAX_DOCS_PER_BATCH + 1
        ));
        let big = vec![0u8; limits::MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            SyncRequest::decode(&big),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}

#[cfg(test)]
mod fuzz {
    //! Property-based fuzzing of the decoders: any bytes, including mutations of valid
    //! messages, give a value or a typed error, never a panic or an unbounded allocation.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SyncRequest::decode(&bytes);
            let _ = SyncResponse::decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = tests_support::valid_request();
            for (i, b) in flips {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
            if let Ok(req) = SyncRequest::decode(&bytes) {
                // Whatever decodes re-encodes within the limits.
                prop_assert!(req.docs.len() <= limits::MAX_DOCS_PER_BATCH);
            }
        }
    }

    mod tests_support {
        use super::super::*;
        pub fn valid_request() -> Vec<u8> {
            SyncRequest {
                version: PROTOCOL_VERSION,
                device: DeviceId(uuid::Uuid::from_u128(1)),
                cursor: ByteBuf::from(vec![1, 2, 3]),
                docs: vec![DocPush {
                    doc: DocId(uuid::Uuid::from_u128(2)),
                    header: None,
                    heads: vec![[7; 32]],
                    changes: vec![ByteBuf::from(vec![1, 2, 3, 4, 5])],
                    sync: Some(ByteBuf::from(vec![6, 7])),
                }],
                actor: ByteBuf::new(),
                clock: 0,
            }
            .encode()
        }
    }
}
