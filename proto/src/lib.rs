//! Wire types shared by the gridsync phone core (`gridsync-core`) and the merge server.
//!
//! Everything here is plain data: identifiers, the immutable document header, grid codes and,
//! later, the sync envelope. No I/O, no Automerge: both ends of the wire depend on this crate,
//! so it must stay small and stable.

mod grid_code;
mod header;
mod ids;
mod sync;

pub use grid_code::{GridCode, GridCodeError, GridLevel};
pub use header::{DocHeader, DocType, UnknownDocType};
pub use ids::{DeviceId, DocId, IdError, RecordId};
pub use sync::{
    AckStatus, CONTENT_TYPE, DecodeError, DocAck, DocPull, DocPush, EnrollRequest, EnrollResponse,
    ErrorBody, ErrorDetail, Hash, OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION, SyncRequest,
    SyncResponse, limits,
};
