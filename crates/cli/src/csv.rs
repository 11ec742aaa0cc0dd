//! PostgreSQL's CSV, as `COPY ... TO ... CSV` (and psql's `\copy`) writes
//! it with the defaults: `,` between fields, `"` quotes, `""` for a quote
//! inside quotes, one record per line ending in `\n` (`\r\n` accepted).
//! A NULL is an empty *unquoted* field and the empty string is `""`: that
//! difference is what this reader keeps and general CSV readers (the csv
//! crate) drop, and the entry hash tells NULL from "" apart.
//!
//! Strict: anything COPY never writes (a quote inside an unquoted field,
//! text after a closing quote, a file that does not end with a newline,
//! bytes that are not UTF-8) is an error, not a guess.

use std::fmt;
use std::io::{self, BufRead};

#[derive(Debug)]
pub enum CsvError {
    Io(io::Error),
    /// A quoted field still open at the end of the file.
    Unterminated {
        line: u64,
    },
    /// Something other than `,` or the end of the line after a closing quote.
    AfterQuote {
        line: u64,
    },
    /// A `"` inside an unquoted field.
    StrayQuote {
        line: u64,
    },
    /// The last record does not end with a newline.
    NoNewline {
        line: u64,
    },
    NotUtf8 {
        line: u64,
    },
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::Io(e) => write!(f, "cannot read: {e}"),
            CsvError::Unterminated { line } => write!(
                f,
                "line {line}: a quoted field is not closed before the end of the file (truncated?)"
            ),
            CsvError::AfterQuote { line } => {
                write!(f, "line {line}: text after a closing quote: not CSV")
            }
            CsvError::StrayQuote { line } => {
                write!(f, "line {line}: a quote inside an unquoted field: not CSV")
            }
            CsvError::NoNewline { line } => write!(
                f,
                "line {line}: the last record does not end with a newline (truncated?)"
            ),
            CsvError::NotUtf8 { line } => write!(
                f,
                "line {line}: not UTF-8 (export with client_encoding UTF8, e.g. PGCLIENTENCODING=UTF8)"
            ),
        }
    }
}

impl std::error::Error for CsvError {}

impl From<io::Error> for CsvError {
    fn from(e: io::Error) -> Self {
        CsvError::Io(e)
    }
}

#[derive(Clone, Copy)]
struct Field {
    start: usize,
    end: usize,
    quoted: bool,
}

/// Reads records one at a time into buffers it reuses.
pub struct Reader<R> {
    inner: R,
    /// The record as read (one line, or more when a quoted field holds newlines).
    raw: Vec<u8>,
    /// The fields' values, unquoted, back to back.
    values: Vec<u8>,
    fields: Vec<Field>,
    /// Lines read so far.
    line: u64,
}

/// One record: its fields, and the line it starts on.
pub struct Record<'a> {
    values: &'a [u8],
    fields: &'a [Field],
    pub line: u64,
}

impl Record<'_> {
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Field `i`'s text, None for NULL (an empty unquoted field). Valid UTF-8.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let f = self.fields.get(i)?;
        (f.quoted || f.start != f.end).then(|| &self.values[f.start..f.end])
    }

    /// [`Record::get`] as text.
    pub fn text(&self, i: usize) -> Option<&str> {
        // Checked when read (Reader::next_record).
        self.get(i).and_then(|v| std::str::from_utf8(v).ok())
    }
}

