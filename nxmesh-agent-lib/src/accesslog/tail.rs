//! Following one log file by name across rotation and truncation.
//!
//! A [`Tailer`] reads the file at a path and hands out complete lines with
//! the position right after each, so that a consumer can persist where it
//! stands. A file is known by its device and inode ([`FileId`]), not its
//! name:
//!
//! - **Rotation by rename** (logrotate's default, then `USR1` so that nginx
//!   reopens its logs): when the path names another file, or none, the old
//!   file is kept open and drained before it is closed, because nginx keeps
//!   writing to it until every worker has reopened. It is closed only once
//!   the new file has received data and the old one has been quiet for the
//!   configured wait, so nothing written late to it is lost.
//! - **Truncation** (`copytruncate`): a file shorter than the read position,
//!   or whose bytes just before the position changed (truncated and written
//!   again past the old position before the next poll), is read again from
//!   the start. The bytes before the position are compared through a
//!   [`Fingerprint`] of the last line read.
//! - **Partial lines**: a line is handed out only once its newline is there;
//!   a closed rotated file's unterminated remainder is handed out as its
//!   last line.
//!
//! The tailer does blocking reads; the shipper runs it on tokio's blocking
//! pool.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// At most this many bytes before a position make its fingerprint.
const FINGERPRINT_BYTES: usize = 64;

/// A file's identity: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A hash of the bytes just before a position (at most 64, ending with the
/// newline of the line that ends there), to tell whether a file still holds
/// what was read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many bytes were hashed (0 at the start of a file).
    pub len: u8,
    /// FNV-1a of those bytes.
    pub hash: u64,
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Fingerprint {
    /// The fingerprint of the position right after `line` and its newline.
    pub fn after_line(line: &[u8]) -> Fingerprint {
        let keep = line.len().min(FINGERPRINT_BYTES - 1);
        let tail = &line[line.len() - keep..];
        Fingerprint {
            // At most 64.
            len: u8::try_from(keep + 1).unwrap_or(u8::MAX),
            hash: fnv1a(&[tail, b"\n"]),
        }
    }

    /// Whether `file` holds the fingerprinted bytes just before `offset`.
    fn matches(&self, file: &File, offset: u64) -> io::Result<bool> {
        let len = u64::from(self.len);
        if len == 0 {
            return Ok(true);
        }
        if offset < len {
            return Ok(false);
        }
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let buf = &mut buf[..usize::from(self.len)];
        match file.read_exact_at(buf, offset - len) {
            Ok(()) => Ok(fnv1a(&[buf]) == self.hash),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A position in a file: what a consumer persists to resume there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    /// The file.
    pub file: FileId,
    /// The offset right after the last line handed out (or where reading
    /// starts).
    pub offset: u64,
    /// The bytes before `offset`.
    pub fingerprint: Fingerprint,
}

/// Why bytes of the log were not handed out as lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The file was truncated: the unterminated bytes read before it are
    /// dropped (what was written between the last read and the truncation
    /// cannot be known).
    Truncated,
    /// A line longer than the limit was dropped.
    Overlong,
    /// More rotated files than the limit were waiting; the oldest was
    /// closed with this many bytes unread.
    TooManyRotated,
    /// A file of the checkpoint was not found again (deleted while the agent
    /// was stopped); how much of it was unread is unknown.
    Missing,
}

/// What [`Tailer::poll`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tailed<'a> {
    /// A file is followed from `cursor` on.
    Opened(FileCursor),
    /// A complete line (without its newline) and the position after it.
    Line {
        /// The bytes of the line.
        line: &'a [u8],
        /// Right after the line's newline.
        cursor: FileCursor,
    },
    /// Bytes that will never be handed out.
    Lost {
        /// The file.
        file: FileId,
        /// How many bytes (0 when unknown).
        bytes: u64,
        /// Why.
        why: Loss,
    },
    /// The file is closed: everything in it was handed out.
    Closed(FileId),
}

/// Whether [`Tailer::poll`] should go on handing out lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop after this item; the rest stays for the next poll.
    Stop,
}

/// How a [`Tailer`] follows its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailConfig {
    /// The log's path.
    pub path: PathBuf,
    /// How long a rotated file must stay quiet (once the new file has
    /// data) before it is closed.
    pub rotate_wait: Duration,
    /// Longer lines are dropped and counted.
    pub max_line_bytes: usize,
    /// Rotated files kept open at most; beyond, the oldest is closed.
    pub max_rotated: usize,
}

/// What one poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Whether the consumer stopped the poll (more may be waiting).
    pub stopped: bool,
}

