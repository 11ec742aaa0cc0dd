//! `stepup.present`, `stepup.current`, `stepup.clear`: verify an assertion
//! once and hold it; everything later reads the held claims.

use std::cell::RefCell;
use std::rc::Rc;

use pgrx::prelude::*;

use crate::assertion::held::{self, Held, Scope};
use crate::catalog;
use crate::pg::args::TextBytes;
use crate::pg::jsonb::Jsonb;
use crate::pg::raise::{raise, LogFields};
use crate::pg::reject;
use crate::pg::settings;
use stepup_core::token::{self, Authentic, Rules, TokenError};

/// Verifies `assertion` and holds it for the current transaction; returns its
/// claims. Measured by `bench/run.sh` (scenario 6).
#[pg_extern(volatile, parallel_unsafe, name = "present")]
fn present(assertion: Option<TextBytes>) -> Jsonb {
    present_scoped(assertion, Some(TextBytes(b"transaction")))
}

/// As `present(assertion)`, with scope `'transaction'` or `'session'`.
#[pg_extern(volatile, parallel_unsafe, name = "present")]
fn present_scoped(assertion: Option<TextBytes>, scope: Option<TextBytes>) -> Jsonb {
    let scope = scope.and_then(|s| std::str::from_utf8(s.0).ok());
    let Some(scope) = scope.and_then(Scope::parse) else {
        raise(reject::invalid_parameter_beside_assertion(
            "scope must be 'transaction' or 'session'",
            "unknown scope",
            "Behind a transaction pooler use 'transaction' (the default).",
            LogFields::new(None, "present"),
        ));
    };
    match verify_and_hold(assertion, scope) {
        Ok(claims) => claims,
        Err(e) => raise(reject::invalid_assertion(
            &e,
            LogFields::new(None, "present"),
        )),
    }
}

fn verify_and_hold(assertion: Option<TextBytes>, scope: Scope) -> Result<Jsonb, TokenError> {
    let bytes = assertion.ok_or(TokenError::Missing)?.0;
    if bytes.len() > token::MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge(bytes.len()));
    }
    let snapshot = catalog::snapshot();
    let audience = settings::audience();
    let rules = Rules {
        audience: &audience,
        leeway: settings::leeway_s(),
        max_lifetime: settings::max_lifetime_s(),
        now_us: crate::pg::time::now_us(),
    };
    let rank_of = |acr: &str| snapshot.levels.get(acr).copied();
    let again = LAST.with(|last| {
        let last = last.borrow();
        let last = last
            .as_ref()
            .filter(|l| l.token == bytes && Rc::ptr_eq(&l.keys, &snapshot))?;
        // Same bytes, same keys: the signature holds; the rest is judged anew.
        let key = snapshot.keys.get(&last.authentic.kid)?;
        Some(
            token::judge(&last.authentic, key, rank_of, &rules)
                .map(|claims| (claims, Jsonb::copy_of(&last.claims_jsonb))),
        )
    });
    let (claims, returned) = match again {
        Some(judged) => judged?,
        None => {
            // (The remembered bytes were checked when first presented.)
            let Ok(assertion) = std::str::from_utf8(bytes) else {
                return Err(TokenError::Malformed("assertion is not valid UTF-8".into()));
            };
            let (key, authentic) = token::authenticate(
                assertion,
                |kid| snapshot.keys.get(kid),
                rank_of,
                rules.now_us,
            )?;
            let claims = token::judge(&authentic, key, rank_of, &rules)?;
            let returned = Jsonb::from_object(&claims.raw);
            LAST.with(|last| {
                *last.borrow_mut() = Some(Last {
                    token: bytes.to_vec(),
                    keys: snapshot.clone(),
                    authentic,
                    claims_jsonb: returned.to_bytes(),
                })
            });
            (claims, returned)
        }
    };
    held::set(Some(Held { claims, scope }));
    Ok(returned)
}

/// The last assertion this backend authenticated. Applications present
/// the same assertion in each transaction of its short life; its bytes,
/// checked against the same key snapshot, need no second signature check
/// or parse (much of present()'s cost; bench scenario 2).
struct Last {
    token: Vec<u8>,
    keys: Rc<catalog::Snapshot>,
    authentic: Authentic,
    /// The claims as returned, a jsonb varlena.
    claims_jsonb: Vec<u8>,
}

thread_local! {
    static LAST: RefCell<Option<Last>> = const { RefCell::new(None) };
}

/// The claims of the held assertion, or NULL when none is held.
#[pg_extern(volatile, parallel_restricted)]
fn current() -> Option<Jsonb> {
    held::current().map(|h| Jsonb::from_object(&h.claims.raw))
}

/// Drops the held assertion, whatever its scope.
#[pg_extern(volatile, parallel_unsafe)]
fn clear() {
    held::set(None);
}
