//! Events to append, stored envelopes and append results.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{ExpectedSeq, Position, Seq, StreamName};

/// An event a writer wants to append.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Unique id (UUID v7 unless the writer supplies its own); the key of idempotent retries.
    pub event_id: Uuid,
    /// The event type, e.g. `PaymentVerified`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload.
    pub data: Value,
    /// A JSON object: `actor`, `correlation_id`, `causation_id`, `request_id` and free keys.
    pub metadata: Value,
}

impl NewEvent {
    /// A new event with a fresh UUID v7 id and empty metadata.
    pub fn new(event_type: impl Into<String>, data: Value) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            data,
            metadata: Value::Object(Default::default()),
        }
    }

    /// The same event with the given id.
    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }

    /// The same event with the given metadata.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A stored event as every reader sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id of the event.
    pub event_id: Uuid,
    /// The stream it belongs to.
    pub stream: StreamName,
    /// Its 1-based place in the stream.
    pub seq: Seq,
    /// Its place in the global log.
    pub position: Position,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload.
    pub data: Value,
    /// The metadata object.
    pub metadata: Value,
    /// When the database recorded it (UTC).
    pub recorded_at: DateTime<Utc>,
}

/// What an append wrote (or, for an idempotent retry, what the original append wrote).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// The stream appended to.
    pub stream: StreamName,
    /// The seq of the first event of the batch.
    pub first_seq: Seq,
    /// The seq of the last event of the batch: the stream's seq after the append.
    pub last_seq: Seq,
    /// The global position of the batch's last event.
    pub position: Position,
    /// True when nothing was written because these events were already appended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// One stream's part of a multi-stream append.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamAppend {
    /// The stream to append to.
    pub stream: StreamName,
    /// What the writer expects the stream's seq to be.
    pub expected: ExpectedSeq,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// One stream's append.
    pub fn new(stream: StreamName, expected: ExpectedSeq, events: Vec<NewEvent>) -> Self {
        Self {
            stream,
            expected,
            events,
        }
    }
}
