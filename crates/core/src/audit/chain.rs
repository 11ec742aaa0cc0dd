//! Pure: walking the chain in `seq` order and naming the first entry that
//! was edited, deleted or reordered. The glue feeds it one row per link
//! (and per entry the link points to), in order.

use serde_json::Value;

use super::encoding::{link_hash_hex, GENESIS};

/// A chain link joined with the entry it names (entry fields None when the
/// entry is gone).
pub struct Link<'a> {
    pub seq: i64,
    pub entry_id: i64,
    pub entry_hash: &'a str,
    pub prev_hash: &'a str,
    pub link_hash: &'a str,
    /// The stored entry: its entry_hash, and the hash its fields have now
    /// (recomputed by the caller, as the writer computed it).
    pub entry: Option<(&'a str, &'a str)>,
}

/// The first problem found: the entry it concerns and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub entry_id: i64,
    pub reason: String,
}

impl Bad {
    /// An entry whose fields no longer hash to its stored entry_hash.
    pub fn edited(entry_id: i64) -> Bad {
        Bad {
            entry_id,
            reason: format!(
                "entry {entry_id} was edited: its fields do not hash to its entry_hash"
            ),
        }
    }
}

pub struct Walk {
    next_seq: i64,
    prev: String,
    pub entries: i64,
}

impl Default for Walk {
    fn default() -> Self {
        Walk {
            next_seq: 1,
            prev: GENESIS.to_string(),
            entries: 0,
        }
    }
}

impl Walk {
    pub fn step(&mut self, l: &Link) -> Result<(), Bad> {
        let bad = |reason: String| {
            Err(Bad {
                entry_id: l.entry_id,
                reason,
            })
        };
        let id = l.entry_id;
        if l.seq != self.next_seq {
            return bad(format!(
                "link {} is missing: links were deleted before entry {id}",
                self.next_seq
            ));
        }
        let Some((stored_hash, fields_hash)) = l.entry else {
            return bad(format!("entry {id} was deleted from audit_log"));
        };
        if fields_hash != stored_hash {
            return Err(Bad::edited(id));
        }
        if l.entry_hash != stored_hash {
            return bad(format!(
                "entry {id} does not match the hash its link recorded"
            ));
        }
        if l.prev_hash != self.prev {
            return bad(format!(
                "link {} of entry {id} does not follow link {}: links were reordered or removed",
                l.seq,
                l.seq - 1
            ));
        }
        if link_hash_hex(l.seq, l.entry_id, l.entry_hash, l.prev_hash).as_str() != l.link_hash {
            return bad(format!("link {} of entry {id} was edited", l.seq));
        }
        // The buffer is reused: no allocation per link.
        self.prev.clear();
        self.prev.push_str(l.link_hash);
        self.next_seq += 1;
        self.entries += 1;
        Ok(())
    }
}

/// A saved digest (`stepup.audit_digest()`): the head link's seq and hash,
/// the entry it names, and when the digest was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
    pub entry_id: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, or None when absent or of another shape.
    pub at: Option<String>,
}

/// Why a saved digest cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    NoSeqOrHash,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::NoSeqOrHash => {
                f.write_str("digest must have a non-negative \"seq\" and a \"hash\"")
            }
        }
    }
}

impl std::error::Error for HeadError {}

impl Head {
    /// The head a saved digest records.
    pub fn from_json(d: &Value) -> Result<Head, HeadError> {
        let seq = d.get("seq").and_then(Value::as_i64);
        let hash = d.get("hash").and_then(Value::as_str);
        match (seq, hash) {
            (Some(s), Some(h)) if s >= 0 => Ok(Head {
                seq: s,
                hash: h.to_string(),
                entry_id: d.get("entry_id").and_then(Value::as_i64),
                at: d
                    .get("at")
                    .and_then(Value::as_str)
                    .filter(|a| is_utc_instant(a))
                    .map(str::to_string),
            }),
            _ => Err(HeadError::NoSeqOrHash),
        }
    }

    /// The digest of an empty chain: found in every chain.
    pub fn is_genesis(&self) -> bool {
        self.seq == 0 && self.hash == GENESIS
    }

    /// Is this link (walked and found good) the head?
    pub fn is_link(&self, seq: i64, link_hash: &str) -> bool {
        self.seq == seq && self.hash == link_hash
    }

