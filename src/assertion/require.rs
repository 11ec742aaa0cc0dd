//! `stepup.satisfied` and `stepup.require`: the checks users call in their
//! own policies. Both read the clock at the moment of the check.

use pgrx::datum::Interval;
use pgrx::prelude::*;

use crate::assertion::held;
use crate::catalog;
use crate::pg::raise::{raise, Rejection};
use crate::pg::reject::{self, StepUp};
use crate::pg::settings;
use crate::pg::time::interval_us;
use stepup_core::requirement::{Requirement, Unmet};

/// True when a verified, unexpired assertion is held whose acr ranks at
/// least `level`, whose auth_time is within `max_age`, and (if given) whose
/// amr holds one of `methods`.
#[pg_extern(volatile, parallel_restricted, name = "satisfied")]
fn satisfied(level: Option<&str>, max_age: Option<Interval>) -> bool {
    satisfied_methods(level, max_age, None)
}

#[pg_extern(volatile, parallel_restricted, name = "satisfied")]
fn satisfied_methods(
    level: Option<&str>,
    max_age: Option<Interval>,
    methods: Option<Vec<Option<String>>>,
) -> bool {
    unmet_requirement(level, max_age, methods).is_none()
}

/// True, or raises SU001 with the RFC 9470 challenge. For policies:
/// `USING (amount < 10000 OR stepup.require('aal3', '2 minutes'))`.
#[pg_extern(volatile, parallel_restricted, name = "require")]
fn require(level: Option<&str>, max_age: Option<Interval>) -> bool {
    require_methods(level, max_age, None)
}

#[pg_extern(volatile, parallel_restricted, name = "require")]
fn require_methods(
    level: Option<&str>,
    max_age: Option<Interval>,
    methods: Option<Vec<Option<String>>>,
) -> bool {
    // Everything that owns memory lives in `unmet_requirement`'s frame and is
    // gone before raise() longjmps.
    match unmet_requirement(level, max_age, methods) {
        None => true,
        Some(rejection) => raise(rejection),
    }
}

/// Checks the SQL arguments' requirement now; the SU001 rejection if unmet.
fn unmet_requirement(
    level: Option<&str>,
    max_age: Option<Interval>,
    methods: Option<Vec<Option<String>>>,
) -> Option<Rejection> {
    let methods = method_list(methods);
    let (level, rank, max_age_us) = arguments(level, max_age);
    let req = Requirement {
        level: &level,
        rank,
        max_age_us,
        methods: &methods,
    };
    let unmet = evaluate(&req, &catalog::snapshot()).err()?;
    Some(reject::step_up_required(
        StepUp::Unmet(&req, &unmet),
        held::log_fields(None, "require"),
    ))
}

/// Checks the held assertion against `req` now, its level ranked as in
/// `snapshot` (the one `req` was read from).
pub fn evaluate(req: &Requirement, snapshot: &catalog::Snapshot) -> Result<(), Unmet> {
    let held = held::current();
    let claims = held.as_ref().map(|h| &*h.claims);
    let held_rank = claims.and_then(|c| snapshot.levels.get(&c.acr).copied());
    let now_us = crate::pg::time::now_us();
    req.check(claims, held_rank, now_us, settings::leeway_s())?;
    // Every use re-checks the key: retiring it ends what it authorises,
    // held assertions included.
    match claims {
        Some(c) if !key_valid(snapshot, &c.kid, now_us) => {
            Err(Unmet::KeyRetired { kid: c.kid.clone() })
        }
        _ => Ok(()),
    }
}

fn key_valid(snapshot: &catalog::Snapshot, kid: &str, now_us: i64) -> bool {
    snapshot
        .keys
        .get(kid)
        .is_some_and(|k| k.not_before_us <= now_us && k.not_after_us.is_none_or(|end| now_us < end))
}

/// Validates level and max_age; errors name what to fix.
fn arguments(level: Option<&str>, max_age: Option<Interval>) -> (String, i32, i64) {
    let (Some(level), Some(max_age)) = (level, max_age) else {
        reject::null_argument(
            "level and max_age must not be NULL",
            "Pass a level such as 'aal2' and an interval such as '5 minutes'.",
        );
    };
    let Some(rank) = catalog::level_rank(level) else {
        reject::invalid_parameter(
            format!("unknown step-up level \"{level}\""),
            "Levels are listed in stepup.levels; add one with stepup.define_level(name, rank).",
        );
    };
    (level.to_string(), rank, interval_us(max_age))
}

/// NULL means any method; a list must name at least one, so that `'{}'`
/// cannot quietly mean "anything goes".
fn method_list(methods: Option<Vec<Option<String>>>) -> Vec<String> {
    let Some(methods) = methods else {
        return Vec::new();
    };
    let list: Vec<String> = methods
        .into_iter()
        .flatten()
        .filter(|m| !m.is_empty())
        .collect();
    if list.is_empty() {
        reject::invalid_parameter(
            "methods must name at least one authentication method",
            "Pass amr values such as '{hwk,fpt}', or NULL to accept any method.",
        );
    }
    list
}