struct Followed {
    file: File,
    id: FileId,
    /// File offset of `buf[start]`: the end of the last line handed out.
    line_end: u64,
    fingerprint: Fingerprint,
    buf: Vec<u8>,
    start: usize,
    /// Dropping the rest of an overlong line, up to its newline.
    skipping: bool,
    /// When the last read returned data (or the file was opened).
    grew: Instant,
}

impl Followed {
    fn open(file: File, id: FileId, cursor: Option<FileCursor>) -> io::Result<Followed> {
        let mut f = Followed {
            file,
            id,
            line_end: 0,
            fingerprint: Fingerprint::default(),
            buf: Vec::new(),
            start: 0,
            skipping: false,
            grew: Instant::now(),
        };
        if let Some(c) = cursor {
            f.file.seek(SeekFrom::Start(c.offset))?;
            f.line_end = c.offset;
            f.fingerprint = c.fingerprint;
        }
        Ok(f)
    }

    fn cursor(&self) -> FileCursor {
        FileCursor {
            file: self.id,
            offset: self.line_end,
            fingerprint: self.fingerprint,
        }
    }

    fn read_pos(&self) -> u64 {
        self.line_end + (self.buf.len() - self.start) as u64
    }

    /// Hands out every complete line, reading to the end of the file.
    /// Returns whether the consumer stopped.
    fn drain(
        &mut self,
        max_line: usize,
        progress: &mut Progress,
        emit: &mut dyn FnMut(Tailed<'_>) -> Flow,
    ) -> io::Result<bool> {
        const CHUNK: usize = 64 * 1024;
        loop {
            while let Some(nl) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let line = &self.buf[self.start..self.start + nl];
                let end = self.line_end + nl as u64 + 1;
                let flow = if self.skipping || nl > max_line {
                    self.skipping = false;
                    self.fingerprint = Fingerprint::after_line(line);
                    emit(Tailed::Lost {
                        file: self.id,
                        bytes: nl as u64 + 1,
                        why: Loss::Overlong,
                    })
                } else {
                    self.fingerprint = Fingerprint::after_line(line);
                    emit(Tailed::Line {
                        line,
                        cursor: FileCursor {
                            file: self.id,
                            offset: end,
                            fingerprint: self.fingerprint,
                        },
                    })
                };
                self.start += nl + 1;
                self.line_end = end;
                if flow == Flow::Stop {
                    return Ok(true);
                }
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.buf.len() > max_line {
                // Drop what is buffered of an overlong line; its end (up to
                // the newline) is dropped when it comes.
                let n = self.buf.len();
                self.buf.clear();
                self.line_end += n as u64;
                self.skipping = true;
                if emit(Tailed::Lost {
                    file: self.id,
                    bytes: n as u64,
                    why: Loss::Overlong,
                }) == Flow::Stop
                {
                    return Ok(true);
                }
            }
            let len = self.buf.len();
            self.buf.resize(len + CHUNK, 0);
            let n = match self.file.read(&mut self.buf[len..]) {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            };
            self.buf.truncate(len + n);
            if n == 0 {
                // Keep the partial line's bytes only.
                self.buf.shrink_to(len.max(CHUNK.min(max_line)));
                return Ok(false);
            }
            self.grew = Instant::now();
            progress.bytes_read += n as u64;
        }
    }

    /// Whether the file was truncated since it was read: shorter than the
    /// read position, or no longer holding the last line read.
    fn truncated(&self) -> io::Result<bool> {
        let len = self.file.metadata()?.len();
        if len < self.read_pos() {
            return Ok(true);
        }
        Ok(!self.fingerprint.matches(&self.file, self.line_end)?)
    }

    fn restart(&mut self) -> io::Result<u64> {
        let dropped = (self.buf.len() - self.start) as u64;
        self.file.seek(SeekFrom::Start(0))?;
        self.buf.clear();
        self.start = 0;
        self.line_end = 0;
        self.fingerprint = Fingerprint::default();
        self.skipping = false;
        Ok(dropped)
    }
}

/// Follows one log path. See the module documentation.
pub struct Tailer {
    config: TailConfig,
    /// Files renamed away (or deleted) while nginx may still write to
    /// them, oldest first.
    rotated: VecDeque<Followed>,
    current: Option<Followed>,
    /// Where to resume, consumed by the first poll.
    restore: Option<Vec<FileCursor>>,
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tailer")
            .field("config", &self.config)
            .field("rotated", &self.rotated.len())
            .field("current", &self.current.as_ref().map(Followed::cursor))
            .finish_non_exhaustive()
    }
}

fn open_checked(path: &Path, id: FileId) -> io::Result<Option<File>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    Ok((FileId::of(&meta) == id && meta.is_file()).then_some(file))
}