impl<R: BufRead> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            raw: Vec::with_capacity(4096),
            values: Vec::with_capacity(4096),
            fields: Vec::with_capacity(32),
            line: 0,
        }
    }

    /// The next record, or None at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, CsvError> {
        self.raw.clear();
        self.values.clear();
        self.fields.clear();
        if self.inner.read_until(b'\n', &mut self.raw)? == 0 {
            return Ok(None);
        }
        self.line += 1;
        let first = self.line;
        let mut i = 0;
        loop {
            let start = self.values.len();
            if self.raw.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match memchr::memchr(b'"', &self.raw[i..]) {
                        None => {
                            // The newline is part of the value: read on.
                            self.values.extend_from_slice(&self.raw[i..]);
                            i = self.raw.len();
                            if self.inner.read_until(b'\n', &mut self.raw)? == 0 {
                                return Err(CsvError::Unterminated { line: first });
                            }
                            self.line += 1;
                        }
                        Some(k) => {
                            self.values.extend_from_slice(&self.raw[i..i + k]);
                            i += k + 1;
                            if self.raw.get(i) == Some(&b'"') {
                                self.values.push(b'"');
                                i += 1;
                            } else {
                                break;
                            }
                        }
                    }
                }
                self.fields.push(Field {
                    start,
                    end: self.values.len(),
                    quoted: true,
                });
                match (self.raw.get(i), self.raw.get(i + 1)) {
                    (Some(b','), _) => i += 1,
                    (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n')) => break,
                    (None, _) => return Err(CsvError::NoNewline { line: self.line }),
                    _ => return Err(CsvError::AfterQuote { line: self.line }),
                }
            } else {
                let rest = &self.raw[i..];
                let Some(k) = memchr::memchr2(b',', b'\n', rest) else {
                    return Err(CsvError::NoNewline { line: self.line });
                };
                let end_of_line = rest[k] == b'\n';
                let mut value = &rest[..k];
                if end_of_line {
                    value = value.strip_suffix(b"\r").unwrap_or(value);
                }
                if memchr::memchr(b'"', value).is_some() {
                    return Err(CsvError::StrayQuote { line: self.line });
                }
                self.values.extend_from_slice(value);
                self.fields.push(Field {
                    start,
                    end: self.values.len(),
                    quoted: false,
                });
                i += k + 1;
                if end_of_line {
                    break;
                }
            }
        }
        // Delimiters and quotes are ASCII: the record is UTF-8 exactly when
        // every field is.
        if std::str::from_utf8(&self.raw).is_err() {
            return Err(CsvError::NotUtf8 { line: first });
        }
        Ok(Some(Record {
            values: &self.values,
            fields: &self.fields,
            line: first,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each record's first line and its fields.
    type Records = Vec<(u64, Vec<Option<String>>)>;

    fn records(text: &[u8]) -> Result<Records, CsvError> {
        let mut r = Reader::new(text);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            let fields = (0..rec.len())
                .map(|i| rec.text(i).map(str::to_string))
                .collect();
            out.push((rec.line, fields));
        }
        Ok(out)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn null_is_unquoted_empty_and_empty_is_quoted() {
        assert_eq!(
            records(b"a,,\"\",\"x,y\"\n").unwrap(),
            vec![(1, vec![s("a"), None, s(""), s("x,y")])]
        );
        assert_eq!(records(b"\n").unwrap(), vec![(1, vec![None])]);
        assert_eq!(records(b",\n").unwrap(), vec![(1, vec![None, None])]);
        assert_eq!(records(b"").unwrap(), vec![]);
    }

    #[test]
    fn quotes_newlines_and_unicode_inside_quotes() {
        let text = "1,\"say \"\"hi\"\"\",\"two\nlines\r\nand\"\n2,\"{\"\"a b\"\",\"\"x\\\\\"\"y\"\"}\",Zoë ✓\n";
        assert_eq!(
            records(text.as_bytes()).unwrap(),
            vec![
                (1, vec![s("1"), s("say \"hi\""), s("two\nlines\r\nand")]),
                (4, vec![s("2"), s("{\"a b\",\"x\\\\\"y\"}"), s("Zoë ✓")]),
            ]
        );
        // CRLF line ends.
        assert_eq!(
            records(b"a,\"b\"\r\nc,\r\n").unwrap(),
            vec![(1, vec![s("a"), s("b")]), (2, vec![s("c"), None])]
        );
    }

    #[test]
    fn what_copy_never_writes_is_refused() {
        let err = |t: &[u8]| records(t).unwrap_err().to_string();
        assert_eq!(
            err(b"a,b\nc,d"),
            "line 2: the last record does not end with a newline (truncated?)"
        );
        assert_eq!(
            err(b"a,\"b\""),
            "line 1: the last record does not end with a newline (truncated?)"
        );
        assert!(err(b"a,\"b\nc\n").starts_with("line 1: a quoted field is not closed"));
        assert!(err(b"a,\"b\"c\n").contains("text after a closing quote"));
        assert!(err(b"a,b\"c\n").contains("a quote inside an unquoted field"));
        assert!(err(b"ok\na,\xff\xfe\n").starts_with("line 2: not UTF-8"));
        // A character split by a delimiter is not UTF-8 either.
        assert!(err(b"\xc3,\xa9\n").starts_with("line 1: not UTF-8"));
    }
}
