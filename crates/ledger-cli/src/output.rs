//! What the CLI prints and how it exits: JSON results on stdout, JSON errors on stderr.
//!
//! Exit codes: 0 success, 1 the database is unavailable or an internal failure, 2 bad input
//! (arguments, stream names, JSON, schema mismatch, ...), 3 an append conflict.

use std::io::{self, Write};
use std::process::ExitCode;

use ledger_core::{Envelope, ExpectedSeq, Seq, StoreError};
use serde::Serialize;

/// Exit code of bad input: invalid arguments, names, JSON, ids, sizes, a schema mismatch.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code of an append refused because the stream was not at the expected seq.
pub const EXIT_CONFLICT: u8 = 3;
/// Exit code of an unavailable database or an internal failure.
pub const EXIT_FAILURE: u8 = 1;

/// Why a command failed; each variant maps to an exit code and a JSON error on stderr.
#[derive(Debug)]
pub enum CliError {
    /// A store error: its `code()` decides the exit code.
    Store(StoreError),
    /// Input the CLI itself refused before reaching the store.
    BadInput {
        /// Stable snake_case code, e.g. `invalid_json`.
        code: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Anything else (I/O on stdout, a crashed task, ...).
    Internal(anyhow::Error),
    /// A command that ran but found a failure it reports with a code (exit 1), e.g.
    /// `projection_differs`.
    Failed {
        /// Stable snake_case code.
        code: &'static str,
        /// What was found and what to do.
        message: String,
    },
}

impl CliError {
    /// A bad-input error with a stable code.
    pub fn bad_input(code: &'static str, message: impl Into<String>) -> Self {
        CliError::BadInput {
            code,
            message: message.into(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Store(StoreError::Conflict(_)) => EXIT_CONFLICT,
            CliError::Store(e) if e.is_bad_input() => EXIT_BAD_INPUT,
            CliError::Store(StoreError::SchemaMismatch { .. }) => EXIT_BAD_INPUT,
            CliError::Store(_) => EXIT_FAILURE,
            CliError::BadInput { .. } => EXIT_BAD_INPUT,
            CliError::Internal(_) => EXIT_FAILURE,
            CliError::Failed { .. } => EXIT_FAILURE,
        }
    }

    /// The JSON object printed on stderr: `{"error": code, "message": text, ...}`.
    pub fn body(&self) -> ErrorBody {
        match self {
            CliError::Store(StoreError::Conflict(c)) => {
                let (missed, missed_truncated) = c.reported_missed();
                ErrorBody::Conflict {
                    error: "conflict",
                    stream: c.stream.to_string(),
                    expected: c.expected,
                    current_seq: c.current_seq,
                    missed: missed.to_vec(),
                    missed_truncated,
                    message: format!(
                        "stream {} is at seq {}, not {}: {} and retry with --expected {}",
                        c.stream,
                        c.current_seq,
                        c.expected,
                        if missed_truncated {
                            "read it again (`missed` holds only the first events you missed)"
                        } else {
                            "the events you missed are in `missed`; decide again"
                        },
                        c.current_seq
                    ),
                }
            }
            CliError::Store(e) => ErrorBody::Plain {
                error: e.code(),
                // With its causes: the driver's error under a database failure.
                message: anyhow::Chain::new(e)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(": "),
            },
            CliError::BadInput { code, message } | CliError::Failed { code, message } => {
                ErrorBody::Plain {
                    error: code,
                    message: message.clone(),
                }
            }
            CliError::Internal(e) => ErrorBody::Plain {
                error: "internal",
                message: format!("{e:#}"),
            },
        }
    }

    /// [`body`](Self::body) as a JSON value.
    #[cfg(test)]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.body()).unwrap_or_default()
    }
}

/// An error as printed on stderr, fields in this order.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ErrorBody {
    /// An append conflict.
    Conflict {
        /// Always `conflict`.
        error: &'static str,
        /// The stream appended to.
        stream: String,
        /// What the caller expected.
        expected: ExpectedSeq,
        /// Where the stream is.
        current_seq: Seq,
        /// The events after `expected`, oldest first (at most `MAX_REPORTED_MISSED`).
        missed: Vec<Envelope>,
        /// True when more events were missed than `missed` holds.
        missed_truncated: bool,
        /// What to do.
        message: String,
    },
    /// Any other error.
    Plain {
        /// Stable snake_case code.
        error: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::Store(e)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Internal(e)
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Internal(anyhow::Error::new(e).context("writing the output failed"))
    }
}

/// Prints `err` as one JSON line on stderr and returns its exit code.
pub fn report(err: &CliError) -> ExitCode {
    print_error(&err.body());
    ExitCode::from(err.exit_code())
}

