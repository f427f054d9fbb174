//! `ledger append`: one event to one stream, checked against the caller's expected seq.

use ledger_core::{
    ExpectedSeq, Limits, NewEvent, Position, Seq, StoreOptions, StreamName, validate_batch,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::args::AppendArgs;
use crate::database::{self, Target};
use crate::output::{CliError, print_json};

/// Validates the arguments, appends, prints `{"stream","first_seq","last_seq","position"}`.
///
/// Every input check runs before the database is opened, so bad input touches nothing.
pub async fn run(target: &Target, args: AppendArgs) -> Result<(), CliError> {
    let (stream, expected, event) = parse(args)?;
    let db = database::open(target, StoreOptions::default()).await?;
    let result = super::sealed(&db)
        .append(stream, expected, vec![event])
        .await?;
    // Runners of other processes hear of it before this process exits.
    db.flush_wakeups().await;
    if result.replayed {
        tracing::info!(stream = %result.stream, "idempotent retry: nothing written");
    }
    print_json(&Appended {
        stream: result.stream,
        first_seq: result.first_seq,
        last_seq: result.last_seq,
        position: result.position,
    })
}

/// What `ledger append` prints: the original result, also for an idempotent retry.
#[derive(Serialize)]
struct Appended {
    stream: StreamName,
    first_seq: Seq,
    last_seq: Seq,
    position: Position,
}

/// Turns the arguments into a checked append.
fn parse(args: AppendArgs) -> Result<(StreamName, ExpectedSeq, NewEvent), CliError> {
    let stream = StreamName::parse(args.stream)?;
    let expected = parse_expected(&args.expected)?;
    let data = parse_json("--data", &args.data)?;
    let metadata = match &args.metadata {
        Some(text) => parse_json("--metadata", text)?,
        None => Value::Object(Default::default()),
    };
    let mut event = NewEvent::new(args.event_type, data).with_metadata(metadata);
    if let Some(id) = &args.event_id {
        event = event.with_id(parse_event_id(id)?);
    }
    validate_batch(std::slice::from_ref(&event), &Limits::default())?;
    Ok((stream, expected, event))
}

/// Parses `--expected`: a number, `no-stream`/`no_stream`, `exists` or `any`.
pub(crate) fn parse_expected(text: &str) -> Result<ExpectedSeq, CliError> {
    text.trim().parse().map_err(|_| {
        CliError::bad_input(
            "invalid_expected_seq",
            format!(
                "--expected {text:?} is not an expected seq: pass the stream's current seq (a number, 0 for a new stream), no-stream, exists or any"
            ),
        )
    })
}

/// Parses a JSON argument, naming the flag in the error.
fn parse_json(flag: &str, text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text).map_err(|e| {
        CliError::bad_input(
            "invalid_json",
            format!(
                "{flag} is not valid JSON ({e}); quote it for the shell, e.g. {flag} '{{\"a\":1}}'"
            ),
        )
    })
}

/// Parses `--event-id`.
fn parse_event_id(text: &str) -> Result<Uuid, CliError> {
    Uuid::parse_str(text.trim()).map_err(|e| {
        CliError::bad_input(
            "invalid_event_id",
            format!("--event-id {text:?} is not a UUID ({e}); omit it to get a new UUID v7"),
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn args(stream: &str, expected: &str, data: &str) -> AppendArgs {
        AppendArgs {
            stream: stream.into(),
            expected: expected.into(),
            event_type: "Noted".into(),
            data: data.into(),
            metadata: None,
            event_id: None,
        }
    }

    fn code(err: CliError) -> String {
        assert_eq!(err.exit_code(), 2);
        err.to_json()["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn expected_seq_spellings() {
        assert_eq!(parse_expected("no-stream").unwrap(), ExpectedSeq::NoStream);
        assert_eq!(parse_expected("no_stream").unwrap(), ExpectedSeq::NoStream);
        assert_eq!(parse_expected("exists").unwrap(), ExpectedSeq::Exists);
        assert_eq!(parse_expected("any").unwrap(), ExpectedSeq::Any);
        assert_eq!(parse_expected("0").unwrap(), ExpectedSeq::Exact(Seq(0)));
        assert_eq!(parse_expected(" 42 ").unwrap(), ExpectedSeq::Exact(Seq(42)));
        for bad in ["", "-1", "latest", "1.5", "NoStream"] {
            assert_eq!(
                code(parse_expected(bad).unwrap_err()),
                "invalid_expected_seq"
            );
        }
    }

    #[test]
    fn builds_the_event() {
        let mut a = args("tenant-x", "3", r#"{"a":1}"#);
        a.metadata = Some(r#"{"actor":"cli"}"#.into());
        a.event_id = Some("0190c3a1-7b2e-7000-8000-000000000001".into());
        let (stream, expected, event) = parse(a).unwrap();
        assert_eq!(stream.as_str(), "tenant-x");
        assert_eq!(expected, ExpectedSeq::Exact(Seq(3)));
        assert_eq!(event.event_type, "Noted");
        assert_eq!(event.data, json!({"a": 1}));
        assert_eq!(event.metadata, json!({"actor": "cli"}));
        assert_eq!(
            event.event_id.to_string(),
            "0190c3a1-7b2e-7000-8000-000000000001"
        );
    }

    #[test]
    fn refuses_bad_input_with_stable_codes() {
        assert_eq!(
            code(parse(args("Tenant", "any", "{}")).unwrap_err()),
            "invalid_stream_name"
        );
        assert_eq!(
            code(parse(args("tenant-x", "any", "{nope")).unwrap_err()),
            "invalid_json"
        );
        assert_eq!(
            code(parse(args("tenant-x", "soon", "{}")).unwrap_err()),
            "invalid_expected_seq"
        );
        let mut meta = args("tenant-x", "any", "{}");
        meta.metadata = Some("[1]".into());
        assert_eq!(code(parse(meta).unwrap_err()), "invalid_metadata");
        let mut bad_meta = args("tenant-x", "any", "{}");
        bad_meta.metadata = Some("{".into());
        assert_eq!(code(parse(bad_meta).unwrap_err()), "invalid_json");
        let mut id = args("tenant-x", "any", "{}");
        id.event_id = Some("not-a-uuid".into());
        assert_eq!(code(parse(id).unwrap_err()), "invalid_event_id");
        let big = format!("\"{}\"", "x".repeat(1024 * 1024));
        assert_eq!(
            code(parse(args("tenant-x", "any", &big)).unwrap_err()),
            "event_too_large"
        );
        let mut no_type = args("tenant-x", "any", "{}");
        no_type.event_type.clear();
        assert_eq!(code(parse(no_type).unwrap_err()), "invalid_input");
    }
}
