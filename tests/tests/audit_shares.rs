//! An audit search by `on_behalf_of` over more tenants' sealed forms than one query lists:
//! the shares' pages merge into the same pages one query would give, in both orders, on every
//! backend.

use ledger_core::{EventStore, ExpectedSeq, NewEvent, StreamName};
use ledger_read_models::audit_trail::{self, FORMS_PER_QUERY};
use ledger_read_models::{AuditFilter, Order};
use ledger_tests::env::Env;
use serde_json::json;

projection_test!(
    on_behalf_of_searches_merge_their_shares,
    |env: Env| async move {
        // 60 events, each on behalf of one of 12 forms; the search lists 2.5 shares of forms, the
        // matching ones spread over all shares and the plain value itself.
        let forms: Vec<String> = (0..FORMS_PER_QUERY * 5 / 2)
            .map(|i| format!("form-{i}"))
            .collect();
        let used = [
            0,
            1,
            7,
            FORMS_PER_QUERY - 1,
            FORMS_PER_QUERY,
            FORMS_PER_QUERY + 3,
            forms.len() - 1,
        ];
        let mut wanted = Vec::new();
        for i in 0..60usize {
            let person = match i % 12 {
                k if k < used.len() => forms[used[k]].clone(),
                10 => "plain".to_string(),
                _ => "someone-else".to_string(),
            };
            let matches = person != "someone-else";
            let stream = StreamName::parse(format!("order-{}", i % 5)).unwrap();
            let event = NewEvent::new("Placed", json!({"i": i}))
                .with_metadata(json!({"actor": {"role": "admin", "on_behalf_of": person}}));
            let result = env
                .store
                .append(stream, ExpectedSeq::Any, vec![event])
                .await
                .unwrap();
            if matches {
                wanted.push(result.position.0);
            }
        }
        env.projector(16)
            .catch_up(audit_trail::SCHEMA.name)
            .await
            .unwrap();
        let filter = AuditFilter {
            on_behalf_of: Some("plain".into()),
            on_behalf_of_sealed: forms,
            ..AuditFilter::default()
        };
        for order in [Order::Asc, Order::Desc] {
            let mut want = wanted.clone();
            if order == Order::Desc {
                want.reverse();
            }
            for limit in [1, 7, 1000] {
                let mut got = Vec::new();
                let mut after = None;
                loop {
                    let rows =
                        audit_trail::page(env.projections.as_ref(), &filter, order, after, limit)
                            .await
                            .unwrap();
                    got.extend(rows.iter().map(|r| r.position.0));
                    if rows.len() < limit {
                        break;
                    }
                    after = rows.last().map(|r| r.cursor());
                }
                assert_eq!(got, want, "{order:?} limit {limit}");
            }
        }
    }
);
