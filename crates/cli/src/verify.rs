//! `stepup verify`: an exported audit log and chain, checked offline with
//! the extension's own encodings and chain walk (stepup-core), giving the
//! verdicts `stepup.verify_audit()` gives.

use std::path::PathBuf;

use stepup_core::audit::chain::{self, Bad, Head, Walk};
use stepup_core::audit::export::utc_instant_us;

use crate::tables::{self, InputError, Link, Log};

pub struct Options {
    pub log: PathBuf,
    pub chain: PathBuf,
    pub digest: Option<PathBuf>,
}

/// What the export shows.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok {
        /// Entries the chain links, all verified.
        entries: i64,
        /// Entries of the log no link covers yet (their hashes verified).
        unsealed: usize,
        /// With a digest: its head's seq, found in the chain.
        head: Option<i64>,
    },
    Tampered {
        /// Entries verified before the bad one.
        entries: i64,
        bad: Bad,
    },
}

impl Verdict {
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Ok { .. } => 0,
            Verdict::Tampered { .. } => 1,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Ok {
                entries,
                unsealed,
                head,
            } => {
                write!(f, "ok {entries} entries")?;
                if *unsealed > 0 {
                    write!(
                        f,
                        ", {unsealed} not yet sealed (their hashes verify; no link covers them yet)"
                    )?;
                }
                if let Some(seq) = head {
                    write!(f, "; the saved digest's head (link {seq}) is in the chain")?;
                }
                Ok(())
            }
            Verdict::Tampered { entries, bad } => write!(
                f,
                "bad entry {} after {entries} good entries: {}",
                bad.entry_id, bad.reason
            ),
        }
    }
}

/// Runs the command: prints the verdict, returns the exit status.
pub fn main(opts: &Options) -> i32 {
    match run(opts) {
        Ok(v) => {
            println!("{v}");
            v.exit_code()
        }
        Err(e) => {
            eprintln!("stepup verify: {e}");
            2
        }
    }
}

pub fn run(opts: &Options) -> Result<Verdict, InputError> {
    // The digest first: the cheapest input to get wrong.
    let head = opts.digest.as_deref().map(read_head).transpose()?;
    let (log, links) = std::thread::scope(|s| {
        // Two files, two cores: the chain reads while the log hashes.
        let chain = s.spawn(|| tables::read_chain(&opts.chain));
        let log = tables::read_log(&opts.log);
        let links = chain.join().unwrap_or_else(|_| {
            Err(InputError::Open {
                path: opts.chain.clone(),
                error: std::io::Error::other("its reader stopped"),
            })
        });
        (log, links)
    });
    Ok(verify(log?, links?, head.as_ref()))
}

fn read_head(path: &std::path::Path) -> Result<Head, InputError> {
    let bad = |reason: String| InputError::Digest {
        path: path.to_path_buf(),
        reason,
    };
    let text = tables::read_small(path)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("digest cannot be read: {e}")))?;
    Head::from_json(&value).map_err(|e| {
        bad(format!(
            "{e} (save what SELECT stepup.audit_digest() returns)"
        ))
    })
}

