//! An issuer's profile (DESIGN section 3, `stepup.define_issuer`): where
//! its tokens carry the assurance level, what its level values mean in
//! `stepup.levels`, which audience its tokens name and which header `typ`
//! it uses. Keys of an issuer without a profile follow section 2's
//! defaults: `acr` and `auth_time` required, `stepup.audience`, any typ.

/// The claim that carries an issuer's assurance level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LevelClaim {
    /// One string (OpenID Connect; Keycloak, Okta, Auth0).
    #[default]
    Acr,
    /// An array of satisfied authentication contexts (Entra ID): the
    /// best-ranked member that names a level counts.
    Acrs,
    /// One string (Supabase's `aal`).
    Aal,
}

impl LevelClaim {
    pub fn parse(name: &str) -> Option<LevelClaim> {
        match name {
            "acr" => Some(LevelClaim::Acr),
            "acrs" => Some(LevelClaim::Acrs),
            "aal" => Some(LevelClaim::Aal),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LevelClaim::Acr => "acr",
            LevelClaim::Acrs => "acrs",
            LevelClaim::Aal => "aal",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The issuer named by `define_issuer`; None for keys without one
    /// (section 2's defaults).
    pub issuer: Option<String>,
    /// Replaces `stepup.audience` for this issuer's tokens.
    pub audience: Option<String>,
    /// The issuer's level values and the `stepup.levels` names they mean.
    /// None: the values are level names themselves.
    pub levels: Option<Vec<(String, String)>>,
    pub level_claim: LevelClaim,
    /// Header `typ` values accepted, normalised by [`normalize_typ`]; None:
    /// any (or none).
    pub accepted_types: Option<Vec<String>>,
}

impl Profile {
    /// Whether `define_issuer` described this issuer: then freshness may
    /// come from timestamped `amr` and a token without any never satisfies
    /// a `max_age`; without a profile `auth_time` is required.
    pub fn defined(&self) -> bool {
        self.issuer.is_some()
    }

    /// The `stepup.levels` name an issuer's value means, if any.
    pub fn level_of<'a>(&'a self, value: &'a str) -> Option<&'a str> {
        match &self.levels {
            None => Some(value),
            Some(map) => map
                .iter()
                .find(|(from, _)| from == value)
                .map(|(_, to)| to.as_str()),
        }
    }

    /// RFC 8725 3.11 explicit typing: with accepted types pinned, a token
    /// must carry one of them.
    pub fn accepts_type(&self, typ: Option<&str>) -> bool {
        match &self.accepted_types {
            None => true,
            Some(list) => typ.is_some_and(|t| list.contains(&normalize_typ(t))),
        }
    }
}

/// RFC 7515 4.1.9: `typ` is compared case-insensitively and the
/// `application/` prefix may be left out (`at+jwt` = `application/AT+JWT`).
pub fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) if !rest.contains('/') => rest.to_string(),
        _ => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_compare_as_rfc7515_says() {
        assert_eq!(normalize_typ("application/AT+JWT"), "at+jwt");
        assert_eq!(normalize_typ("at+jwt"), "at+jwt");
        assert_eq!(normalize_typ("JWT"), "jwt");
        let p = Profile {
            issuer: Some("https://idp".into()),
            accepted_types: Some(vec!["at+jwt".into()]),
            ..Profile::default()
        };
        assert!(p.accepts_type(Some("application/at+jwt")));
        assert!(p.accepts_type(Some("AT+JWT")));
        assert!(!p.accepts_type(Some("JWT")));
        assert!(!p.accepts_type(None));
        assert!(Profile::default().accepts_type(None));
    }

    #[test]
    fn levels_map_or_pass_through() {
        let p = Profile {
            levels: Some(vec![("2".into(), "aal2".into())]),
            ..Profile::default()
        };
        assert_eq!(p.level_of("2"), Some("aal2"));
        assert_eq!(p.level_of("aal2"), None);
        assert_eq!(Profile::default().level_of("aal2"), Some("aal2"));
        assert_eq!(LevelClaim::parse("acrs"), Some(LevelClaim::Acrs));
        assert_eq!(LevelClaim::parse("ACR"), None);
    }
}
