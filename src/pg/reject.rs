//! Every error the extension raises, one constructor per SQLSTATE: the
//! contract's SU001-SU006 (DESIGN section 6) as [`Rejection`]s that
//! [`raise`](super::raise::raise) reports with their LOG line, and the
//! standard SQLSTATEs for bad arguments and internal failures, reported
//! through pgrx. Each message, detail and hint is written here and only
//! here; callers say why, in types.

use std::fmt::Display;

use pgrx::PgSqlErrorCode;
use stepup_core::digest;
use stepup_core::requirement::{Requirement, Unmet};
use stepup_core::token::{Claims, TokenError};

use super::raise::{Code, LogFields, Rejection};

const STEP_UP: &str = "Have the user re-authenticate at the identity provider, then call stepup.present(assertion) in this transaction.";
const SIGN_CHANGE: &str = "Have the identity provider sign chg with stepup.change_digest(table, op, key, changes) of this exact change.";
const OWNER_ONLY: &str = "Only the extension's owner (a superuser), holding the table's step-up, may change this table's protection.";

/// Why step-up is required (SU001).
pub enum StepUp<'a> {
    /// The held assertion (if any) does not meet the requirement.
    Unmet(&'a Requirement<'a>, &'a Unmet),
    /// The table has a guard trigger but no policy (its catalog row was
    /// removed by hand): refused rather than guessed.
    NoPolicy,
}

/// SU001 step-up required. The DETAIL of an unmet requirement is its RFC
/// 9470 challenge and the reason.
pub fn step_up_required(why: StepUp<'_>, log: LogFields) -> Rejection {
    let (detail, hint) = match why {
        StepUp::Unmet(req, unmet) => (format!("{}; {unmet}", req.challenge()), STEP_UP),
        StepUp::NoPolicy => (
            format!(
                "{} has a pg_stepup guard trigger but no policy in stepup.policies",
                log.table.as_deref().unwrap_or("this table")
            ),
            "Run stepup.protect on the table again to restore its policy.",
        ),
    };
    rejection(
        Code::StepUpRequired,
        "step-up authentication required",
        detail,
        hint,
        log,
    )
}

/// SU002 invalid assertion, with what to do about each reason.
pub fn invalid_assertion(e: &TokenError, log: LogFields) -> Rejection {
    let hint = match e {
        TokenError::Missing => "Pass the compact JWS the identity provider returned after step-up.",
        TokenError::UnknownKid(_) | TokenError::KeyRetired(_) | TokenError::KeyNotYetValid(_) => {
            "The signing key is not active here: check stepup.key_info, or register it with stepup.add_key."
        }
        TokenError::WrongAudience(None) => {
            "Mint the assertion with aud equal to stepup.audience (by default the database name)."
        }
        TokenError::WrongAudience(Some(_)) => {
            "The issuer's tokens must name the audience its profile sets (stepup.issuers): request the token for that client or API, or change it with stepup.define_issuer."
        }
        TokenError::WrongType(_) => {
            "This issuer accepts only the token types its profile lists (stepup.issuers.accepted_types): present that kind of token (e.g. the access token, not the ID token)."
        }
        TokenError::UnknownLevel(_) => {
            "Define the level with stepup.define_level, map the issuer's value to one with stepup.define_issuer(levels => ...), or mint a known acr."
        }
        _ => "Have the user step up again and present the new assertion.",
    };
    rejection(
        Code::InvalidAssertion,
        "invalid step-up assertion",
        e.to_string(),
        hint,
        log,
    )
}

/// SU003 assertion replayed: `claims` were spent by an earlier transaction.
pub fn replayed(claims: &Claims, log: LogFields) -> Rejection {
    let detail = match &claims.jti {
        Some(jti) => format!("jti \"{jti}\" was spent by an earlier transaction"),
        None => format!(
            "the assertion (no jti; replay id {}, the SHA-256 of its signed bytes) was spent by an earlier transaction",
            claims.replay_id
        ),
    };
    let hint = "This table accepts each assertion once: have the user step up again.";
    rejection(
        Code::Replayed,
        "step-up assertion already used",
        detail,
        hint,
        log,
    )
}

/// Why a change is not authorised by the assertion's `chg` (SU004).
pub enum Unbound {
    /// The change's digest, which `chg` does not hold.
    Expected(String),
    /// TRUNCATE is no row change.
    Truncate,
    /// The trigger reported no row.
    NoRow,
    /// The change has no digest (a value cannot be canonicalized): why.
    NoDigest(String),
}

/// SU004 change not authorised.
pub fn change_not_authorised(why: Unbound, log: LogFields) -> Rejection {
    let (detail, hint) = match why {
        Unbound::Expected(d) => (format!("expected change digest {d} in chg"), SIGN_CHANGE),
        Unbound::Truncate => (
            "TRUNCATE is not a row change an assertion can bind; DELETE the rows instead".into(),
            SIGN_CHANGE,
        ),
        Unbound::NoRow => ("the trigger reported no row to bind".into(), SIGN_CHANGE),
        Unbound::NoDigest(e) => (
            format!("this change has no digest: {e}"),
            digest::UNREPRESENTABLE_HINT,
        ),
    };
    rejection(
        Code::ChangeNotAuthorised,
        "change not authorised by the step-up assertion",
        detail,
        hint,
        log,
    )
}

