//! `stepup.present`, `stepup.current`, `stepup.clear`: verify an assertion
//! once and hold it; everything later reads the held claims.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::held::{self, Held, Scope};
use crate::raise::{raise, Code, LogFields, Rejection};
use crate::token::{self, Rules, TokenError};
use crate::{catalog, settings};

/// Verifies `assertion` and holds it for the current transaction; returns its
/// claims. Measured by `bench/run.sh` (scenario 6).
#[pg_extern(volatile, parallel_unsafe, name = "present")]
fn present(assertion: Option<&str>) -> JsonB {
    present_scoped(assertion, Some("transaction"))
}

/// As `present(assertion)`, with scope `'transaction'` or `'session'`.
#[pg_extern(volatile, parallel_unsafe, name = "present")]
fn present_scoped(assertion: Option<&str>, scope: Option<&str>) -> JsonB {
    let Some(scope) = scope.and_then(Scope::parse) else {
        raise(Rejection {
            code: Code::InvalidParameterValue,
            message: "scope must be 'transaction' or 'session'".into(),
            detail: "unknown scope".into(),
            hint: Some("Behind a transaction pooler use 'transaction' (the default).".into()),
            log: LogFields {
                operation: "present".into(),
                ..LogFields::default()
            },
        });
    };
    match verify_and_hold(assertion, scope) {
        Ok(claims) => JsonB(claims),
        Err(e) => raise(rejection(e)),
    }
}

fn verify_and_hold(assertion: Option<&str>, scope: Scope) -> Result<Value, TokenError> {
    let assertion = assertion.ok_or(TokenError::Missing)?;
    let snapshot = catalog::snapshot();
    let audience = settings::audience();
    let rules = Rules {
        audience: &audience,
        leeway: settings::leeway_s(),
        max_lifetime: settings::max_lifetime_s(),
        now_us: catalog::now_us(),
    };
    let claims = token::verify(
        assertion,
        |kid| snapshot.keys.get(kid),
        |acr| snapshot.levels.contains_key(acr),
        &rules,
    )?;
    let returned = Value::Object(claims.raw.clone());
    held::set(Some(Held { claims, scope }));
    Ok(returned)
}

fn rejection(e: TokenError) -> Rejection {
    let hint = match e {
        TokenError::Missing => "Pass the compact JWS the identity provider returned after step-up.",
        TokenError::UnknownKid(_) | TokenError::KeyRetired(_) | TokenError::KeyNotYetValid(_) => {
            "The signing key is not active here: check stepup.key_info, or register it with stepup.add_key."
        }
        TokenError::WrongAudience => {
            "Mint the assertion with aud equal to stepup.audience (by default the database name)."
        }
        TokenError::UnknownLevel(_) => "Define the level with stepup.define_level, or mint a known acr.",
        _ => "Have the user step up again and present the new assertion.",
    };
    Rejection {
        code: Code::InvalidAssertion,
        message: "invalid step-up assertion".into(),
        detail: e.to_string(),
        hint: Some(hint.into()),
        log: LogFields {
            operation: "present".into(),
            ..LogFields::default()
        },
    }
}

/// The claims of the held assertion, or NULL when none is held.
#[pg_extern(volatile, parallel_restricted)]
fn current() -> Option<JsonB> {
    held::current().map(|h| JsonB(Value::Object(h.claims.raw.clone())))
}

/// Drops the held assertion, whatever its scope.
#[pg_extern(volatile, parallel_unsafe)]
fn clear() {
    held::set(None);
}
