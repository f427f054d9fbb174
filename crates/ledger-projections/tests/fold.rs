//! Property: random valid onboarding histories over many tenants, applied incrementally in
//! random batch splits, give the same rows as applying them in one batch, which are the rows of
//! the domain's own fold of each tenant.

use chrono::{TimeZone, Utc};
use ledger_core::{Envelope, Position, Seq};
use ledger_projections::generate::{Step, history};
use ledger_projections::{Batch, Decoded, Kind, Table, reference};
use proptest::prelude::*;
use serde_json::json;
use uuid::Uuid;

/// The history as the log would hold it: envelopes at consecutive positions.
fn log(steps: &[Step], tenants: usize) -> Vec<Decoded> {
    let start = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap();
    let mut position = 0;
    let mut out = Vec::new();
    for append in history(1, tenants, steps, start) {
        let first = match append.expected {
            ledger_core::ExpectedSeq::Exact(s) => s.0 + 1,
            _ => 1,
        };
        for (i, e) in append.events.into_iter().enumerate() {
            position += 1;
            out.push(Decoded::from_envelope(Envelope {
                event_id: Uuid::now_v7(),
                stream: append.stream.clone(),
                seq: Seq(first + i as u64),
                position: Position(position),
                event_type: e.event_type,
                data: e.data,
                metadata: json!({}),
                recorded_at: start,
            }));
        }
    }
    out
}

fn step() -> impl Strategy<Value = Step> {
    (0usize..8, any::<u8>(), any::<u8>(), 0u16..120).prop_map(|(tenant, command, arg, advance)| {
        Step {
            tenant,
            command,
            arg,
            advance,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn incremental_equals_rebuilt_equals_fold(
        tenants in 1usize..8,
        steps in prop::collection::vec(step(), 0..160),
        splits in prop::collection::vec(1usize..25, 1..40),
    ) {
        let decoded = log(&steps, tenants);
        let changes: Vec<_> = decoded.iter().filter_map(|d| d.change.clone()).collect();
        for kind in Kind::ALL {
            // Incrementally, in batches of the sizes `splits` cycles through.
            let mut incremental = Table::new(kind);
            let mut rest = decoded.as_slice();
            let mut sizes = splits.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap()).min(rest.len());
                let batch: Batch = rest[..n].iter().cloned().collect();
                incremental.apply(&batch);
                rest = &rest[n..];
            }
            // From scratch, in one batch.
            let mut rebuilt = Table::new(kind);
            rebuilt.apply(&decoded.iter().cloned().collect());
            let fold = reference(kind, &changes);
            prop_assert_eq!(incremental.rows(), rebuilt.rows(), "{} incremental vs rebuilt", kind);
            prop_assert_eq!(rebuilt.rows(), fold, "{} rebuilt vs fold", kind);
        }
    }
}
