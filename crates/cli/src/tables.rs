//! The two exported tables, read from their CSV: each audit_log entry
//! hashed as it is read (only its stored and recomputed hashes are kept),
//! each audit_chain link kept whole. Columns are found by the header's
//! names; anything but exactly the table's columns is refused.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use stepup_core::audit::encoding::{self, EntryHasher, ENTRY_FIELDS};
use stepup_core::audit::export::{
    int8, timestamptz_us, Render, TimeError, CHAIN_COLUMNS, ENTRY_RENDER, LOG_COLUMN_NAMES,
};
use stepup_core::digest::Hex;

use crate::csv::{CsvError, Reader, Record};

/// An input that cannot be read as an export (exit 2).
#[derive(Debug)]
pub enum InputError {
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    Csv {
        path: PathBuf,
        error: CsvError,
    },
    NoHeader {
        path: PathBuf,
    },
    Header {
        path: PathBuf,
        table: &'static str,
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
    FieldCount {
        path: PathBuf,
        line: u64,
        found: usize,
        want: usize,
    },
    Null {
        path: PathBuf,
        line: u64,
        column: &'static str,
    },
    Number {
        path: PathBuf,
        line: u64,
        column: &'static str,
        text: String,
    },
    Time {
        path: PathBuf,
        line: u64,
        column: &'static str,
        text: String,
        error: TimeError,
    },
    Digest {
        path: PathBuf,
        reason: String,
    },
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputError::Open { path, error } => write!(f, "{}: {error}", path.display()),
            InputError::Csv { path, error } => write!(f, "{}: {error}", path.display()),
            InputError::NoHeader { path } => write!(
                f,
                "{}: empty: no header line (export with \\copy ... TO ... CSV HEADER)",
                path.display()
            ),
            InputError::Header {
                path,
                table,
                missing,
                unexpected,
            } => {
                write!(f, "{}: not an export of stepup.{table}:", path.display())?;
                if !missing.is_empty() {
                    write!(f, " missing column(s) {}", missing.join(", "))?;
                }
                if !unexpected.is_empty() {
                    let sep = if missing.is_empty() { "" } else { ";" };
                    write!(f, "{sep} unexpected column(s) {}", unexpected.join(", "))?;
                }
                write!(
                    f,
                    " (export with \\copy stepup.{table} TO '...' CSV HEADER)"
                )
            }
            InputError::FieldCount {
                path,
                line,
                found,
                want,
            } => write!(
                f,
                "{} line {line}: {found} field(s), the header has {want} (truncated or not CSV?)",
                path.display()
            ),
            InputError::Null { path, line, column } => write!(
                f,
                "{} line {line}: {column} is NULL, which the table does not allow",
                path.display()
            ),
            InputError::Number {
                path,
                line,
                column,
                text,
            } => write!(
                f,
                "{} line {line}: {column} {text:?} is not a bigint",
                path.display()
            ),
            InputError::Time {
                path,
                line,
                column,
                text,
                error,
            } => {
                write!(
                    f,
                    "{} line {line}: {column} {text:?} is {error}",
                    path.display()
                )?;
                if *error == TimeError::NotIso {
                    write!(
                        f,
                        "; export with DateStyle ISO (psql: SET DateStyle = ISO; or PGDATESTYLE=ISO)"
                    )?;
                }
                Ok(())
            }
            InputError::Digest { path, reason } => write!(f, "{}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for InputError {}

/// An entry of the log: what the chain walk needs of it.
pub struct Entry {
    /// Its stored entry_hash.
    pub stored: Box<str>,
    /// The hash of its fields, recomputed.
    pub computed: Hex,
    /// The seq of the link that names it, once walked (0: none yet).
    pub linked_by: i64,
    /// Where it starts in the file.
    pub line: u64,
}

pub struct Log {
    pub entries: HashMap<i64, Entry>,
    /// The first id that appears twice, with both lines.
    pub duplicate: Option<(i64, u64, u64)>,
}

/// A link of the chain.
pub struct Link {
    pub seq: i64,
    pub entry_id: i64,
    pub entry_hash: Box<str>,
    pub prev_hash: Box<str>,
    pub link_hash: Box<str>,
    /// Microseconds since 1970-01-01 UTC.
    pub sealed_at: i64,
}

fn open(path: &Path) -> Result<Reader<BufReader<File>>, InputError> {
    let file = File::open(path).map_err(|error| InputError::Open {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(Reader::new(BufReader::with_capacity(1 << 20, file)))
}

/// Reads a whole small file (the digest).
pub fn read_small(path: &Path) -> Result<String, InputError> {
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
        .map_err(|error| InputError::Open {
            path: path.to_path_buf(),
            error,
        })?;
    Ok(text)
}

/// Where each of `columns` is in the file, from its header.
fn header<R: std::io::BufRead>(
    reader: &mut Reader<R>,
    path: &Path,
    table: &'static str,
    columns: &[&'static str],
) -> Result<Vec<usize>, InputError> {
    let csv = |error| InputError::Csv {
        path: path.to_path_buf(),
        error,
    };
    let Some(rec) = reader.next_record().map_err(csv)? else {
        return Err(InputError::NoHeader {
            path: path.to_path_buf(),
        });
    };
    let names: Vec<String> = (0..rec.len())
        .map(|i| rec.text(i).unwrap_or_default().to_string())
        .collect();
    let mut unexpected: Vec<String> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if !columns.contains(&n.as_str()) || names[..i].contains(n) {
            unexpected.push(format!("{n:?}"));
        }
    }
    let missing: Vec<String> = columns
        .iter()
        .filter(|c| !names.iter().any(|n| n == *c))
        .map(|c| c.to_string())
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(InputError::Header {
            path: path.to_path_buf(),
            table,
            missing,
            unexpected,
        });
    }
    Ok(columns
        .iter()
        .map(|c| names.iter().position(|n| n == c).unwrap_or(0))
        .collect())
}

/// Reads one record's typed fields, naming the file and line on failure.
struct Row<'r, 'a> {
    rec: &'r Record<'a>,
    path: &'r Path,
}

impl Row<'_, '_> {
    fn not_null(&self, i: usize, column: &'static str) -> Result<&[u8], InputError> {
        self.rec.get(i).ok_or_else(|| InputError::Null {
            path: self.path.to_path_buf(),
            line: self.rec.line,
            column,
        })
    }

    fn int8(&self, i: usize, column: &'static str) -> Result<i64, InputError> {
        let text = self.not_null(i, column)?;
        int8(text).ok_or_else(|| InputError::Number {
            path: self.path.to_path_buf(),
            line: self.rec.line,
            column,
            text: String::from_utf8_lossy(text).into_owned(),
        })
    }

    fn time(&self, text: &[u8], column: &'static str) -> Result<i64, InputError> {
        timestamptz_us(text).map_err(|error| InputError::Time {
            path: self.path.to_path_buf(),
            line: self.rec.line,
            column,
            text: String::from_utf8_lossy(text).into_owned(),
            error,
        })
    }

    /// A text column; NULL reads as the empty string, as the in-database
    /// verifier reads it (those columns are NOT NULL there).
    fn text(&self, i: usize) -> Box<str> {
        self.rec.text(i).unwrap_or_default().into()
    }
}

fn check_len(rec: &Record, want: usize, path: &Path) -> Result<(), InputError> {
    if rec.len() == want {
        return Ok(());
    }
    Err(InputError::FieldCount {
        path: path.to_path_buf(),
        line: rec.line,
        found: rec.len(),
        want,
    })
}

/// The export of stepup.audit_log, every entry hashed as it is read.
pub fn read_log(path: &Path) -> Result<Log, InputError> {
    let mut reader = open(path)?;
    let at = header(&mut reader, path, "audit_log", &LOG_COLUMN_NAMES)?;
    let mut log = Log {
        entries: HashMap::new(),
        duplicate: None,
    };
    let mut number = itoa::Buffer::new();
    loop {
        let rec = match reader.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(error) => {
                return Err(InputError::Csv {
                    path: path.to_path_buf(),
                    error,
                })
            }
        };
        check_len(&rec, at.len(), path)?;
        let row = Row { rec: &rec, path };
        let mut h = EntryHasher::start();
        let mut id = 0;
        for (k, render) in ENTRY_RENDER.iter().enumerate() {
            let column = ENTRY_FIELDS[k];
            let value = rec.get(at[k]);
            match (render, value) {
                (Render::AsIs, v) => h.field(v),
                // auth_time may be NULL; id, at and txid may not.
                (Render::Timestamptz, None) if column == "auth_time" => h.field(None),
                (Render::Int8, _) => {
                    let n = row.int8(at[k], column)?;
                    if k == const { encoding::column("id") } {
                        id = n;
                    }
                    h.field(Some(number.format(n).as_bytes()));
                }
                (Render::Timestamptz, _) => {
                    let us = row.time(row.not_null(at[k], column)?, column)?;
                    h.field(Some(number.format(us).as_bytes()));
                }
            }
        }
        let entry = Entry {
            stored: row.text(at[const { encoding::column("entry_hash") }]),
            computed: h.finish(),
            linked_by: 0,
            line: rec.line,
        };
        if let Some(first) = log.entries.insert(id, entry) {
            if log.duplicate.is_none() {
                log.duplicate = Some((id, first.line, rec.line));
            }
        }
    }
    Ok(log)
}

/// The export of stepup.audit_chain, in file order.
pub fn read_chain(path: &Path) -> Result<Vec<Link>, InputError> {
    let mut reader = open(path)?;
    let at = header(&mut reader, path, "audit_chain", &CHAIN_COLUMNS)?;
    let mut links = Vec::new();
    loop {
        let rec = match reader.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(error) => {
                return Err(InputError::Csv {
                    path: path.to_path_buf(),
                    error,
                })
            }
        };
        check_len(&rec, at.len(), path)?;
        let row = Row { rec: &rec, path };
        links.push(Link {
            seq: row.int8(at[0], "seq")?,
            entry_id: row.int8(at[1], "entry_id")?,
            entry_hash: row.text(at[2]),
            prev_hash: row.text(at[3]),
            link_hash: row.text(at[4]),
            sealed_at: row.time(row.not_null(at[5], "sealed_at")?, "sealed_at")?,
        });
    }
    Ok(links)
}
