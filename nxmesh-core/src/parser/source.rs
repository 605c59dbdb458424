//! Access to configuration files for `include`, behind the [`Source`] trait
//! so that the parser itself does no IO. [`MemorySource`] serves files from
//! memory (tests, `nginx -T` dumps); `FsSource` (feature `fs`) reads the
//! file system.

use std::collections::BTreeMap;

/// Why a file could not be read or listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The file does not exist.
    #[error("2: No such file or directory")]
    NotFound,
    /// Any other failure, with the system's description.
    #[error("{0}")]
    Io(String),
}

/// Where configuration files come from. Paths are `/`-separated strings as
/// written in the configuration (already made absolute or joined to the main
/// file's directory by the parser).
pub trait Source {
    /// The content of file `path`.
    fn read(&self, path: &str) -> Result<Vec<u8>, SourceError>;

    /// The files matching the glob `pattern` (`*`, `?`, `[...]`), sorted.
    /// No match is not an error.
    fn glob(&self, pattern: &str) -> Result<Vec<String>, SourceError>;
}

/// Files held in memory, keyed by path.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemorySource {
    /// An empty set of files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) file `path`.
    pub fn insert(&mut self, path: impl Into<String>, content: impl Into<Vec<u8>>) {
        self.files.insert(path.into(), content.into());
    }

    /// The files of an `nginx -T` dump, and the path of the first (main)
    /// one, or `None` if `text` has no `# configuration file PATH:` line.
    pub fn from_dump(text: &str) -> Option<(Self, String)> {
        let mut source = Self::new();
        let mut main = None;
        let mut current: Option<(String, String)> = None;
        for line in text.split_inclusive('\n') {
            let header = line
                .trim_end_matches(['\n', '\r'])
                .strip_prefix("# configuration file ")
                .and_then(|rest| rest.strip_suffix(':'));
            if let Some(path) = header {
                if let Some((p, content)) = current.take() {
                    source.insert(p, content);
                }
                main.get_or_insert_with(|| path.to_owned());
                current = Some((path.to_owned(), String::new()));
            } else if let Some((_, content)) = current.as_mut() {
                content.push_str(line);
            }
        }
        if let Some((p, mut content)) = current {
            // `nginx -T` ends every file with an empty line of its own.
            if content.ends_with("\n\n") {
                content.pop();
            }
            source.insert(p, content);
        }
        main.map(|m| (source, m))
    }
}

impl Source for MemorySource {
    fn read(&self, path: &str) -> Result<Vec<u8>, SourceError> {
        self.files.get(path).cloned().ok_or(SourceError::NotFound)
    }

    fn glob(&self, pattern: &str) -> Result<Vec<String>, SourceError> {
        Ok(self
            .files
            .keys()
            .filter(|path| glob_match(pattern, path))
            .cloned()
            .collect())
    }
}

/// Whether `pattern` has glob magic (`*`, `?` or `[`), as nginx decides in
/// `ngx_conf_include`.
pub fn has_magic(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// `glob(3)` matching of a whole path: `*` and `?` do not cross `/` and do
/// not match a leading `.` of a name; `[...]` classes with ranges and `!`/`^`
/// negation.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    pat.len() == parts.len()
        && pat
            .iter()
            .zip(&parts)
            .all(|(p, s)| name_match(p.as_bytes(), s.as_bytes()))
}

/// `fnmatch(3)` for one path component.
pub(crate) fn name_match(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    fnmatch(pattern, name)
}

fn fnmatch(p: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => class(&p[pi..], s[si])
                .map(|(ok, len)| (ok, pi + len))
                .and_then(|(ok, next)| ok.then_some(next)),
            Some(b'\\') if pi + 1 < p.len() => (p[pi + 1] == s[si]).then_some(pi + 2),
            Some(&c) => (c == s[si]).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                si += 1;
            }
            None => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class at the start of `p` (`[...]`); returns
/// whether it matched and the class's length, or `None` for a `[` that does
/// not open a class (then it is literal).
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = p[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

/// Reads the file system with `std::fs`; globbing walks the directories of
/// the pattern component by component.
#[cfg(feature = "fs")]
#[derive(Debug, Clone, Copy, Default)]
pub struct FsSource;

#[cfg(feature = "fs")]
impl Source for FsSource {
    fn read(&self, path: &str) -> Result<Vec<u8>, SourceError> {
        std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SourceError::NotFound,
            _ => SourceError::Io(e.to_string()),
        })
    }

    fn glob(&self, pattern: &str) -> Result<Vec<String>, SourceError> {
        let absolute = pattern.starts_with('/');
        let mut found = vec![if absolute {
            "/".to_owned()
        } else {
            String::new()
        }];
        let components: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
        for (n, component) in components.iter().enumerate() {
            let last = n + 1 == components.len();
            let mut next = Vec::new();
            for dir in &found {
                let join = |name: &str| {
                    if dir.is_empty() || dir.ends_with('/') {
                        format!("{dir}{name}")
                    } else {
                        format!("{dir}/{name}")
                    }
                };
                if !has_magic(component) {
                    let path = join(component);
                    let meta = std::fs::metadata(&path);
                    if meta.is_ok_and(|m| !last || m.is_file()) {
                        next.push(path);
                    }
                    continue;
                }
                let listing = if dir.is_empty() { "." } else { dir.as_str() };
                let Ok(entries) = std::fs::read_dir(listing) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    if name_match(component.as_bytes(), name.as_bytes()) {
                        next.push(join(&name));
                    }
                }
            }
            found = next;
        }
        found.sort();
        Ok(found)
    }
}
