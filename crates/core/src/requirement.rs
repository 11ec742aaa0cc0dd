//! Pure: does a held assertion meet a requirement (level, freshness,
//! methods) at a given instant? Shared by `stepup.satisfied`,
//! `stepup.require` and, later, the guard trigger.

use std::fmt;

use crate::token::Claims;

#[derive(Debug, Clone)]
pub struct Requirement<'a> {
    pub level: &'a str,
    pub rank: i32,
    /// Longest time since `auth_time`, microseconds.
    pub max_age_us: i64,
    /// `amr` must contain one of these; empty means any method.
    pub methods: &'a [String],
}

/// Why a requirement is not met; the text goes into the SU001 DETAIL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    NoAssertion,
    Expired,
    LevelTooLow {
        held: String,
    },
    TooOld {
        age_s: i64,
    },
    /// Neither `auth_time` nor a timestamped `amr`: the assertion does not
    /// say when the user authenticated, so no max_age can be met.
    Unfresh,
    MethodNotAccepted {
        held: Vec<String>,
    },
    /// The row's `subject_column` is not the assertion's `sub`.
    WrongSubject {
        column: String,
    },
    /// TRUNCATE of a table whose rows each belong to one subject.
    WholeTable {
        column: String,
    },
    /// The key that signed the held assertion was retired (or is unknown)
    /// since it was presented.
    KeyRetired {
        kid: String,
    },
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmet::NoAssertion => write!(f, "no step-up assertion is held"),
            Unmet::Expired => write!(f, "the held assertion has expired"),
            Unmet::LevelTooLow { held } => {
                write!(f, "held acr \"{held}\" ranks below the level required")
            }
            Unmet::TooOld { age_s } => write!(
                f,
                "the user authenticated {age_s} s ago, longer than max_age"
            ),
            Unmet::Unfresh => write!(
                f,
                "the assertion does not say when the user authenticated (no auth_time, no timestamped amr), so it satisfies no max_age"
            ),
            Unmet::MethodNotAccepted { held } if held.is_empty() => {
                write!(f, "the assertion names no authentication method (amr)")
            }
            Unmet::MethodNotAccepted { held } => {
                write!(
                    f,
                    "amr [{}] holds none of the methods accepted",
                    held.join(", ")
                )
            }
            Unmet::WrongSubject { column } => {
                write!(f, "the assertion's sub is not the row's \"{column}\"")
            }
            Unmet::WholeTable { column } => write!(
                f,
                "TRUNCATE removes rows of every \"{column}\"; delete one subject's rows instead"
            ),
            Unmet::KeyRetired { kid } => write!(
                f,
                "the key \"{kid}\" that signed the held assertion was retired or removed"
            ),
        }
    }
}

impl Requirement<'_> {
    /// RFC 9470 challenge for the SU001 DETAIL.
    pub fn challenge(&self) -> String {
        let max_age_s = self.max_age_us.div_euclid(1_000_000);
        let mut c = format!(
            "insufficient_user_authentication acr_values=\"{}\" max_age={max_age_s}",
            self.level
        );
        if !self.methods.is_empty() {
            c.push_str(&format!(" amr_values=\"{}\"", self.methods.join(" ")));
        }
        c
    }

    /// `held_rank` is the rank of the held `acr` (None if that level has
    /// since been removed, which fails closed).
    pub fn check(
        &self,
        held: Option<&Claims>,
        held_rank: Option<i32>,
        now_us: i64,
        leeway_s: i64,
    ) -> Result<(), Unmet> {
        let claims = held.ok_or(Unmet::NoAssertion)?;
        let now_s = now_us.div_euclid(1_000_000);
        if now_s >= claims.exp.saturating_add(leeway_s) {
            return Err(Unmet::Expired);
        }
        if held_rank.is_none_or(|r| r < self.rank) {
            return Err(Unmet::LevelTooLow {
                held: claims.acr.clone(),
            });
        }
        let auth_time = claims.auth_time.ok_or(Unmet::Unfresh)?;
        let age_us = now_us.saturating_sub(auth_time.saturating_mul(1_000_000));
        if age_us > self.max_age_us {
            return Err(Unmet::TooOld {
                age_s: age_us.div_euclid(1_000_000),
            });
        }
        if !self.methods.is_empty() && !claims.amr.iter().any(|m| self.methods.contains(m)) {
            return Err(Unmet::MethodNotAccepted {
                held: claims.amr.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims {
            kid: "k".into(),
            sub: "alice".into(),
            acr: "aal2".into(),
            amr: vec!["otp".into()],
            jti: Some("j".into()),
            replay_id: "j".into(),
            iss: None,
            iat: NOW - 60,
            exp: NOW + 240,
            nbf: None,
            auth_time: Some(NOW - 60),
            chg: vec![],
            raw: Default::default(),
        }
    }

    fn req(rank: i32, max_age_s: i64, methods: &[String]) -> Requirement<'_> {
        Requirement {
            level: "aalX",
            rank,
            max_age_us: max_age_s * 1_000_000,
            methods,
        }
    }

    #[test]
    fn met_and_each_way_unmet() {
        let c = claims();
        let now = NOW * 1_000_000;
        assert_eq!(req(2, 300, &[]).check(Some(&c), Some(2), now, 30), Ok(()));
        assert_eq!(
            req(2, 300, &[]).check(None, None, now, 30),
            Err(Unmet::NoAssertion)
        );
        assert_eq!(
            req(3, 300, &[]).check(Some(&c), Some(2), now, 30),
            Err(Unmet::LevelTooLow {
                held: "aal2".into()
            })
        );
        assert_eq!(
            req(1, 300, &[]).check(Some(&c), None, now, 30),
            Err(Unmet::LevelTooLow {
                held: "aal2".into()
            })
        );
        assert_eq!(
            req(2, 59, &[]).check(Some(&c), Some(2), now, 30),
            Err(Unmet::TooOld { age_s: 60 })
        );
        let late = (NOW + 270) * 1_000_000;
        assert_eq!(
            req(2, 3600, &[]).check(Some(&c), Some(2), late, 30),
            Err(Unmet::Expired)
        );
        let hwk = vec!["hwk".to_string(), "fpt".to_string()];
        assert_eq!(
            req(2, 300, &hwk).check(Some(&c), Some(2), now, 30),
            Err(Unmet::MethodNotAccepted {
                held: vec!["otp".into()]
            })
        );
        let otp = vec!["otp".to_string()];
        assert_eq!(req(2, 300, &otp).check(Some(&c), Some(2), now, 30), Ok(()));
        let unfresh = Claims {
            auth_time: None,
            ..claims()
        };
        assert_eq!(
            req(2, 3600, &[]).check(Some(&unfresh), Some(2), now, 30),
            Err(Unmet::Unfresh)
        );
    }

    #[test]
    fn challenge_is_rfc9470_shaped() {
        let r = Requirement {
            level: "aal2",
            rank: 2,
            max_age_us: 300_000_000,
            methods: &[],
        };
        assert_eq!(
            r.challenge(),
            "insufficient_user_authentication acr_values=\"aal2\" max_age=300"
        );
        let m = vec!["hwk".to_string()];
        let r = Requirement { methods: &m, ..r };
        assert!(r.challenge().ends_with("amr_values=\"hwk\""));
    }
}
