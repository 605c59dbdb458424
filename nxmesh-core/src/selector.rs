//! Kubernetes-style label selectors: `env=production,region!=us-east`,
//! `tier in (web,api)`, `tier notin (db)`, `canary`, `!canary`.
//!
//! A selector is a conjunction of requirements. It prints in a canonical
//! form that parses back to the same selector.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::model::Labels;
use crate::validate::{is_label_key, is_label_value};

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// `key=value` (or `key==value`): the label is present with this value.
    Eq(String, String),
    /// `key!=value`: the label is absent or has another value.
    NotEq(String, String),
    /// `key in (a,b)`: the label is present with one of these values.
    In(String, BTreeSet<String>),
    /// `key notin (a,b)`: the label is absent or has none of these values.
    NotIn(String, BTreeSet<String>),
    /// `key`: the label is present.
    Exists(String),
    /// `!key`: the label is absent.
    NotExists(String),
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |f: &mut fmt::Formatter<'_>, vs: &BTreeSet<String>| {
            f.write_str("(")?;
            for (i, v) in vs.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                f.write_str(v)?;
            }
            f.write_str(")")
        };
        match self {
            Requirement::Eq(k, v) => write!(f, "{k}={v}"),
            Requirement::NotEq(k, v) => write!(f, "{k}!={v}"),
            Requirement::In(k, vs) => {
                write!(f, "{k} in ")?;
                set(f, vs)
            }
            Requirement::NotIn(k, vs) => {
                write!(f, "{k} notin ")?;
                set(f, vs)
            }
            Requirement::Exists(k) => f.write_str(k),
            Requirement::NotExists(k) => write!(f, "!{k}"),
        }
    }
}

/// A label selector: every requirement must hold. The empty selector
/// matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LabelSelector {
    /// The requirements, in the order written.
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Why a selector did not parse, with the byte offset where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector at offset {offset}: {message}")]
pub struct SelectorError {
    /// Byte offset into the selector text.
    pub offset: usize,
    /// What was expected.
    pub message: String,
}

/// The longest selector text accepted.
pub const MAX_SELECTOR_LEN: usize = 4096;

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_SELECTOR_LEN {
            return Err(SelectorError {
                offset: MAX_SELECTOR_LEN,
                message: "selector too long".into(),
            });
        }
        let mut p = Parser { s, pos: 0 };
        let mut requirements = Vec::new();
        p.skip_ws();
        if p.at_end() {
            return Ok(LabelSelector { requirements });
        }
        loop {
            requirements.push(p.requirement()?);
            p.skip_ws();
            if p.at_end() {
                break;
            }
            p.expect(',', "expected ',' or end of selector")?;
        }
        Ok(LabelSelector { requirements })
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
            self.pos += 1;
        }
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, SelectorError> {
        Err(SelectorError {
            offset: self.pos,
            message: message.into(),
        })
    }

    fn expect(&mut self, c: char, message: &str) -> Result<(), SelectorError> {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            Ok(())
        } else {
            self.err(message)
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    /// A run of characters that can appear in keys and values.
    fn word(&mut self) -> &str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        let start = self.pos;
        let k = self.word().to_owned();
        if k.is_empty() {
            return self.err("expected a label key");
        }
        if !is_label_key(&k) {
            return Err(SelectorError {
                offset: start,
                message: format!("invalid label key {k:?}"),
            });
        }
        Ok(k)
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        let start = self.pos;
        let v = self.word().to_owned();
        if !is_label_value(&v) {
            return Err(SelectorError {
                offset: start,
                message: format!("invalid label value {v:?}"),
            });
        }
        Ok(v)
    }

    fn set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_ws();
        self.expect('(', "expected '(' to open the value set")?;
        let mut values = BTreeSet::new();
        loop {
            self.skip_ws();
            values.insert(self.value()?);
            self.skip_ws();
            if self.peek() == Some(')') {
                self.pos += 1;
                return Ok(values);
            }
            self.expect(',', "expected ',' or ')' in the value set")?;
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        self.skip_ws();
        if self.eat("!") {
            self.skip_ws();
            return Ok(Requirement::NotExists(self.key()?));
        }
        let key = self.key()?;
        self.skip_ws();
        if self.eat("!=") {
            self.skip_ws();
            return Ok(Requirement::NotEq(key, self.value()?));
        }
        if self.eat("==") || self.eat("=") {
            self.skip_ws();
            return Ok(Requirement::Eq(key, self.value()?));
        }
        let save = self.pos;
        let op = self.word().to_owned();
        match op.as_str() {
            "in" => Ok(Requirement::In(key, self.set()?)),
            "notin" => Ok(Requirement::NotIn(key, self.set()?)),
            "" if self.at_end() || self.peek() == Some(',') => Ok(Requirement::Exists(key)),
            "" => self.err("expected '=', '==', '!=', 'in' or 'notin' after the key"),
            _ => {
                self.pos = save;
                self.err(format!(
                    "expected '=', '==', '!=', 'in' or 'notin', found {op:?}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_and_matches_every_operator() {
        let sel: LabelSelector =
            "env=production, region != us-east ,tier in (web, api),zone notin (z1),canary,!legacy"
                .parse()
                .unwrap();
        assert_eq!(
            sel.to_string(),
            "env=production,region!=us-east,tier in (api,web),zone notin (z1),canary,!legacy"
        );
        let good = labels(&[
            ("env", "production"),
            ("region", "eu"),
            ("tier", "web"),
            ("canary", ""),
        ]);
        assert!(sel.matches(&good));
        let mut bad = good.clone();
        bad.insert("legacy".into(), "1".into());
        assert!(!sel.matches(&bad));
        assert!(!sel.matches(&labels(&[
            ("env", "production"),
            ("tier", "db"),
            ("canary", "")
        ])));
    }

    #[test]
    fn empty_selector_matches_all() {
        let sel: LabelSelector = "  ".parse().unwrap();
        assert!(sel.matches(&Labels::new()));
    }

    #[test]
    fn errors_name_the_offset() {
        let e = "env=production,".parse::<LabelSelector>().unwrap_err();
        assert_eq!(e.offset, 15);
        let e = "env >= 3".parse::<LabelSelector>().unwrap_err();
        assert!(e.message.contains("expected '='"), "{e}");
        let e = "tier in (web".parse::<LabelSelector>().unwrap_err();
        assert!(e.message.contains("')'"), "{e}");
        assert!("-bad=1".parse::<LabelSelector>().is_err());
    }
}
