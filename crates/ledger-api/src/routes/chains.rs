//! `GET /v1/streams/{stream}/head`: a stream's last seq and hash, which an auditor pins and
//! later checks with `ledger verify --heads` (history may be extended, never rewritten).

use axum::Json;
use axum::extract::State;
use ledger_core::StreamName;
use ledger_core::chain::StreamHead;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, Code, ErrorBody};
use crate::input::ApiPath;
use crate::state::AppState;

/// The last event of a stream.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HeadView {
    /// The stream.
    stream: String,
    /// Its last seq.
    seq: u64,
    /// The last event's hash: SHA-256 over the previous hash and the event's canonical
    /// encoding, as 64 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    hash: String,
    /// The last event's position in the global log.
    position: u64,
}

impl From<StreamHead> for HeadView {
    fn from(head: StreamHead) -> Self {
        Self {
            stream: head.stream.as_str().to_string(),
            seq: head.seq.0,
            hash: head.hash.to_string(),
            position: head.position.0,
        }
    }
}

/// The head of a stream's hash chain: its last seq and hash.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/head",
    tag = "streams",
    params(("stream" = String, Path, description = "`category-id`, e.g. `order-42`")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The last seq and its hash", body = HeadView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden`: a tenant token reaches only its own `tenant-<id>` stream", body = ErrorBody),
        (status = 404, description = "`stream_not_found`: the stream has no events", body = ErrorBody),
        (status = 422, description = "`invalid_stream_name`", body = ErrorBody),
        (status = 503, description = "`unavailable`, or `log_unavailable` on a server without the chains", body = ErrorBody),
    )
)]
pub(crate) async fn stream_head(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<HeadView>, ApiError> {
    let stream = StreamName::parse(name)?;
    caller.require_stream(&stream)?;
    let head = state.chains()?.stream_head(stream.clone()).await?;
    let head =
        head.ok_or_else(|| ApiError::new(Code::StreamNotFound, format!("{stream} has no events")))?;
    Ok(Json(head.into()))
}
