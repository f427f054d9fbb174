//! The event the benchmarks write: a realistic onboarding `PaymentVerified`.

use ledger_core::NewEvent;
use serde_json::json;
use uuid::Uuid;

/// A `PaymentVerified` of about 420 bytes of data plus metadata; `writer` and `n` make the
/// checkout session and request ids differ from event to event.
pub fn payment_verified(run: Uuid, writer: u64, n: u64) -> NewEvent {
    let tenant = run.simple();
    let data = json!({
        "tenant_id": format!("{tenant}"),
        "checkout_session_id": format!("cs_live_{writer:04}{n:012}a1B2c3D4e5F6g7H8i9J0"),
        "payment_intent_id": format!("pi_{writer:04}{n:012}qR8sT9uV"),
        "amount": 4900 + (n % 7) * 1000,
        "currency": "usd",
        "plan": "team_monthly",
        "seats": 5,
        "card": {"brand": "visa", "last4": "4242"},
        "verified_at": "2025-01-15T10:23:45.123Z",
    });
    let metadata = json!({
        "actor": format!("user:{writer:08}"),
        "request_id": format!("req_{writer:04}{n:012}"),
        "source": "ledger-bench",
    });
    NewEvent::new("PaymentVerified", data).with_metadata(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_420_bytes_and_distinct() {
        let run = Uuid::now_v7();
        let e = payment_verified(run, 3, 12345);
        let size = serde_json::to_string(&e.data).unwrap().len()
            + serde_json::to_string(&e.metadata).unwrap().len();
        assert!((390..=450).contains(&size), "{size} bytes");
        let other = payment_verified(run, 3, 12346);
        assert_ne!(e.data, other.data);
        assert_ne!(e.event_id, other.event_id);
    }
}
