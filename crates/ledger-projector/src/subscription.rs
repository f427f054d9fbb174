//! Durable named subscriptions for consumers outside the process (projection jobs in any
//! language, through the HTTP API, or Rust writers), kept in the log itself: a subscription's
//! definition is the last event of `subscription-<name>`, and the checkpoint of each member of
//! its consumer group is the last event of `subscriptionack-<name>.<member>`. So an ack is an
//! append with an expected seq, and an append of a job's results can carry it
//! ([`ack`] gives the [`StreamAppend`] to add to `append_multi`): both commit in one
//! transaction or neither does, which is what makes processing exactly-once.
//!
//! A consumer group of `members` workers splits the log by stream: member `i` gets the
//! streams whose FNV-1a hash of the name is `i` modulo `members`, so no stream is ever
//! processed in two places. Subscriptions never deliver their own bookkeeping streams.

use futures::TryStreamExt;
use ledger_core::{
    EventFilter, EventStore, ExpectedSeq, LogCursor, LogEvent, LogReader, NewEvent, Seq,
    StoreError, StreamAppend, StreamName,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Category of the streams holding subscription definitions.
pub const DEFINITION_CATEGORY: &str = "subscription";
/// Category of the streams holding checkpoints.
pub const ACK_CATEGORY: &str = "subscriptionack";
/// A subscription's name ([`check_name`] checks it).
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9_]{0,62}$";
/// A category a definition names.
pub const CATEGORY_PATTERN: &str = "^[a-z][a-z0-9_]*$";
/// Most members of a consumer group.
pub const MAX_MEMBERS: u32 = 1024;
/// Most categories, and most types, a definition names.
pub const MAX_NAMES: usize = 64;
/// Type of a definition event.
const DEFINED: &str = "SubscriptionDefined";
/// Type of a checkpoint event.
const ACKED: &str = "SubscriptionAcked";
/// Longest subscription name.
const MAX_NAME: usize = 63;
/// Events scanned per read while a member looks for its own.
const SCAN_PAGE: usize = 500;
/// Reads one page scans at most (a member of a large group may find few of its events).
const MAX_SCANS: usize = 20;

/// What a subscription operation can fail with; each variant has a stable meaning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The log or a stream failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name is not 1 to 63 of `a-z`, `0-9` and `_`.
    #[error("a subscription name is 1 to 63 of a-z, 0-9 and _, starting with a letter or digit")]
    InvalidName,
    /// The definition does not hold.
    #[error("{0}")]
    InvalidDefinition(String),
    /// No subscription has this name.
    #[error("there is no subscription {0}; define it first")]
    NotFound(String),
    /// The member or group size does not fit the subscription's group.
    #[error("{0}")]
    GroupMismatch(String),
    /// A stored definition or checkpoint does not decode.
    #[error("a stored {what} of subscription {name} does not decode")]
    Corrupt {
        /// `definition` or `checkpoint`.
        what: &'static str,
        /// The subscription.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Which events a subscription delivers, and to how many members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Only streams of these categories (empty: every category).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Only events of these types (empty: every type).
    #[serde(default)]
    pub types: Vec<String>,
    /// Workers of the consumer group, 1 to [`MAX_MEMBERS`] (default 1).
    #[serde(default = "one")]
    pub members: u32,
}

/// A group of one.
fn one() -> u32 {
    1
}

impl Definition {
    /// Refuses out-of-range member counts, category names that are none, empty types.
    pub fn check(&self) -> Result<(), SubscriptionError> {
        let bad = |message: String| Err(SubscriptionError::InvalidDefinition(message));
        if !(1..=MAX_MEMBERS).contains(&self.members) {
            return bad(format!(
                "members must be 1 to {MAX_MEMBERS}, not {}",
                self.members
            ));
        }
        let category = |c: &String| {
            c.starts_with(|ch: char| ch.is_ascii_lowercase())
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !self.categories.iter().all(category) {
            return bad(
                "a category is a-z, then a-z, 0-9 and _ (the part of a stream name before its first -)"
                    .into(),
            );
        }
        if self.types.iter().any(String::is_empty) {
            return bad("types must not hold empty names".into());
        }
        if self.categories.len() > MAX_NAMES || self.types.len() > MAX_NAMES {
            return bad(format!(
                "at most {MAX_NAMES} categories and {MAX_NAMES} types"
            ));
        }
        Ok(())
    }

    /// Member `member` of this group, checking `members` when the worker sent it.
    pub fn member(&self, member: u32, members: Option<u32>) -> Result<u32, SubscriptionError> {
        if let Some(members) = members
            && members != self.members
        {
            return Err(SubscriptionError::GroupMismatch(format!(
                "this subscription's group has {} members, not {members}",
                self.members
            )));
        }
        if member >= self.members {
            return Err(SubscriptionError::GroupMismatch(format!(
                "member must be 0 to {} in this group of {}",
                self.members - 1,
                self.members
            )));
        }
        Ok(member)
    }

    /// The log filter of the definition (its member split is applied after).
    fn filter(&self) -> EventFilter {
        EventFilter {
            categories: self.categories.clone(),
            types: self.types.clone(),
            streams: Vec::new(),
        }
    }
}

/// A member's checkpoint: the cursor it has processed up to, and the seq of its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Everything up to here was processed.
    pub cursor: LogCursor,
    /// The checkpoint stream's seq (0: never acked).
    pub seq: Seq,
}