    /// The verdict when the walked chain does not hold the head. `rewritten`:
    /// the first link up to the head (by seq) sealed after the digest was
    /// taken, if any: a chain rewritten from some link on was sealed again
    /// after the digest, and that link names where the rewrite starts (a
    /// forger who also backdates sealed_at is named by the head alone).
    pub fn missing(&self, rewritten: Option<(i64, i64)>) -> Bad {
        match rewritten {
            Some((seq, entry_id)) => Bad {
                entry_id,
                reason: format!(
                    "link {seq} (entry {entry_id}) was sealed after the saved digest was taken, though the digest covers it: the chain was rewritten from there"
                ),
            },
            None => Bad {
                entry_id: self.entry_id.unwrap_or(self.seq),
                reason: format!(
                    "the chain no longer holds link {} of the saved digest: the newest entries were removed or rewritten",
                    self.seq
                ),
            },
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as audit_digest() writes `at`: anything
/// else is not used.
pub fn is_utc_instant(a: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.ddddddZ";
    a.len() == SHAPE.len()
        && a.bytes().zip(SHAPE).all(|(c, &want)| {
            if want == b'd' {
                c.is_ascii_digit()
            } else {
                c == want
            }
        })
}

#[cfg(test)]
mod tests {
    use super::super::encoding::{entry_hash, link_hash};
    use super::*;
    use serde_json::json;

    struct Fixture {
        fields: Vec<Vec<Option<String>>>,
        hashes: Vec<String>,
        links: Vec<(i64, i64, String, String, String)>,
    }

    fn chain(n: i64) -> Fixture {
        let fields: Vec<Vec<Option<String>>> = (1..=n)
            .map(|i| vec![Some(i.to_string()), Some("UPDATE".into()), None])
            .collect();
        let hashes: Vec<String> = fields
            .iter()
            .map(|f| entry_hash(f.iter().map(Option::as_deref)))
            .collect();
        let mut prev = GENESIS.to_string();
        let mut links = Vec::new();
        for (i, h) in hashes.iter().enumerate() {
            let seq = i as i64 + 1;
            let lh = link_hash(seq, seq, h, &prev);
            links.push((seq, seq, h.clone(), prev.clone(), lh.clone()));
            prev = lh;
        }
        Fixture {
            fields,
            hashes,
            links,
        }
    }

    fn walk(f: &Fixture, skip_entry: Option<usize>) -> Result<i64, Bad> {
        let mut w = Walk::default();
        for (i, (seq, id, eh, prev, lh)) in f.links.iter().enumerate() {
            let idx = (*id - 1) as usize;
            let now = entry_hash(f.fields[idx].iter().map(Option::as_deref));
            let entry = (skip_entry != Some(i)).then(|| (f.hashes[idx].as_str(), now.as_str()));
            w.step(&Link {
                seq: *seq,
                entry_id: *id,
                entry_hash: eh,
                prev_hash: prev,
                link_hash: lh,
                entry,
            })?;
        }
        Ok(w.entries)
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(walk(&chain(5), None), Ok(5));
    }

    #[test]
    fn edited_deleted_reordered_are_named() {
        let mut f = chain(5);
        f.fields[2][1] = Some("DELETE".into());
        assert_eq!(walk(&f, None).unwrap_err().entry_id, 3);

        let f = chain(5);
        assert_eq!(walk(&f, Some(1)).unwrap_err().entry_id, 2);

        let mut f = chain(5);
        f.links.remove(2);
        let e = walk(&f, None).unwrap_err();
        assert_eq!(e.entry_id, 4);
        assert!(e.reason.contains("link 3 is missing"));

        // Swap which entries links 2 and 3 name.
        let mut f = chain(5);
        let (a, b) = (
            (f.links[1].1, f.links[1].2.clone()),
            (f.links[2].1, f.links[2].2.clone()),
        );
        (f.links[1].1, f.links[1].2) = b;
        (f.links[2].1, f.links[2].2) = a;
        assert_eq!(walk(&f, None).unwrap_err().entry_id, 3);
    }

    #[test]
    fn a_link_with_a_wrong_hash_or_prev_is_named() {
        let mut f = chain(4);
        f.links[2].4 = "0".repeat(64);
        let e = walk(&f, None).unwrap_err();
        assert_eq!(
            (e.entry_id, e.reason.as_str()),
            (3, "link 3 of entry 3 was edited")
        );
        // A link recomputed over a wrong prev.
        let mut f = chain(4);
        let (seq, id, eh) = (f.links[3].0, f.links[3].1, f.links[3].2.clone());
        let prev = f.links[1].4.clone();
        f.links[3] = (
            seq,
            id,
            eh.clone(),
            prev.clone(),
            link_hash(seq, id, &eh, &prev),
        );
        let e = walk(&f, None).unwrap_err();
        assert_eq!(e.entry_id, 4);
        assert_eq!(
            e.reason,
            "link 4 of entry 4 does not follow link 3: links were reordered or removed"
        );
    }

    #[test]
    fn saved_heads() {
        let h = Head::from_json(&json!({"seq": 3, "hash": "ab", "entry_id": 7,
            "at": "2026-03-04T05:06:07.000001Z", "system_identifier": "1"}))
        .unwrap();
        assert_eq!(
            h,
            Head {
                seq: 3,
                hash: "ab".into(),
                entry_id: Some(7),
                at: Some("2026-03-04T05:06:07.000001Z".into())
            }
        );
        assert!(h.is_link(3, "ab") && !h.is_link(3, "ac") && !h.is_genesis());
        assert_eq!(h.missing(None).entry_id, 7);
        assert!(h.missing(None).reason.contains("no longer holds link 3"));
        let r = h.missing(Some((2, 5)));
        assert_eq!(r.entry_id, 5);
        assert!(r.reason.starts_with("link 2 (entry 5) was sealed after"));
        let odd_at =
            Head::from_json(&json!({"seq": 0, "hash": GENESIS, "at": "2026-03-04 05:06:07Z"}));
        assert_eq!(odd_at.as_ref().map(|h| h.at.clone()), Ok(None));
        assert!(odd_at.unwrap().is_genesis());
        for bad in [
            json!({}),
            json!({"seq": -1, "hash": "x"}),
            json!({"seq": 1.5, "hash": "x"}),
            json!({"seq": 1, "hash": 2}),
            json!([1]),
        ] {
            assert_eq!(Head::from_json(&bad), Err(HeadError::NoSeqOrHash), "{bad}");
        }
    }
}