/// Prints a JSON error object on stderr as one line, ignoring a closed stderr.
pub fn print_error<T: Serialize>(value: &T) {
    let mut line =
        serde_json::to_vec(value).unwrap_or_else(|_| b"{\"error\":\"internal\"}".to_vec());
    line.push(b'\n');
    let _ = io::stderr().lock().write_all(&line);
}

/// Writes JSON lines to stdout through a buffer; a closed pipe (e.g. `| head`) is not an error.
pub struct JsonLines {
    out: io::BufWriter<io::Stdout>,
    line: Vec<u8>,
    closed: bool,
}

impl JsonLines {
    /// A writer on stdout.
    pub fn stdout() -> Self {
        Self {
            out: io::BufWriter::with_capacity(64 * 1024, io::stdout()),
            line: Vec::with_capacity(1024),
            closed: false,
        }
    }

    /// True once the reader of stdout has gone away: the caller should stop producing.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes `value` as one line.
    pub fn write<T: Serialize>(&mut self, value: &T) -> Result<(), CliError> {
        if self.closed {
            return Ok(());
        }
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)
            .map_err(|e| CliError::Internal(anyhow::Error::new(e).context("encoding JSON")))?;
        self.line.push(b'\n');
        let written = self.out.write_all(&self.line);
        self.check(written)
    }

    /// Flushes what is buffered.
    pub fn finish(mut self) -> Result<(), CliError> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.out.flush();
        self.check(flushed)
    }

    fn check(&mut self, result: io::Result<()>) -> Result<(), CliError> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Prints one JSON object on stdout (a command's result).
pub fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let mut out = JsonLines::stdout();
    out.write(value)?;
    out.finish()
}

#[cfg(test)]
mod tests {
    use ledger_core::{Conflict, MAX_REPORTED_MISSED, StreamName};

    use serde_json::json;

    use super::*;

    #[test]
    fn conflicts_carry_the_missed_events_bounded() {
        let s = StreamName::parse("order-7").unwrap();
        let missed: Vec<Envelope> = (1..=25)
            .map(|seq| Envelope {
                event_id: uuid::Uuid::now_v7(),
                stream: s.clone(),
                seq: Seq(seq),
                position: ledger_core::Position(seq),
                event_type: "Noted".into(),
                data: json!({"n": seq}),
                metadata: json!({}),
                recorded_at: chrono::Utc::now(),
            })
            .collect();
        let err = CliError::Store(Conflict::error(
            &s,
            ExpectedSeq::Exact(Seq(0)),
            Seq(25),
            missed,
            32,
        ));
        let v = err.to_json();
        assert_eq!(v["missed"].as_array().unwrap().len(), MAX_REPORTED_MISSED);
        assert_eq!(v["missed"][0]["data"], json!({"n": 1}));
        assert_eq!(v["missed"][0]["type"], "Noted");
        assert_eq!(v["missed_truncated"], true);
        assert!(v["message"].as_str().unwrap().contains("read it again"));
    }

    #[test]
    fn conflicts_exit_3_with_the_current_seq() {
        let s = StreamName::parse("tenant-x").unwrap();
        let err = CliError::Store(Conflict::error(
            &s,
            ExpectedSeq::NoStream,
            Seq(2),
            vec![],
            32,
        ));
        assert_eq!(err.exit_code(), 3);
        let v = err.to_json();
        assert_eq!(v["error"], "conflict");
        assert_eq!(v["stream"], "tenant-x");
        assert_eq!(v["expected"], "no_stream");
        assert_eq!(v["current_seq"], 2);
        assert_eq!(v["missed"], json!([]));
        assert_eq!(v["missed_truncated"], false);
    }

    #[test]
    fn bad_input_and_schema_exit_2_database_failures_exit_1() {
        let name = StreamName::parse("Nope").unwrap_err();
        assert_eq!(CliError::Store(name).exit_code(), 2);
        let schema = StoreError::SchemaMismatch {
            found: 0,
            needed: 1,
        };
        assert_eq!(CliError::Store(schema).exit_code(), 2);
        let reused = StoreError::EventIdReused {
            event_id: uuid::Uuid::nil(),
        };
        assert_eq!(
            CliError::Store(reused).to_json()["error"],
            "event_id_reused"
        );
        let down = CliError::Store(StoreError::unavailable("refused"));
        assert_eq!(
            (down.exit_code(), down.to_json()["error"].clone()),
            (1, json!("unavailable"))
        );
        let cause = io::Error::other("boom");
        let broken = CliError::Store(StoreError::backend_with("a statement failed", cause));
        assert_eq!(
            (broken.exit_code(), broken.to_json()["error"].clone()),
            (1, json!("internal"))
        );
        assert_eq!(
            broken.to_json()["message"],
            "database error: a statement failed: boom"
        );
        let bad = CliError::bad_input("invalid_json", "--data is not JSON");
        assert_eq!(bad.exit_code(), 2);
        assert_eq!(bad.to_json()["message"], "--data is not JSON");
    }
}
