//! In-database tests (`cargo pgrx test`). Each runs inside one transaction,
//! so transaction boundaries are covered by the integration tests in
//! tests/ (real clients); these cover the SQL surface, SQLSTATEs, the key
//! cache and savepoint behaviour.

#[pgrx::pg_schema]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use pgrx::prelude::*;
    use serde_json::json;
    use sha2::Sha256;

    const SECRET_HEX: &str = "4242424242424242424242424242424242424242424242424242424242424242";

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }

    /// An HS256 assertion for the test database, as an IdP would mint it.
    fn mint(kid: &str, acr: &str, jti: &str, auth_age: i64) -> String {
        let db = Spi::get_one::<String>("SELECT current_database()::text")
            .unwrap()
            .unwrap();
        let n = now();
        let header = json!({"alg": "HS256", "kid": kid, "typ": "JWT"});
        let claims = json!({
            "sub": "alice", "aud": db, "iat": n, "exp": n + 300, "auth_time": n - auth_age,
            "acr": acr, "amr": ["otp"], "jti": jti,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&hex::decode(SECRET_HEX).unwrap()).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn setup() {
        Spi::run(&format!("SELECT stepup.add_key('k1', '\\x{SECRET_HEX}')")).unwrap();
        // Runs a statement; returns its SQLSTATE and DETAIL, or NULL.
        Spi::run(
            "CREATE FUNCTION tests.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
             DECLARE s text; d text;
             BEGIN
                 EXECUTE q;
                 RETURN NULL;
             EXCEPTION WHEN OTHERS THEN
                 GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, d = PG_EXCEPTION_DETAIL;
                 RETURN s || ': ' || d;
             END $$",
        )
        .unwrap();
    }

    fn sqlstate_of(sql: &str) -> Option<String> {
        Spi::get_one_with_args::<String>("SELECT tests.sqlstate_of($1)", &[sql.into()]).unwrap()
    }

    fn one<T: IntoDatum + FromDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).unwrap()
    }

    #[pg_test]
    fn present_holds_and_returns_claims() {
        setup();
        let t = mint("k1", "aal2", "j-1", 5);
        let jti = one::<String>(&format!("SELECT stepup.present('{t}')->>'jti'"));
        assert_eq!(jti.as_deref(), Some("j-1"));
        assert_eq!(
            one::<String>("SELECT stepup.current()->>'sub'").as_deref(),
            Some("alice")
        );
        assert_eq!(
            one::<bool>("SELECT stepup.satisfied('aal2', '5 minutes')"),
            Some(true)
        );
        assert_eq!(
            one::<bool>("SELECT stepup.satisfied('aal3', '5 minutes')"),
            Some(false)
        );
        assert_eq!(
            one::<bool>("SELECT stepup.satisfied('aal1', '1 second')"),
            Some(false)
        );
        assert_eq!(
            one::<bool>("SELECT stepup.require('aal2', '5 minutes')"),
            Some(true)
        );
        Spi::run("SELECT stepup.clear()").unwrap();
        assert_eq!(one::<bool>("SELECT stepup.current() IS NULL"), Some(true));
    }

    #[pg_test]
    fn rejections_carry_contract_sqlstates() {
        setup();
        let t = mint("k1", "aal2", "j-2", 5);
        // One signature character changed, staying canonical base64url.
        let i = t.len() - 10;
        let swapped = if &t[i..=i] == "A" { "B" } else { "A" };
        let forged = format!("{}{swapped}{}", &t[..i], &t[i + 1..]);
        assert_eq!(
            sqlstate_of(&format!("SELECT stepup.present('{forged}')")).as_deref(),
            Some("SU002: signature does not verify")
        );
        let unknown = mint("nope", "aal2", "j-3", 5);
        assert_eq!(
            sqlstate_of(&format!("SELECT stepup.present('{unknown}')")).as_deref(),
            Some("SU002: unknown kid \"nope\"")
        );
        let gold = mint("k1", "gold", "j-4", 5);
        assert_eq!(
            sqlstate_of(&format!("SELECT stepup.present('{gold}')")).as_deref(),
            Some("SU002: acr \"gold\" is not a level in stepup.levels")
        );
        assert_eq!(
            sqlstate_of("SELECT stepup.require('aal2', '5 minutes')").as_deref(),
            Some("SU001: insufficient_user_authentication acr_values=\"aal2\" max_age=300; no step-up assertion is held")
        );
        assert_eq!(
            sqlstate_of("SELECT stepup.satisfied('aal9', '5 minutes')")
                .map(|s| s[..5].to_string())
                .as_deref(),
            Some("22023")
        );
        assert_eq!(
            sqlstate_of("SELECT stepup.present('x', 'forever')")
                .map(|s| s[..5].to_string())
                .as_deref(),
            Some("22023")
        );
    }

    #[pg_test]
    fn key_registry_rules_and_cache() {
        setup();
        for (sql, state) in [
            ("SELECT stepup.add_key('short', '\\x00')", "22023"),
            ("SELECT stepup.add_key('ed', '\\x00', 'EdDSA')", "22023"),
            (
                "SELECT stepup.add_key('rs', decode(repeat('00', 32), 'hex'), 'RS256')",
                "22023",
            ),
            (
                "SELECT stepup.add_key('', decode(repeat('00', 32), 'hex'))",
                "22023",
            ),
            (
                "SELECT stepup.add_key('k1', decode(repeat('00', 32), 'hex'))",
                "23505",
            ),
            ("SELECT stepup.retire_key('missing')", "42704"),
        ] {
            let got = sqlstate_of(sql).unwrap_or_default();
            assert_eq!(&got[..5.min(got.len())], state, "{sql}: {got}");
        }
        // One transaction: now() does not move, so "retired" shows as a
        // not_after set, not yet as key_info's status.
        assert_eq!(
            one::<String>("SELECT string_agg(kid || ':' || status || ':' || length(fingerprint), ',') FROM stepup.key_info")
                .as_deref(),
            Some("k1:active:64")
        );
        // Cached key, then retired in the same transaction: the statement
        // trigger's invalidation reaches this backend at the next command.
        let t = mint("k1", "aal2", "j-5", 5);
        assert!(sqlstate_of(&format!("SELECT stepup.present('{t}')")).is_none());
        Spi::run("SELECT stepup.retire_key('k1')").unwrap();
        assert_eq!(
            sqlstate_of(&format!("SELECT stepup.present('{t}')")).as_deref(),
            Some("SU002: key \"k1\" is retired")
        );
        // A new level is usable at once.
        Spi::run("SELECT stepup.define_level('gold', 5)").unwrap();
        assert_eq!(
            one::<bool>("SELECT stepup.satisfied('gold', '1 minute')"),
            Some(false)
        );
    }

    #[pg_test]
    fn failed_present_in_a_savepoint_restores_the_earlier_assertion() {
        setup();
        let first = mint("k1", "aal2", "first", 5);
        Spi::run(&format!("SELECT stepup.present('{first}')")).unwrap();
        // plpgsql's exception block is a subtransaction: the second present
        // succeeds, then the block fails and rolls back to before it.
        let second = mint("k1", "aal3", "second", 5);
        let state = sqlstate_of(&format!(
            "DO $$ BEGIN PERFORM stepup.present('{second}'); RAISE EXCEPTION 'boom' USING ERRCODE = 'P0001'; END $$"
        ));
        assert_eq!(state.as_deref().map(|s| &s[..5]), Some("P0001"));
        assert_eq!(
            one::<String>("SELECT stepup.current()->>'jti'").as_deref(),
            Some("first")
        );
        // A committed subtransaction keeps its change.
        assert!(sqlstate_of(&format!("SELECT stepup.present('{second}')")).is_none());
        assert_eq!(
            one::<String>("SELECT stepup.current()->>'jti'").as_deref(),
            Some("second")
        );
    }

    #[pg_test]
    fn freshness_uses_auth_time() {
        setup();
        let stale = mint("k1", "aal3", "stale", 200);
        Spi::run(&format!("SELECT stepup.present('{stale}')")).unwrap();
        assert_eq!(
            one::<bool>("SELECT stepup.satisfied('aal3', '5 minutes')"),
            Some(true)
        );
        assert_eq!(
            one::<bool>("SELECT stepup.satisfied('aal3', '2 minutes')"),
            Some(false)
        );
        assert_eq!(
            one::<bool>("SELECT stepup.satisfied('aal1', '5 minutes', '{hwk}')"),
            Some(false)
        );
        assert_eq!(
            one::<bool>("SELECT stepup.satisfied('aal1', '5 minutes', '{hwk,otp}')"),
            Some(true)
        );
        let state =
            sqlstate_of("SELECT stepup.require('aal3', '2 minutes', '{otp}')").unwrap_or_default();
        assert!(
            state.starts_with(
                "SU001: insufficient_user_authentication acr_values=\"aal3\" max_age=120"
            ),
            "{state}"
        );
    }

    #[pg_test]
    fn guard_refuses_then_allows_a_stepped_up_update() {
        setup();
        Spi::run(
            "CREATE TABLE tests.payouts (id int PRIMARY KEY, owner text, iban text);
             INSERT INTO tests.payouts VALUES (1, 'alice', 'DE1'), (2, 'bob', 'DE2');
             SELECT stepup.protect('tests.payouts', columns => '{iban}', subject_column => 'owner')",
        )
        .unwrap();
        let state = sqlstate_of("UPDATE tests.payouts SET iban = 'X' WHERE id = 1");
        assert!(
            state.as_deref().unwrap_or_default().starts_with("SU001: "),
            "{state:?}"
        );
        // Not a protected column: no step-up needed.
        assert_eq!(sqlstate_of("UPDATE tests.payouts SET owner = owner"), None);
        let t = mint("k1", "aal2", "g-1", 5);
        Spi::run(&format!("SELECT stepup.present('{t}')")).unwrap();
        assert_eq!(
            sqlstate_of("UPDATE tests.payouts SET iban = 'X' WHERE id = 1"),
            None
        );
        let wrong = sqlstate_of("UPDATE tests.payouts SET iban = 'X' WHERE id = 2");
        assert!(
            wrong
                .as_deref()
                .unwrap_or_default()
                .ends_with("the assertion's sub is not the row's \"owner\""),
            "{wrong:?}"
        );
        let tamper = sqlstate_of("ALTER TABLE tests.payouts DISABLE TRIGGER stepup_guard");
        // The test runs as a superuser: the documented exception for DDL.
        assert_eq!(tamper, None);
        assert_eq!(
            one::<String>("SELECT iban FROM tests.payouts WHERE id = 1").as_deref(),
            Some("X")
        );
    }

    /// The RFC 8037 A.2 Ed25519 public key and the RFC 7515 A.3 P-256 key, as JWKs.
    const ED_JWK: &str = r#"{"kty": "OKP", "crv": "Ed25519", "kid": "ed-a", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    const EC_JWK: &str = r#"{"kty": "EC", "crv": "P-256", "kid": "ec-b", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    fn jwks(issuer: &str, keys: &[&str]) -> Vec<String> {
        let doc = format!(r#"{{"keys": [{}]}}"#, keys.join(", "));
        // connect_mut and update: add_jwks writes, so not a read-only SPI call.
        Spi::connect_mut(|c| {
            c.update(
                "SELECT kid || ' ' || alg || ' ' || action FROM stepup.add_jwks($1, $2::jsonb)",
                None,
                &[issuer.into(), doc.as_str().into()],
            )
            .unwrap()
            .map(|row| row.get::<String>(1).unwrap().unwrap())
            .collect()
        })
    }

    #[pg_test]
    fn add_jwks_adds_keeps_retires_and_refuses() {
        let iss = "https://idp.example";
        assert_eq!(jwks(iss, &[ED_JWK]), ["ed-a EdDSA added"]);
        assert_eq!(jwks(iss, &[ED_JWK]), ["ed-a EdDSA kept"]);
        assert_eq!(
            jwks(iss, &[EC_JWK]),
            ["ec-b ES256 added", "ed-a EdDSA retired"]
        );
        // One transaction: now() does not move, so a retired key shows as
        // not_after set, not yet as key_info's status.
        assert_eq!(
            one::<String>("SELECT string_agg(kid || ':' || source || ':' || (not_after IS NOT NULL), ',' ORDER BY kid) FROM stepup.key_info")
                .as_deref(),
            Some("ec-b:jwks:false,ed-a:jwks:true")
        );
        // The same kid with other material, or from another issuer: refused.
        let other = EC_JWK.replace("ec-b", "ed-a");
        assert_eq!(
            jwks(iss, &[EC_JWK, &other])[1].split(':').next(),
            Some("ed-a ES256 refused")
        );
        assert_eq!(
            jwks("https://other.example", &[EC_JWK])[0]
                .split(':')
                .next(),
            Some("ec-b ES256 refused")
        );
        // A document with nothing usable changes nothing.
        setup();
        let none = r#"SELECT * FROM stepup.add_jwks('https://idp.example', '{"keys": [{"kty": "oct", "k": "AA", "kid": "s"}]}')"#;
        assert!(sqlstate_of(none).is_some_and(|e| e.starts_with("22023")));
        assert_eq!(
            one::<String>("SELECT status FROM stepup.key_info WHERE kid = 'ec-b'").as_deref(),
            Some("active")
        );
    }

    #[pg_test]
    fn define_issuer_maps_levels_and_checks_its_arguments() {
        setup();
        Spi::run(&format!(
            "SELECT stepup.add_key('k-iss', '\\x{SECRET_HEX}', 'HS256', 'https://idp.example')"
        ))
        .unwrap();
        Spi::run(
            r#"SELECT stepup.define_issuer('https://idp.example', levels => '{"1": "aal1", "2": "aal2"}')"#,
        )
        .unwrap();
        let db = one::<String>("SELECT current_database()::text").unwrap();
        let n = now();
        let header = json!({"alg": "HS256", "kid": "k-iss"});
        let claims = json!({
            "sub": "alice", "aud": db, "iss": "https://idp.example", "iat": n, "exp": n + 300,
            "auth_time": n - 5, "acr": "2",
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&hex::decode(SECRET_HEX).unwrap()).unwrap();
        mac.update(input.as_bytes());
        let t = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        Spi::run(&format!("SELECT stepup.present('{t}')")).unwrap();
        assert_eq!(
            one::<bool>("SELECT stepup.satisfied('aal2', '1 minute')"),
            Some(true)
        );
        for bad in [
            "SELECT stepup.define_issuer('https://idp.example', level_claim => 'amr')",
            r#"SELECT stepup.define_issuer('https://idp.example', levels => '{"2": "gold"}')"#,
            "SELECT stepup.define_issuer('')",
        ] {
            assert!(
                sqlstate_of(bad).is_some_and(|e| e.starts_with("22023")),
                "{bad}"
            );
        }
        // An RSA key must be a DER SubjectPublicKeyInfo of 2048 bits or more.
        let short = format!("SELECT stepup.add_key('rs', '\\x{SECRET_HEX}', 'RS256')");
        assert!(sqlstate_of(&short).is_some_and(|e| e.starts_with("22023")));
    }

    fn strings(sql: &str) -> Vec<String> {
        Spi::connect(|c| {
            c.select(sql, None, &[])
                .unwrap()
                .map(|row| row.get::<String>(1).unwrap().unwrap())
                .collect()
        })
    }

    /// The one description of an entry (stepup_core's LOG_COLUMNS) is
    /// stepup.audit_log as sql/audit.sql creates it, column for column, and
    /// stepup.entry_fields takes the hashed fields in the same order.
    #[pg_test]
    fn audit_log_is_the_entry_description() {
        use stepup_core::audit::encoding::{ENTRY_FIELDS, HASHED, LOG_COLUMNS};
        let described: Vec<String> = LOG_COLUMNS
            .iter()
            .map(|(name, t)| format!("{name} {}", t.sql_name()))
            .collect();
        let table = strings(
            "SELECT attname || ' ' || pg_catalog.format_type(atttypid, atttypmod) \
               FROM pg_catalog.pg_attribute \
              WHERE attrelid = 'stepup.audit_log'::regclass AND attnum > 0 AND NOT attisdropped \
              ORDER BY attnum",
        );
        assert_eq!(table, described);
        let arguments = strings(
            "SELECT n || ' ' || pg_catalog.format_type(t, NULL) \
               FROM pg_catalog.pg_proc p, \
                    unnest(p.proargnames, p.proargtypes::oid[]) WITH ORDINALITY AS a(n, t, i) \
              WHERE p.oid = 'stepup.entry_fields'::regproc ORDER BY i",
        );
        assert_eq!(arguments, described[..HASHED]);
        assert_eq!(ENTRY_FIELDS.len(), HASHED);
        // Each column's Oid as the writer declares it is the table's.
        for (i, (name, _)) in LOG_COLUMNS.iter().enumerate() {
            let oid = Spi::get_one::<pg_sys::Oid>(&format!(
                "SELECT atttypid FROM pg_catalog.pg_attribute \
                  WHERE attrelid = 'stepup.audit_log'::regclass AND attname = '{name}'"
            ))
            .unwrap()
            .unwrap();
            assert_eq!(oid, crate::audit::column_type(i), "{name}");
        }
    }
}
