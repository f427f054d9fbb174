//! Progress links: a tenant's progress page reached without a token, through a URL signed with
//! the console's secret (HMAC-SHA256) that expires. A link may name the tab (lock holder) it was
//! made for, so the page can tell that tab's own lock from another tab's; the URL carries only a
//! keyed hash of the holder, never the holder itself.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::secret::{Keys, mac};
use crate::auth::{hex, unhex32};
use crate::error::{ApiError, Code};

/// A progress link's query: its expiry, the tag of its holder, its signature.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct LinkQuery {
    /// When the link expires (Unix seconds).
    pub(crate) exp: Option<i64>,
    /// The keyed hash of the tab it was made for (absent: made for no tab).
    pub(crate) tab: Option<String>,
    /// The signature (64 hex digits).
    pub(crate) sig: Option<String>,
}

/// A verified progress link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    /// The tenant whose progress it shows.
    pub(crate) tenant: Uuid,
    /// When it expires.
    pub(crate) expires: DateTime<Utc>,
    /// The keyed hash of the tab it was made for.
    pub(crate) tab: Option<String>,
}

impl Link {
    /// Whether `holder` is the tab this link was made for.
    pub(crate) fn is_for(&self, keys: &Keys, holder: &str) -> bool {
        self.tab
            .as_deref()
            .is_some_and(|tab| bool::from(tab.as_bytes().ct_eq(tab_tag(keys, holder).as_bytes())))
    }

    /// The link's query string (after `?`).
    pub(crate) fn query(&self, keys: &Keys) -> String {
        let exp = self.expires.timestamp();
        let sig = hex(&signature(keys, self.tenant, exp, self.tab.as_deref()));
        match &self.tab {
            Some(tab) => format!("exp={exp}&tab={tab}&sig={sig}"),
            None => format!("exp={exp}&sig={sig}"),
        }
    }

    /// The page's path and query.
    pub(crate) fn path(&self, keys: &Keys) -> String {
        format!("/ui/progress/{}?{}", self.tenant, self.query(keys))
    }
}

/// A new link for `tenant` and (optionally) the tab `holder`, expiring at `expires`.
pub(crate) fn make(
    keys: &Keys,
    tenant: Uuid,
    holder: Option<&str>,
    expires: DateTime<Utc>,
) -> Link {
    Link {
        tenant,
        expires: DateTime::from_timestamp(expires.timestamp(), 0).unwrap_or(expires),
        tab: holder.map(|h| tab_tag(keys, h)),
    }
}

/// The link `query` for `tenant`, if its signature is the console's: 403 `link_invalid` when
/// it is not (tampered, cut, or made with another secret), 410 `link_expired` after `now`.
pub(crate) fn verify(
    keys: &Keys,
    tenant: Uuid,
    query: &LinkQuery,
    now: DateTime<Utc>,
) -> Result<Link, ApiError> {
    let invalid = || {
        ApiError::new(
            Code::LinkInvalid,
            "this progress link is not valid: it may have been cut or changed; ask for a new link",
        )
    };
    let (Some(exp), Some(sig)) = (query.exp, query.sig.as_deref()) else {
        return Err(invalid());
    };
    let sig = unhex32(sig).ok_or_else(invalid)?;
    let tab = query.tab.as_deref();
    if tab.is_some_and(|t| t.len() != TAG_HEX) {
        return Err(invalid());
    }
    let expected = signature(keys, tenant, exp, tab);
    if !bool::from(sig.ct_eq(&expected)) {
        return Err(invalid());
    }
    let expires = DateTime::from_timestamp(exp, 0).ok_or_else(invalid)?;
    if expires <= now {
        return Err(ApiError::new(
            Code::LinkExpired,
            "this progress link has expired; ask for a new link",
        )
        .with("expired_at", expires));
    }
    Ok(Link {
        tenant,
        expires,
        tab: tab.map(str::to_string),
    })
}

/// Hex digits of a tab tag.
const TAG_HEX: usize = 32;

/// The keyed hash of a holder, as a link carries it.
fn tab_tag(keys: &Keys, holder: &str) -> String {
    let full = mac(&keys.link, format!("tab\n{holder}").as_bytes());
    hex(&full[..TAG_HEX / 2])
}

/// The signature of a link's fields.
fn signature(keys: &Keys, tenant: Uuid, exp: i64, tab: Option<&str>) -> [u8; 32] {
    let text = format!("progress\n{tenant}\n{exp}\n{}", tab.unwrap_or(""));
    mac(&keys.link, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn query_of(text: &str) -> LinkQuery {
        serde_urlencoded_like(text)
    }

    /// Parses `a=1&b=2` (the links' own output, no escapes needed).
    fn serde_urlencoded_like(text: &str) -> LinkQuery {
        let mut q = LinkQuery::default();
        for pair in text.split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            match k {
                "exp" => q.exp = v.parse().ok(),
                "tab" => q.tab = Some(v.into()),
                "sig" => q.sig = Some(v.into()),
                _ => {}
            }
        }
        q
    }

    #[test]
    fn links_verify_until_they_expire() {
        let keys = Keys::random();
        let now = Utc::now();
        let tenant = Uuid::now_v7();
        let link = make(&keys, tenant, Some("tab-a"), now + TimeDelta::hours(2));
        let q = query_of(&link.query(&keys));
        let verified = verify(&keys, tenant, &q, now).unwrap();
        assert_eq!(verified, link);
        assert!(verified.is_for(&keys, "tab-a"));
        assert!(!verified.is_for(&keys, "tab-b"));
        assert!(!link.path(&keys).contains("tab-a"));
        let expired = verify(&keys, tenant, &q, now + TimeDelta::hours(3)).unwrap_err();
        assert_eq!(expired.code(), Code::LinkExpired);
        let untabbed = make(&keys, tenant, None, now + TimeDelta::hours(1));
        let v = verify(&keys, tenant, &query_of(&untabbed.query(&keys)), now).unwrap();
        assert!(!v.is_for(&keys, "tab-a"));
    }

    #[test]
    fn changed_links_are_refused() {
        let keys = Keys::random();
        let now = Utc::now();
        let tenant = Uuid::now_v7();
        let link = make(&keys, tenant, Some("tab-a"), now + TimeDelta::hours(2));
        let good = query_of(&link.query(&keys));
        let mut cases = vec![];
        let mut later = good.clone();
        later.exp = later.exp.map(|e| e + 3600);
        cases.push(later);
        let mut other_tab = good.clone();
        other_tab.tab = Some(make(&keys, tenant, Some("tab-b"), now).tab.unwrap());
        cases.push(other_tab);
        let mut no_tab = good.clone();
        no_tab.tab = None;
        cases.push(no_tab);
        let mut bad_sig = good.clone();
        bad_sig.sig = Some("0".repeat(64));
        cases.push(bad_sig);
        let mut short_sig = good.clone();
        short_sig.sig = Some("abc".into());
        cases.push(short_sig);
        cases.push(LinkQuery::default());
        for q in &cases {
            assert_eq!(
                verify(&keys, tenant, q, now).unwrap_err().code(),
                Code::LinkInvalid,
                "{q:?}"
            );
        }
        assert_eq!(
            verify(&keys, Uuid::now_v7(), &good, now)
                .unwrap_err()
                .code(),
            Code::LinkInvalid
        );
        assert_eq!(
            verify(&Keys::random(), tenant, &good, now)
                .unwrap_err()
                .code(),
            Code::LinkInvalid
        );
    }
}