/// Finds the file `id` in `dir` (a rotated log keeps its inode under its new
/// name).
fn find_in_dir(dir: &Path, id: FileId, skip: &Path) -> io::Result<Option<File>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let path = e.path();
        if path == skip {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_file()
            && FileId::of(&meta) == id
            && let Some(f) = open_checked(&path, id)?
        {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

impl Tailer {
    /// A tailer that resumes from `checkpoint` (the cursors a consumer
    /// persisted, oldest file first), or reads the file from its start when
    /// there is none. Nothing is opened before the first poll.
    pub fn new(config: TailConfig, checkpoint: Vec<FileCursor>) -> Tailer {
        Tailer {
            config,
            rotated: VecDeque::new(),
            current: None,
            restore: Some(checkpoint),
        }
    }

    /// The files followed now, oldest first, with the position read so far
    /// (complete lines).
    pub fn followed(&self) -> Vec<FileCursor> {
        self.rotated
            .iter()
            .chain(self.current.as_ref())
            .map(Followed::cursor)
            .collect()
    }

    fn resume(
        &mut self,
        checkpoint: Vec<FileCursor>,
        emit: &mut dyn FnMut(Tailed<'_>) -> Flow,
    ) -> io::Result<()> {
        let path = self.config.path.clone();
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_owned);
        let at_path = match fs::metadata(&path) {
            Ok(m) => Some(FileId::of(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        for c in checkpoint {
            let (file, is_current) = if at_path == Some(c.file) {
                (open_checked(&path, c.file)?, true)
            } else {
                (find_in_dir(&dir, c.file, &path)?, false)
            };
            let Some(file) = file else {
                tracing::warn!(
                    dev = c.file.dev,
                    ino = c.file.ino,
                    "a log file of the checkpoint is gone"
                );
                emit(Tailed::Lost {
                    file: c.file,
                    bytes: 0,
                    why: Loss::Missing,
                });
                continue;
            };
            let valid =
                file.metadata()?.len() >= c.offset && c.fingerprint.matches(&file, c.offset)?;
            let start = if valid {
                c
            } else {
                // Truncated (and maybe written again) while the agent was
                // stopped: read it from the start.
                FileCursor {
                    file: c.file,
                    offset: 0,
                    fingerprint: Fingerprint::default(),
                }
            };
            let f = Followed::open(file, c.file, Some(start))?;
            emit(Tailed::Opened(start));
            if is_current {
                self.current = Some(f);
            } else {
                self.rotated.push_back(f);
            }
        }
        Ok(())
    }

    /// Opens the file at the path, if there is one not followed yet.
    fn open_current(&mut self, emit: &mut dyn FnMut(Tailed<'_>) -> Flow) -> io::Result<bool> {
        let file = match File::open(&self.config.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let id = FileId::of(&meta);
        if !meta.is_file() || self.rotated.iter().any(|r| r.id == id) {
            return Ok(false);
        }
        let f = Followed::open(file, id, None)?;
        emit(Tailed::Opened(f.cursor()));
        self.current = Some(f);
        Ok(true)
    }

    /// Closes the oldest rotated files beyond the limit, counting what was
    /// left unread in them.
    fn limit_rotated(&mut self, emit: &mut dyn FnMut(Tailed<'_>) -> Flow) {
        while self.rotated.len() > self.config.max_rotated {
            if let Some(old) = self.rotated.pop_front() {
                let unread = old
                    .file
                    .metadata()
                    .map_or(0, |m| m.len().saturating_sub(old.line_end));
                emit(Tailed::Lost {
                    file: old.id,
                    bytes: unread,
                    why: Loss::TooManyRotated,
                });
                emit(Tailed::Closed(old.id));
            }
        }
    }

    /// Notices a rotation without handing out lines, for when the consumer
    /// has no room (the master is away): the renamed file is kept open as
    /// a rotated file and the new one opened, so that a backlog spanning
    /// several rotations is kept, up to the limit of rotated files, and
    /// what has to be given up beyond it is counted ([`Loss::TooManyRotated`])
    /// instead of never being seen. Emits no [`Tailed::Line`].
    pub fn watch(&mut self, emit: &mut dyn FnMut(Tailed<'_>) -> Flow) -> io::Result<()> {
        if let Some(checkpoint) = self.restore.take() {
            self.resume(checkpoint, emit)?;
        }
        let at_path = match fs::metadata(&self.config.path) {
            Ok(m) => Some(FileId::of(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(cur) = &self.current
            && at_path != Some(cur.id)
            && let Some(mut old) = self.current.take()
        {
            old.grew = Instant::now();
            self.rotated.push_back(old);
        }
        if self.current.is_none() && at_path.is_some() {
            self.open_current(emit)?;
        }
        self.limit_rotated(emit);
        Ok(())
    }

    /// Reads what is new and hands it out through `emit`, in file order
    /// (rotated files first). Stops early when `emit` says so; the rest is
    /// handed out by the next poll.
    pub fn poll(&mut self, emit: &mut dyn FnMut(Tailed<'_>) -> Flow) -> io::Result<Progress> {
        let mut progress = Progress::default();
        if let Some(checkpoint) = self.restore.take() {
            self.resume(checkpoint, emit)?;
        }
        let max_line = self.config.max_line_bytes;

        // Rotated files first: their lines are older.
        self.limit_rotated(emit);
        let new_has_data = self.current.as_ref().is_some_and(|c| c.read_pos() > 0);
        let mut i = 0;
        while i < self.rotated.len() {
            let f = &mut self.rotated[i];
            if f.drain(max_line, &mut progress, emit)? {
                progress.stopped = true;
                return Ok(progress);
            }
            if new_has_data && f.grew.elapsed() >= self.config.rotate_wait {
                if f.start < f.buf.len() && !f.skipping {
                    // nginx writes whole lines; an unterminated remainder
                    // this old is all there will ever be of that line.
                    let line = &f.buf[f.start..];
                    let end = f.line_end + line.len() as u64;
                    let cursor = FileCursor {
                        file: f.id,
                        offset: end,
                        fingerprint: Fingerprint::default(),
                    };
                    if emit(Tailed::Line { line, cursor }) == Flow::Stop {
                        f.start = f.buf.len();
                        f.line_end = end;
                        progress.stopped = true;
                        return Ok(progress);
                    }
                }
                let id = f.id;
                self.rotated.remove(i);
                emit(Tailed::Closed(id));
                continue;
            }
            i += 1;
        }

        for _ in 0..2 {
            if self.current.is_none() && !self.open_current(emit)? {
                return Ok(progress);
            }
            let Some(cur) = self.current.as_mut() else {
                return Ok(progress);
            };
            if cur.truncated()? {
                let dropped = cur.restart()?;
                tracing::info!(path = %self.config.path.display(), "the access log was truncated; reading it from the start");
                let flow = emit(Tailed::Lost {
                    file: cur.id,
                    bytes: dropped,
                    why: Loss::Truncated,
                });
                if flow == Flow::Stop {
                    progress.stopped = true;
                    return Ok(progress);
                }
            }
            if cur.drain(max_line, &mut progress, emit)? {
                progress.stopped = true;
                return Ok(progress);
            }
            // At the end of the file: is it still the one at the path?
            let now_at_path = match fs::metadata(&self.config.path) {
                Ok(m) => Some(FileId::of(&m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            if now_at_path == Some(cur.id) {
                return Ok(progress);
            }
            // Renamed away or deleted: drain it as a rotated file from now
            // on, and follow the new file (if there is one yet).
            if let Some(mut old) = self.current.take() {
                old.grew = Instant::now();
                self.rotated.push_back(old);
            }
        }
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn config(path: &Path) -> TailConfig {
        TailConfig {
            path: path.to_owned(),
            rotate_wait: Duration::ZERO,
            max_line_bytes: 64,
            max_rotated: 4,
        }
    }

    /// Polls once and returns the lines and losses.
    fn poll(t: &mut Tailer) -> (Vec<String>, Vec<Loss>) {
        let mut lines = Vec::new();
        let mut lost = Vec::new();
        t.poll(&mut |x| {
            match x {
                Tailed::Line { line, .. } => lines.push(String::from_utf8_lossy(line).into_owned()),
                Tailed::Lost { why, .. } => lost.push(why),
                _ => {}
            }
            Flow::Continue
        })
        .unwrap();
        (lines, lost)
    }

    fn append(path: &Path, text: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "one\ntw");
        let mut t = Tailer::new(config(&p), Vec::new());
        assert_eq!(poll(&mut t).0, ["one"]);
        append(&p, "o\nthree");
        assert_eq!(poll(&mut t).0, ["two"]);
        append(&p, "\n");
        assert_eq!(poll(&mut t).0, ["three"]);
        assert_eq!(poll(&mut t).0, Vec::<String>::new());
    }

    #[test]
    fn rename_rotation_finishes_the_old_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "1\n2\n");
        let mut t = Tailer::new(config(&p), Vec::new());
        assert_eq!(poll(&mut t).0, ["1", "2"]);
        fs::rename(&p, dir.path().join("a.log.1")).unwrap();
        // nginx writes to the old file until it reopens its logs.
        append(&dir.path().join("a.log.1"), "3\n");
        assert_eq!(poll(&mut t).0, ["3"]);
        append(&dir.path().join("a.log.1"), "4\n");
        append(&p, "5\n");
        assert_eq!(poll(&mut t).0, ["4", "5"]);
        assert_eq!(t.followed().len(), 2);
        // The new file has data and the old one is quiet: closed.
        assert_eq!(poll(&mut t).0, Vec::<String>::new());
        assert_eq!(t.followed().len(), 1);
    }

    #[test]
    fn truncation_is_seen_even_when_the_file_grew_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "aaaa\nbbbb\n");
        let mut t = Tailer::new(config(&p), Vec::new());
        assert_eq!(poll(&mut t).0.len(), 2);
        fs::write(&p, "").unwrap();
        append(&p, "cccc\ndddd\neeee\n");
        assert_eq!(
            poll(&mut t),
            (
                vec!["cccc".into(), "dddd".into(), "eeee".into()],
                vec![Loss::Truncated]
            )
        );
        fs::write(&p, "f\n").unwrap();
        assert_eq!(poll(&mut t), (vec!["f".into()], vec![Loss::Truncated]));
    }

    #[test]
    fn overlong_lines_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, &format!("ok\n{}\nafter\n", "x".repeat(200)));
        let mut t = Tailer::new(config(&p), Vec::new());
        let (lines, lost) = poll(&mut t);
        assert_eq!(lines, ["ok", "after"]);
        assert!(!lost.is_empty() && lost.iter().all(|l| *l == Loss::Overlong));
    }

    #[test]
    fn resumes_from_a_checkpoint_also_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "1\n2\n");
        let mut t = Tailer::new(config(&p), Vec::new());
        let mut cursors = Vec::new();
        t.poll(&mut |x| {
            if let Tailed::Line { cursor, .. } = x {
                cursors.push(cursor);
            }
            Flow::Continue
        })
        .unwrap();
        // Stopped after shipping "1" only.
        let saved = vec![cursors[0]];
        drop(t);
        append(&p, "3\n");
        fs::rename(&p, dir.path().join("a.log.1")).unwrap();
        append(&p, "4\n");
        let mut t = Tailer::new(config(&p), saved.clone());
        assert_eq!(poll(&mut t).0, ["2", "3", "4"]);
        // A checkpoint whose file was truncated and rewritten is read again.
        fs::write(dir.path().join("a.log.1"), "z\nzz\nzzz\n").unwrap();
        let mut t = Tailer::new(config(&p), saved);
        let (lines, _) = poll(&mut t);
        assert_eq!(lines, ["z", "zz", "zzz", "4"]);
    }

    #[test]
    fn watching_keeps_rotated_backlog_up_to_the_limit_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "a1\na2\n");
        let mut t = Tailer::new(
            TailConfig {
                max_rotated: 1,
                ..config(&p)
            },
            Vec::new(),
        );
        let mut events = Vec::new();
        let mut record = |x: Tailed<'_>| {
            match x {
                Tailed::Line { .. } => panic!("watch handed out a line"),
                Tailed::Lost { bytes, why, .. } => events.push(format!("lost {bytes} {why:?}")),
                Tailed::Opened(_) => events.push("opened".to_owned()),
                Tailed::Closed(_) => events.push("closed".to_owned()),
            }
            Flow::Continue
        };
        t.watch(&mut record).unwrap();
        for n in 1..=2 {
            fs::rename(&p, dir.path().join(format!("a.log.{n}"))).unwrap();
            append(&p, &format!("b{n}\n"));
            t.watch(&mut record).unwrap();
        }
        // The first file (6 bytes, none read) was given up for the third.
        assert_eq!(
            events,
            [
                "opened",
                "opened",
                "opened",
                "lost 6 TooManyRotated",
                "closed"
            ]
        );
        assert_eq!(poll(&mut t).0, ["b1", "b2"]);
    }

    #[test]
    fn stop_keeps_the_rest_for_the_next_poll() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "1\n2\n3\n");
        let mut t = Tailer::new(config(&p), Vec::new());
        let mut got = Vec::new();
        let progress = t
            .poll(&mut |x| {
                if let Tailed::Line { line, .. } = x {
                    got.push(line.to_vec());
                    return Flow::Stop;
                }
                Flow::Continue
            })
            .unwrap();
        assert!(progress.stopped);
        assert_eq!(got, [b"1".to_vec()]);
        assert_eq!(poll(&mut t).0, ["2", "3"]);
    }
}