/// SU005 audit is append-only: `op` on `stepup.<table>`.
pub fn append_only(table: &str, op: &str) -> Rejection {
    rejection(
        Code::AppendOnly,
        "audit is append-only",
        format!("{op} of stepup.{table} is refused for every role"),
        "Audit entries are never changed; verify them with stepup.verify_audit().",
        LogFields::new(Some(format!("stepup.{table}")), op),
    )
}

/// Why DDL may not weaken a protected table (SU006).
pub enum Tamper<'a> {
    /// The policy binds each row to the subject in `column`: no single
    /// user's assertion stands for every row.
    SubjectBound(&'a str),
    /// The policy binds each change (bind_change).
    ChangeBound,
    /// The role's assertion does not meet the table's requirement.
    Unmet(&'a Requirement<'a>, &'a Unmet),
    /// An inheritance child of a protected table (`object` is the child).
    Inherits { parent: &'a str },
}

/// SU006 protection tamper through `object`.
pub fn tamper(object: &str, why: Tamper<'_>, log: LogFields) -> Rejection {
    const WEAKEN: &str = "protection of a table cannot be weakened without step-up";
    let (message, detail, hint): (&str, String, String) = match why {
        Tamper::SubjectBound(column) => (
            WEAKEN,
            format!("object: {object}; the policy binds each row to its \"{column}\": no single user's assertion can authorise DDL that weakens it"),
            OWNER_ONLY.into(),
        ),
        Tamper::ChangeBound => (
            WEAKEN,
            format!("object: {object}; the policy binds each change to the user's confirmation (bind_change): no single user's assertion can authorise DDL that weakens it"),
            OWNER_ONLY.into(),
        ),
        Tamper::Unmet(req, unmet) => (
            WEAKEN,
            format!("object: {object}; {}; {unmet}", req.challenge()),
            "Present an assertion that meets the table's policy (stepup.policies) in this transaction, or remove the protection with stepup.unprotect.".into(),
        ),
        Tamper::Inherits { parent } => (
            "a protected table cannot have inheritance children",
            format!("object: {object} inherits from {parent}; statements on {parent} would read and write its rows without {parent}'s guard"),
            format!("Create the table without INHERITS; to protect a partitioned design, protect each table with stepup.protect. To give {parent} children, remove its protection first (stepup.unprotect)."),
        ),
    };
    rejection(Code::Tamper, message, detail, &hint, log)
}

/// 22023 for an argument that sits next to an assertion in the statement:
/// raised as a rejection, so the statement stays out of the server log.
pub fn invalid_parameter_beside_assertion(
    message: &str,
    detail: &str,
    hint: &str,
    log: LogFields,
) -> Rejection {
    rejection(
        Code::InvalidParameterValue,
        message,
        detail.into(),
        hint,
        log,
    )
}

fn rejection(code: Code, message: &str, detail: String, hint: &str, log: LogFields) -> Rejection {
    Rejection {
        code,
        message: message.into(),
        detail,
        hint: Some(hint.into()),
        log,
    }
}

/// 22023 invalid parameter value; `hint` says what to pass instead.
pub fn invalid_parameter(message: impl Display, hint: &str) -> ! {
    standard(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message,
        Some(hint),
    )
}

/// 22004 a NULL where a value is required.
pub fn null_argument(message: impl Display, hint: &str) -> ! {
    standard(
        PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
        message,
        Some(hint),
    )
}

/// 42P01 no such relation.
pub fn undefined_table(message: impl Display, hint: &str) -> ! {
    standard(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, message, Some(hint))
}

/// 23505 the name is taken.
pub fn duplicate(message: impl Display, hint: &str) -> ! {
    standard(
        PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
        message,
        Some(hint),
    )
}

/// 0A000 not supported.
pub fn not_supported(message: impl Display, hint: &str) -> ! {
    standard(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        message,
        Some(hint),
    )
}

/// 54000 a value past Postgres' limits.
pub fn program_limit(message: impl Display, hint: Option<&str>) -> ! {
    standard(
        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        message,
        hint,
    )
}

/// 53200 out of memory.
pub fn out_of_memory(message: impl Display) -> ! {
    standard(PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY, message, None)
}

/// XX000: something the extension relies on failed or is missing.
pub fn internal(message: impl Display, hint: &str) -> ! {
    standard(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, message, Some(hint))
}

/// Reported through pgrx, which carries standard SQLSTATEs (not SU00x).
fn standard(code: PgSqlErrorCode, message: impl Display, hint: Option<&str>) -> ! {
    let mut report = pgrx::pg_sys::panic::ErrorReport::new(code, message.to_string(), "pg_stepup");
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(pgrx::PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
