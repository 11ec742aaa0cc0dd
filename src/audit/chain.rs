//! Pure: walking the chain in `seq` order and naming the first entry that
//! was edited, deleted or reordered. The glue feeds it one row per link
//! (and per entry the link points to), in order.

use super::encoding::{link_hash, GENESIS};

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
            return bad(format!(
                "entry {id} was edited: its fields do not hash to its entry_hash"
            ));
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
        if link_hash(l.seq, l.entry_id, l.entry_hash, l.prev_hash) != l.link_hash {
            return bad(format!("link {} of entry {id} was edited", l.seq));
        }
        self.prev = l.link_hash.to_string();
        self.next_seq += 1;
        self.entries += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::encoding::entry_hash;
    use super::*;

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
}