/// The data of a checkpoint event.
#[derive(Serialize, Deserialize)]
struct Acked {
    /// The member.
    member: u32,
    /// Everything up to here was processed.
    cursor: LogCursor,
}

/// A page of a member's events.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberPage {
    /// The member's events, in the log's order.
    pub events: Vec<LogEvent>,
    /// Where the next page starts: ack it once the page is processed.
    pub next: LogCursor,
    /// Whether the page reached the end of the log.
    pub caught_up: bool,
}

/// Refuses a name that is not 1 to 63 of `a-z`, `0-9` and `_`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), SubscriptionError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with('_');
    if ok {
        Ok(())
    } else {
        Err(SubscriptionError::InvalidName)
    }
}

/// The stream of a subscription's definition.
fn definition_stream(name: &str) -> StreamName {
    StreamName::from_parts(DEFINITION_CATEGORY, name).expect("a checked name is a stream id")
}

/// The stream of a member's checkpoint.
pub fn ack_stream(name: &str, member: u32) -> StreamName {
    StreamName::from_parts(ACK_CATEGORY, &format!("{name}.{member}"))
        .expect("a checked name is a stream id")
}

/// Whether `stream` is subscription bookkeeping (never delivered by a subscription).
fn internal(stream: &str) -> bool {
    let category = stream.split_once('-').map_or(stream, |(c, _)| c);
    category == DEFINITION_CATEGORY || category == ACK_CATEGORY
}

/// The member of a group of `members` that gets `stream`: FNV-1a (64 bit) of its name.
pub fn member_of(stream: &str, members: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(members.max(1))) as u32
}

/// The data of the last event of `stream` and the stream's seq, if it has events.
async fn last_event(
    store: &dyn EventStore,
    stream: &StreamName,
) -> Result<Option<(Value, Seq)>, StoreError> {
    let seq = store.stream_seq(stream.clone()).await?;
    if seq == Seq::ZERO {
        return Ok(None);
    }
    let last = store
        .read_stream(stream.clone(), seq)
        .try_next()
        .await?
        .ok_or_else(|| StoreError::backend("a stream lost its last event"))?;
    Ok(Some((last.data, last.seq)))
}

/// The definition of subscription `name`, if it exists.
pub async fn definition(
    store: &dyn EventStore,
    name: &str,
) -> Result<Option<Definition>, SubscriptionError> {
    check_name(name)?;
    match last_event(store, &definition_stream(name)).await? {
        None => Ok(None),
        Some((data, _)) => {
            serde_json::from_value(data)
                .map(Some)
                .map_err(|source| SubscriptionError::Corrupt {
                    what: "definition",
                    name: name.to_string(),
                    source,
                })
        }
    }
}

/// The definition of an existing subscription.
pub async fn existing(store: &dyn EventStore, name: &str) -> Result<Definition, SubscriptionError> {
    definition(store, name)
        .await?
        .ok_or_else(|| SubscriptionError::NotFound(name.to_string()))
}

/// The append that defines subscription `name` (only if it does not exist yet), recording
/// `metadata` (who defined it).
pub fn define(name: &str, definition: &Definition, metadata: Value) -> StreamAppend {
    let data = serde_json::to_value(definition).expect("a definition serializes");
    StreamAppend::new(
        definition_stream(name),
        ExpectedSeq::NoStream,
        vec![NewEvent::new(DEFINED, data).with_metadata(metadata)],
    )
}

