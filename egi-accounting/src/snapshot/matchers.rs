//! PromQL label matchers, parsed from a [`Filter`](crate::metrics::Filter) text and applied
//! to series by the snapshot source.

use regex::Regex;

use super::history::Labels;
use crate::error::{Error, Result};

/// A list of PromQL label matchers such as `pod=~'jupyter-.*', namespace!="kube-system"`,
/// all of which a series must satisfy.
///
/// Semantics are PromQL's:
/// - operators `=`, `!=`, `=~`, `!~`; values in single or double quotes with Go escapes
///   (`\n`, `\t`, `\\`, `\'` or `\"` matching the quote, `\x41`, `\101`, `\u00e9`,
///   `\U0001F600`, ...), or raw in backquotes;
/// - regular expressions are fully anchored, `^(?:re)$`;
/// - a label the series does not have matches as the empty string, so `team=""` selects
///   series without `team` and `team!=""` series that have it.
///
/// Regular expressions use the `regex` crate, whose syntax is RE2's like Prometheus'
/// (Go `regexp`), with one difference: `\d`, `\w`, `\s` and `\b` are Unicode-aware here and
/// ASCII-only in Go. That only matters for non-ASCII label values; `[0-9]` is the same in both.
///
/// A trailing comma is refused: the filter is joined to the questions' own matchers with a
/// comma, and `a='b',,c='d'` is not valid PromQL.
#[derive(Debug, Clone, Default)]
pub struct Matchers {
    matchers: Vec<Matcher>,
}

#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Equal(String),
    NotEqual(String),
    Regex(Regex),
    NotRegex(Regex),
}

impl Matcher {
    fn matches(&self, value: &str) -> bool {
        match &self.op {
            Op::Equal(v) => value == v,
            Op::NotEqual(v) => value != v,
            Op::Regex(re) => re.is_match(value),
            Op::NotRegex(re) => !re.is_match(value),
        }
    }
}

impl Matchers {
    /// Parses a comma-separated matcher list (the inside of a PromQL selector's braces).
    /// The empty text gives no matchers, which every series satisfies.
    ///
    /// Errors are [`Error::Config`] naming the filter and what is wrong.
    pub fn parse(text: &str) -> Result<Self> {
        let mut p = Lexer {
            text,
            s: text.as_bytes(),
            pos: 0,
        };
        let mut matchers = Vec::new();
        p.skip_space();
        if p.at_end() {
            return Ok(Self { matchers });
        }
        loop {
            let label = p.label_name()?;
            p.skip_space();
            let op = p.operator()?;
            p.skip_space();
            let value = p.string()?;
            let op = match op {
                "=" => Op::Equal(value),
                "!=" => Op::NotEqual(value),
                "=~" => Op::Regex(p.regex(&value)?),
                _ => Op::NotRegex(p.regex(&value)?),
            };
            matchers.push(Matcher { label, op });
            p.skip_space();
            if p.at_end() {
                return Ok(Self { matchers });
            }
            if !p.eat(b',') {
                return Err(p.error("expected `,` between matchers"));
            }
            p.skip_space();
            if p.at_end() {
                return Err(p.error(
                    "trailing comma (the filter is joined to other matchers with a comma)",
                ));
            }
        }
    }

    /// Whether a series with these labels (`__name__` is the metric name) satisfies every
    /// matcher. A missing label matches as the empty string.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.label).unwrap_or_default()))
    }

    /// Whether there are no matchers at all.
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }

    /// Adds `label="value"`.
    pub(crate) fn push_equal(&mut self, label: &str, value: &str) {
        self.matchers.push(Matcher {
            label: label.to_owned(),
            op: Op::Equal(value.to_owned()),
        });
    }
}

