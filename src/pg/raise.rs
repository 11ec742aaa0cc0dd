//! How the contract's SU00x errors are raised (what they say is
//! reject.rs).
//!
//! pgrx's error path maps any SQLSTATE it does not know to XX000, so SU001
//! cannot travel through it. We bind `errstart`/`errfinish` ourselves and
//! call them from the edge of a SQL-callable function, after every Rust value
//! that owns memory has been dropped: `errfinish` longjmps straight back into
//! Postgres and runs no destructors.

use pgrx::pg_sys;
use std::ffi::{c_char, c_int, CString};

/// The contract's SQLSTATEs (DESIGN section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    StepUpRequired,
    InvalidAssertion,
    Replayed,
    ChangeNotAuthorised,
    AppendOnly,
    Tamper,
    /// 22023, for arguments that sit next to an assertion in the statement:
    /// raised here so the statement (and the assertion) stays out of the log.
    InvalidParameterValue,
}

impl Code {
    pub fn sqlstate(self) -> &'static str {
        match self {
            Code::StepUpRequired => "SU001",
            Code::InvalidAssertion => "SU002",
            Code::Replayed => "SU003",
            Code::ChangeNotAuthorised => "SU004",
            Code::AppendOnly => "SU005",
            Code::Tamper => "SU006",
            Code::InvalidParameterValue => "22023",
        }
    }
}

/// A rejection on its way to the client: message, detail, hint, and what
/// the server log line says about who was refused.
/// Built only by the constructors in reject.rs.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub(super) code: Code,
    pub(super) message: String,
    pub(super) detail: String,
    pub(super) hint: Option<String>,
    pub(super) log: LogFields,
}

/// The fields of the LOG line every rejection writes (DESIGN section 6).
#[derive(Debug, Clone, Default)]
pub struct LogFields {
    pub table: Option<String>,
    pub operation: String,
    pub sub: Option<String>,
    pub jti: Option<String>,
}

impl LogFields {
    /// Who was refused is not known (no assertion is read).
    pub fn new(table: Option<String>, operation: &str) -> Self {
        LogFields {
            table,
            operation: operation.into(),
            ..LogFields::default()
        }
    }
}

/// MAKE_SQLSTATE from elog.h: six bits per character.
pub const fn make_sqlstate(s: &[u8; 5]) -> c_int {
    let mut code = 0;
    let mut i = 0;
    while i < 5 {
        code += ((s[i].wrapping_sub(b'0') & 0x3F) as c_int) << (6 * i);
        i += 1;
    }
    code
}

// Postgres' elog.h levels, as this version's headers define them (pgrx
// names ERROR PGERROR).
const LOG: c_int = pg_sys::LOG as c_int;
const ERROR: c_int = pg_sys::PGERROR as c_int;

// Not in pgrx's bindings (pgrx raises through its own ereport): checked
// against each version's headers by scripts/declarations.sh.
unsafe extern "C-unwind" {
    fn errstart(elevel: c_int, domain: *const c_char) -> bool;
    fn errcode(sqlerrcode: c_int) -> c_int;
    fn errmsg(fmt: *const c_char, ...) -> c_int;
    fn errdetail(fmt: *const c_char, ...) -> c_int;
    fn errhint(fmt: *const c_char, ...) -> c_int;
    fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
}

super::unguarded! {
    fn errhidestmt(hide_stmt: bool) -> c_int;
    fn GetUserNameFromId(roleid: pg_sys::Oid, noerr: bool) -> *mut c_char;
    fn GetUserId() -> pg_sys::Oid;
}

/// Writes the LOG line and raises the ERROR. Never returns.
///
/// Call it last, with nothing else alive in the calling frame that owns
/// memory: the longjmp skips every destructor above it.
pub fn raise(rejection: Rejection) -> ! {
    log_line(&rejection);
    let code = make_sqlstate(sqlstate_bytes(rejection.code));
    let message = cstring(&rejection.message);
    let detail = cstring(&rejection.detail);
    let hint = rejection.hint.as_deref().map(cstring);
    drop(rejection);
    unsafe {
        // errstart always returns true for ERROR.
        errstart(ERROR, std::ptr::null());
        errcode(code);
        errmsg(c"%s".as_ptr(), message.as_ptr());
        errdetail(c"%s".as_ptr(), detail.as_ptr());
        if let Some(h) = &hint {
            errhint(c"%s".as_ptr(), h.as_ptr());
        }
        // The statement may carry the assertion; keep it out of the server
        // log. The LOG line above says what was refused.
        errhidestmt(true);
    }
    // errmsg and friends copied the text into ErrorContext; free ours now.
    drop(message);
    drop(detail);
    drop(hint);
    unsafe {
        errfinish(
            c"raise.rs".as_ptr(),
            line!() as c_int,
            c"pg_stepup".as_ptr(),
        );
    }
    unreachable!("errfinish(ERROR) does not return")
}

fn log_line(r: &Rejection) {
    let role = current_role();
    let f = &r.log;
    let line = format!(
        "pg_stepup: rejected {} table={} op={} role={} sub={} jti={} reason={}",
        r.code.sqlstate(),
        f.table.as_deref().unwrap_or("-"),
        f.operation,
        role,
        f.sub.as_deref().map(one_line).unwrap_or_else(|| "-".into()),
        f.jti.as_deref().map(one_line).unwrap_or_else(|| "-".into()),
        one_line(&r.detail),
    );
    let line = cstring(&line);
    unsafe {
        if errstart(LOG, std::ptr::null()) {
            errcode(make_sqlstate(sqlstate_bytes(r.code)));
            errmsg(c"%s".as_ptr(), line.as_ptr());
            errhidestmt(true);
            errfinish(
                c"raise.rs".as_ptr(),
                line!() as c_int,
                c"pg_stepup".as_ptr(),
            );
        }
    }
}

fn current_role() -> String {
    unsafe {
        let p = GetUserNameFromId(GetUserId(), true);
        if p.is_null() {
            "-".into()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

fn sqlstate_bytes(code: Code) -> &'static [u8; 5] {
    code.sqlstate().as_bytes().try_into().unwrap_or(b"XX000")
}

/// Untrusted text may hold NULs or newlines; neither may reach the log.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_encoding_matches_elog_h() {
        // ERRCODE_UNIQUE_VIOLATION is MAKE_SQLSTATE('2','3','5','0','5') = 23505.
        assert_eq!(make_sqlstate(b"23505"), 2 | 3 << 6 | 5 << 12 | 5 << 24);
        // 'S' - '0' = 35, 'U' - '0' = 37.
        assert_eq!(make_sqlstate(b"SU001"), 35 | 37 << 6 | 1 << 24);
        for c in [
            Code::StepUpRequired,
            Code::InvalidAssertion,
            Code::Replayed,
            Code::ChangeNotAuthorised,
            Code::AppendOnly,
            Code::Tamper,
        ] {
            assert_eq!(sqlstate_bytes(c), c.sqlstate().as_bytes());
        }
    }
}