/// The checkpoint of member `member` of subscription `name`.
pub async fn checkpoint(
    store: &dyn EventStore,
    name: &str,
    member: u32,
) -> Result<Checkpoint, SubscriptionError> {
    check_name(name)?;
    match last_event(store, &ack_stream(name, member)).await? {
        None => Ok(Checkpoint {
            cursor: LogCursor::START,
            seq: Seq::ZERO,
        }),
        Some((data, seq)) => {
            let acked: Acked =
                serde_json::from_value(data).map_err(|source| SubscriptionError::Corrupt {
                    what: "checkpoint",
                    name: name.to_string(),
                    source,
                })?;
            Ok(Checkpoint {
                cursor: acked.cursor,
                seq,
            })
        }
    }
}

/// The append that moves member `member`'s checkpoint from `from` to `cursor` (recording
/// `metadata`, who acked): it commits only if the checkpoint is still `from`. Add it to the
/// `append_multi` of a job's results to process exactly once.
pub fn ack(
    name: &str,
    member: u32,
    from: Checkpoint,
    cursor: LogCursor,
    metadata: Value,
) -> StreamAppend {
    let data = serde_json::to_value(Acked { member, cursor }).expect("an ack serializes");
    let expected = if from.seq == Seq::ZERO {
        ExpectedSeq::NoStream
    } else {
        ExpectedSeq::Exact(from.seq)
    };
    StreamAppend::new(
        ack_stream(name, member),
        expected,
        vec![NewEvent::new(ACKED, data).with_metadata(metadata)],
    )
}

/// A page of member `member`'s events after `after`: at most `limit`, scanning a bounded
/// part of the log.
pub async fn member_page(
    log: &dyn LogReader,
    definition: &Definition,
    member: u32,
    after: LogCursor,
    limit: usize,
) -> Result<MemberPage, SubscriptionError> {
    let filter = definition.filter();
    let mut cursor = after;
    let mut events = Vec::new();
    for _ in 0..MAX_SCANS {
        let page = log.read_events(cursor, &filter, SCAN_PAGE).await?;
        let short = page.len() < SCAN_PAGE;
        for event in page {
            cursor = event.cursor;
            let stream = event.envelope.stream.as_str();
            if !internal(stream) && member_of(stream, definition.members) == member {
                events.push(event);
                if events.len() == limit {
                    return Ok(MemberPage {
                        events,
                        next: cursor,
                        caught_up: false,
                    });
                }
            }
        }
        if short {
            return Ok(MemberPage {
                events,
                next: cursor,
                caught_up: true,
            });
        }
    }
    Ok(MemberPage {
        events,
        next: cursor,
        caught_up: false,
    })
}

/// Whether `cursor` names an event of the log (or the start).
pub async fn known(log: &dyn LogReader, cursor: LogCursor) -> Result<bool, StoreError> {
    if cursor == LogCursor::START {
        return Ok(true);
    }
    match log.cursor_at(cursor.position).await {
        Ok(found) => Ok(found == cursor),
        Err(StoreError::UnknownPosition(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_split_streams_stably() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(
            member_of("a", u32::MAX),
            (0xaf63_dc4c_8601_ec8c_u64 % u64::from(u32::MAX)) as u32
        );
        assert_eq!(member_of("order-1", 1), 0);
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let m = member_of(&format!("order-{i}"), 3);
            assert_eq!(m, member_of(&format!("order-{i}"), 3));
            counts[m as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn names_and_bookkeeping_streams() {
        for ok in ["a", "billing_sync", "x1", &"a".repeat(63)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "_a", "A", "a-b", "a.b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(internal("subscription-x") && internal("subscriptionack-x.0"));
        assert!(!internal("subscriptions-x") && !internal("order-1"));
        assert_eq!(ack_stream("jobs", 2).as_str(), "subscriptionack-jobs.2");
    }

    #[test]
    fn definitions_and_groups_are_checked() {
        let d = |members| Definition {
            categories: vec![],
            types: vec![],
            members,
        };
        assert!(d(1).check().is_ok() && d(MAX_MEMBERS).check().is_ok());
        assert!(d(0).check().is_err() && d(MAX_MEMBERS + 1).check().is_err());
        for bad in ["", "A", "a-b", "1a"] {
            let bad_category = Definition {
                categories: vec![bad.into()],
                ..d(1)
            };
            assert!(bad_category.check().is_err(), "{bad}");
        }
        let ok = Definition {
            categories: vec!["order".into(), "a_1".into()],
            ..d(1)
        };
        assert!(ok.check().is_ok());
        let empty_type = Definition {
            types: vec![String::new()],
            ..d(1)
        };
        assert!(empty_type.check().is_err());
        assert_eq!(d(3).member(2, Some(3)).unwrap(), 2);
        assert!(d(3).member(3, None).is_err() && d(3).member(0, Some(2)).is_err());
    }
}