struct Lexer<'t> {
    text: &'t str,
    s: &'t [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn error(&self, why: &str) -> Error {
        Error::Config(format!(
            "filter {:?}: {why} at offset {}",
            self.text, self.pos
        ))
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn label_name(&mut self) -> Result<String> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => self.pos += 1,
            _ => return Err(self.error("expected a label name")),
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'_') {
            self.pos += 1;
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    fn operator(&mut self) -> Result<&'static str> {
        let rest = &self.s[self.pos..];
        let op = if rest.starts_with(b"=~") {
            "=~"
        } else if rest.starts_with(b"!~") {
            "!~"
        } else if rest.starts_with(b"!=") {
            "!="
        } else if rest.starts_with(b"=") && !rest.starts_with(b"==") {
            "="
        } else {
            return Err(self.error("expected one of `=`, `!=`, `=~`, `!~`"));
        };
        self.pos += op.len();
        Ok(op)
    }

    fn regex(&self, re: &str) -> Result<Regex> {
        Regex::new(&format!("^(?:{re})$")).map_err(|e| {
            Error::Config(format!("filter {:?}: invalid regex {re:?}: {e}", self.text))
        })
    }

    /// A PromQL string literal: `"..."` or `'...'` with Go escapes, or raw `` `...` ``.
    fn string(&mut self) -> Result<String> {
        let quote = match self.peek() {
            Some(q @ (b'"' | b'\'' | b'`')) => q,
            _ => return Err(self.error("expected a quoted value")),
        };
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            if c == quote {
                break;
            }
            if quote == b'`' {
                out.push(c);
                continue;
            }
            match c {
                b'\n' => return Err(self.error("newline inside a quoted string")),
                b'\\' => self.escape(quote, &mut out)?,
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("escapes make the string invalid UTF-8"))
    }

    /// The escape after a backslash, as Go's `strconv.Unquote` reads it.
    fn escape(&mut self, quote: u8, out: &mut Vec<u8>) -> Result<()> {
        let Some(c) = self.peek() else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        let simple = match c {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' => Some(b'\\'),
            q if q == quote => Some(q),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        match c {
            b'x' => {
                let v = self.digits(2, 16)?;
                out.push(v as u8);
            }
            b'0'..=b'7' => {
                self.pos -= 1;
                let v = self.digits(3, 8)?;
                let b = u8::try_from(v).map_err(|_| self.error("octal escape above \\377"))?;
                out.push(b);
            }
            b'u' | b'U' => {
                let v = self.digits(if c == b'u' { 4 } else { 8 }, 16)?;
                let ch = char::from_u32(v).ok_or_else(|| self.error("invalid Unicode escape"))?;
                let mut buf = [0; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            _ => return Err(self.error("unknown escape sequence")),
        }
        Ok(())
    }

    fn digits(&mut self, count: usize, radix: u32) -> Result<u32> {
        let mut v: u32 = 0;
        for _ in 0..count {
            let d = self
                .peek()
                .and_then(|c| char::from(c).to_digit(radix))
                .ok_or_else(|| self.error("invalid digit in escape sequence"))?;
            self.pos += 1;
            v = v * radix + d;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    fn check(filter: &str, pairs: &[(&str, &str)]) -> bool {
        Matchers::parse(filter).unwrap().matches(&labels(pairs))
    }

    #[test]
    fn the_four_operators() {
        let pod = [("pod", "jupyter-alice"), ("namespace", "hub")];
        assert!(check("pod='jupyter-alice'", &pod));
        assert!(!check("pod='jupyter'", &pod));
        assert!(check("pod!=\"x\"", &pod));
        assert!(!check("pod!=\"jupyter-alice\"", &pod));
        assert!(check("pod=~'jupyter-.*'", &pod));
        assert!(!check("pod!~'jupyter-.*'", &pod));
        assert!(check("pod!~'kube-.*'", &pod));
        assert!(check(" pod =~ 'jupyter-.*' ,\n namespace = \"hub\" ", &pod));
        assert!(!check("pod=~'jupyter-.*',namespace='other'", &pod));
    }

    #[test]
    fn regexes_are_fully_anchored() {
        let pod = [("pod", "my-jupyter-alice")];
        assert!(!check("pod=~'jupyter-.*'", &pod));
        assert!(!check("pod=~'my'", &pod));
        assert!(check("pod=~'my|my-jupyter-alice'", &pod));
        assert!(check("pod=~'.*jupyter.*'", &pod));
        // The alternation stays inside the anchors.
        assert!(!check("pod=~'x|my'", &pod));
    }

    #[test]
    fn a_missing_label_is_the_empty_string() {
        let pod = [("pod", "p")];
        assert!(check("team=''", &pod));
        assert!(!check("team!=''", &pod));
        assert!(check("team=~'.*'", &pod));
        assert!(!check("team=~'.+'", &pod));
        assert!(check("team!~'.+'", &pod));
        assert!(check("", &pod));
        assert!(Matchers::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn escapes_and_quotes() {
        let v = [("u", "a\"b'c\\d\né")];
        assert!(check(r#"u="a\"b'c\\d\né""#, &v));
        assert!(check(r#"u='a"b\'c\\d\n\u00e9'"#, &v));
        assert!(check(r#"u="a\x22b\047c\\d\n\xc3\xa9""#, &v));
        assert!(check("u=`a\"b'c\\d\né`", &v));
        assert!(check("u=~`a.b'c\\\\d\\n.`", &v));
        assert!(check(r#"n="\U0001F600""#, &[("n", "😀")]));
    }

    #[test]
    fn metric_name_is_a_label() {
        let s = [
            ("__name__", "container_cpu_usage_seconds_total"),
            ("pod", "p"),
        ];
        assert!(check("__name__=~'container_cpu.*|other'", &s));
    }

    #[test]
    fn invalid_filters_are_config_errors() {
        for bad in [
            "pod",
            "pod=",
            "pod=jupyter",
            "pod=='x'",
            "pod~'x'",
            "pod='x' namespace='y'",
            "pod='x',",
            ",pod='x'",
            "pod='x',,namespace='y'",
            "pod='unterminated",
            "pod=~'('",
            "pod='\\q'",
            "pod=\"\\'\"",
            "pod='\\xZZ'",
            "pod='\\xff'",
            "pod='\\400'",
            "pod='\\uD800'",
            "1pod='x'",
            "pod='a\nb'",
        ] {
            match Matchers::parse(bad) {
                Err(Error::Config(msg)) => assert!(msg.contains("filter"), "{bad:?}: {msg}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