/// The walk of stepup.verify_audit(), over the export: links in seq order,
/// each with the entry it names; then the entries no link covers (which
/// verify_audit() would seal first, in id order); then the saved head.
pub fn verify(mut log: Log, mut links: Vec<Link>, head: Option<&Head>) -> Verdict {
    if let Some((id, first, second)) = log.duplicate {
        // The table's primary key makes this impossible in the database.
        return Verdict::Tampered {
            entries: 0,
            bad: Bad {
                entry_id: id,
                reason: format!(
                    "entry {id} appears twice in audit_log (lines {first} and {second})"
                ),
            },
        };
    }
    links.sort_by_key(|l| l.seq);
    let mut walk = Walk::default();
    let mut found_head = head.is_some_and(Head::is_genesis);
    for l in &links {
        let entry = log.entries.get_mut(&l.entry_id);
        let step = walk.step(&chain::Link {
            seq: l.seq,
            entry_id: l.entry_id,
            entry_hash: &l.entry_hash,
            prev_hash: &l.prev_hash,
            link_hash: &l.link_hash,
            entry: entry.as_deref().map(|e| (&*e.stored, e.computed.as_str())),
        });
        if let Err(bad) = step {
            return Verdict::Tampered {
                entries: walk.entries,
                bad,
            };
        }
        if let Some(e) = entry {
            if e.linked_by != 0 {
                // audit_chain.entry_id is UNIQUE in the database.
                return Verdict::Tampered {
                    entries: walk.entries - 1,
                    bad: Bad {
                        entry_id: l.entry_id,
                        reason: format!(
                            "entry {} is linked twice, by links {} and {}",
                            l.entry_id, e.linked_by, l.seq
                        ),
                    },
                };
            }
            e.linked_by = l.seq;
        }
        if head.is_some_and(|h| h.is_link(l.seq, &l.link_hash)) {
            found_head = true;
        }
    }
    let mut unsealed: Vec<(i64, bool)> = log
        .entries
        .iter()
        .filter(|(_, e)| e.linked_by == 0)
        .map(|(id, e)| (*id, e.computed.as_str() == &*e.stored))
        .collect();
    unsealed.sort_unstable();
    if let Some(i) = unsealed.iter().position(|(_, intact)| !intact) {
        return Verdict::Tampered {
            entries: walk.entries + i64::try_from(i).unwrap_or(i64::MAX),
            bad: Bad::edited(unsealed[i].0),
        };
    }
    if let Some(h) = head.filter(|_| !found_head) {
        let at = h.at.as_deref().and_then(utc_instant_us);
        let rewritten = at.and_then(|at| {
            links
                .iter()
                .find(|l| l.seq <= h.seq && l.sealed_at > at)
                .map(|l| (l.seq, l.entry_id))
        });
        return Verdict::Tampered {
            entries: walk.entries,
            bad: h.missing(rewritten),
        };
    }
    Verdict::Ok {
        entries: walk.entries,
        unsealed: unsealed.len(),
        head: head.map(|h| h.seq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use stepup_core::audit::encoding::{entry_hash, link_hash, GENESIS};

    const HEADER: &str = "id,at,txid,table_name,op,key,old_digest,new_digest,changed,old_values,new_values,role_name,session_role,application_name,client_addr,kid,jti,sub,acr,amr,auth_time,entry_hash";

    /// An entry's CSV line and its fields as the hash sees them.
    fn entry(id: i64, sub: &str) -> String {
        let at = "2026-03-04 08:36:07.891+05:30";
        let at_us = "1772593567891000";
        let fields: Vec<Option<String>> = vec![
            Some(id.to_string()),
            Some(at_us.into()),
            Some("777".into()),
            Some("public.payouts".into()),
            Some("UPDATE".into()),
            Some(r#"{"id": 1}"#.into()),
            Some("aa".into()),
            Some("bb".into()),
            Some("{iban}".into()),
            Some(r#"{"iban": "DE,1"}"#.into()),
            Some(r#"{"iban": "x\"y"}"#.into()),
            Some("app".into()),
            Some("app".into()),
            Some("".into()),
            None,
            Some("k1".into()),
            Some("j1".into()),
            Some(sub.into()),
            Some("aal2".into()),
            Some("{otp}".into()),
            None,
        ];
        let h = entry_hash(fields.iter().map(Option::as_deref));
        format!(
            "{id},{at},777,public.payouts,UPDATE,\"{{\"\"id\"\": 1}}\",aa,bb,{{iban}},\"{{\"\"iban\"\": \"\"DE,1\"\"}}\",\"{{\"\"iban\"\": \"\"x\\\"\"y\"\"}}\",app,app,\"\",,k1,j1,{sub},aal2,{{otp}},,{h}\n"
        )
    }

    fn files(log: &str, chain: &str) -> (tempdir::Dir, Options) {
        let dir = tempdir::Dir::new();
        let l = dir.write("audit_log.csv", log);
        let c = dir.write("audit_chain.csv", chain);
        (
            dir,
            Options {
                log: l,
                chain: c,
                digest: None,
            },
        )
    }

    /// Links over entries 1..=n whose hashes are read back from `log`.
    fn chain_of(log: &str, n: i64) -> (String, Vec<String>) {
        let hashes: Vec<String> = log
            .lines()
            .skip(1)
            .map(|l| l.rsplit(',').next().unwrap_or("").to_string())
            .collect();
        let mut prev = GENESIS.to_string();
        let mut out = "seq,entry_id,entry_hash,prev_hash,link_hash,sealed_at\n".to_string();
        let mut link_hashes = Vec::new();
        for seq in 1..=n {
            let eh = &hashes[(seq - 1) as usize];
            let lh = link_hash(seq, seq, eh, &prev);
            out += &format!("{seq},{seq},{eh},{prev},{lh},2026-03-04 03:06:08+00\n");
            link_hashes.push(lh.clone());
            prev = lh;
        }
        (out, link_hashes)
    }

    mod tempdir {
        use super::*;
        pub struct Dir(pub PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "stepup-verify-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn write(&self, name: &str, text: &str) -> PathBuf {
                let p = self.0.join(name);
                std::fs::File::create(&p)
                    .unwrap()
                    .write_all(text.as_bytes())
                    .unwrap();
                p
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn log_of(n: i64) -> String {
        let mut log = format!("{HEADER}\n");
        for id in 1..=n {
            log += &entry(id, "alice");
        }
        log
    }

    #[test]
    fn an_intact_export_verifies() {
        let log = log_of(3);
        let (chain, _) = chain_of(&log, 3);
        let (_d, o) = files(&log, &chain);
        let v = run(&o).unwrap();
        assert_eq!(v.to_string(), "ok 3 entries");
        // Entry 3 not sealed yet.
        let (chain, _) = chain_of(&log, 2);
        let (_d, o) = files(&log, &chain);
        assert_eq!(
            run(&o).unwrap(),
            Verdict::Ok {
                entries: 2,
                unsealed: 1,
                head: None
            }
        );
    }

    #[test]
    fn tampering_is_named_as_verify_audit_names_it() {
        let log = log_of(3);
        let (chain, _) = chain_of(&log, 3);
        // An edited field.
        let edited = log
            .replacen(",alice,", ",mallory,", 2)
            .replacen(",mallory,", ",alice,", 1);
        let (_d, o) = files(&edited, &chain);
        let v = run(&o).unwrap();
        assert_eq!(
            v.to_string(),
            "bad entry 2 after 1 good entries: entry 2 was edited: its fields do not hash to its entry_hash"
        );
        assert_eq!(v.exit_code(), 1);
        // A deleted entry.
        let lines: Vec<&str> = log.lines().collect();
        let deleted = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[3]);
        let (_d, o) = files(&deleted, &chain);
        assert_eq!(
            run(&o).unwrap().to_string(),
            "bad entry 2 after 1 good entries: entry 2 was deleted from audit_log"
        );
        // A duplicated entry.
        let twice = format!("{log}{}\n", lines[2]);
        let (_d, o) = files(&twice, &chain);
        assert!(run(&o)
            .unwrap()
            .to_string()
            .ends_with("entry 2 appears twice in audit_log (lines 3 and 5)"));
    }

    #[test]
    fn a_saved_head_catches_a_shortened_chain() {
        let log = log_of(3);
        let (chain, hashes) = chain_of(&log, 3);
        let dir = tempdir::Dir::new();
        let digest = dir.write(
            "digest.json",
            &format!(
                r#"{{"at": "2026-03-04T03:06:09.000000Z", "seq": 3, "hash": "{}", "entry_id": 3, "system_identifier": "1"}}"#,
                hashes[2]
            ),
        );
        let (_d, mut o) = files(&log, &chain);
        o.digest = Some(digest.clone());
        assert_eq!(
            run(&o).unwrap().to_string(),
            "ok 3 entries; the saved digest's head (link 3) is in the chain"
        );
        let short_log: String = log.lines().take(3).map(|l| format!("{l}\n")).collect();
        let (short_chain, _) = chain_of(&short_log, 2);
        let (_d, mut o) = files(&short_log, &short_chain);
        assert_eq!(run(&o).unwrap().to_string(), "ok 2 entries");
        o.digest = Some(digest);
        assert_eq!(
            run(&o).unwrap().to_string(),
            "bad entry 3 after 2 good entries: the chain no longer holds link 3 of the saved digest: the newest entries were removed or rewritten"
        );
    }

    #[test]
    fn unreadable_inputs() {
        let log = log_of(2);
        let (chain, _) = chain_of(&log, 2);
        let err = |log: &str, chain: &str| {
            let (_d, o) = files(log, chain);
            run(&o).unwrap_err().to_string()
        };
        assert!(err(&log.replace("auth_time", "auth_at"), &chain)
            .contains("not an export of stepup.audit_log: missing column(s) auth_time; unexpected column(s) \"auth_at\""));
        assert!(err(
            &log,
            &chain.replace("2026-03-04 03:06:08+00", "03/04/2026 03:06:08 UTC")
        )
        .contains(
            "sealed_at \"03/04/2026 03:06:08 UTC\" is not a timestamptz as DateStyle ISO prints it"
        ));
        assert!(err(&log.replacen("\n1,", "\nx1,", 1), &chain)
            .contains("line 2: id \"x1\" is not a bigint"));
        assert!(err(&log[..log.len() - 30], &chain)
            .contains("the last record does not end with a newline"));
        assert!(err("", &chain).contains("empty: no header line"));
        let (_d, mut o) = files(&log, &chain);
        o.log = o.log.with_extension("missing");
        assert!(run(&o).unwrap_err().to_string().contains("No such file"));
        o.log = o.chain.clone();
        o.digest = Some(o.chain.clone());
        assert!(run(&o)
            .unwrap_err()
            .to_string()
            .contains("digest cannot be read"));
    }
}
