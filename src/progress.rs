//! Progress for long work: an indicatif bar on a terminal; elsewhere (CI,
//! container logs, a pipe) one plain line every few seconds, so the log
//! shows that work goes on and how far it got.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;

/// How often the plain form prints a line.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// A progress display; cheap to update from a hot loop.
pub struct Progress {
    bar: ProgressBar,
    plain: Option<Mutex<Plain>>,
}

struct Plain {
    what: String,
    len: u64,
    pos: u64,
    msg: String,
    started: Instant,
    printed: Instant,
}

impl Plain {
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = self.pos as f64 / secs.max(1e-9);
        let msg = if self.msg.is_empty() {
            String::new()
        } else {
            format!(" {}", self.msg)
        };
        format!(
            "{}: {}/{}{msg} ({}/s, {secs:.0} s)",
            self.what,
            self.pos,
            self.len,
            crate::human::count(rate)
        )
    }
}

impl Progress {
    /// Progress over `len` steps of `what` ("loading", "ticks").
    pub fn new(len: u64, what: &str) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(len);
            if let Ok(style) = ProgressStyle::with_template(&format!(
                "{what} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}"
            )) {
                bar.set_style(style.progress_chars("=> "));
            }
            return Progress { bar, plain: None };
        }
        let now = Instant::now();
        Progress {
            bar: ProgressBar::hidden(),
            plain: Some(Mutex::new(Plain {
                what: what.to_string(),
                len,
                pos: 0,
                msg: String::new(),
                started: now,
                printed: now,
            })),
        }
    }

    /// No progress shown at all.
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            plain: None,
        }
    }

    fn plain(&self, f: impl FnOnce(&mut Plain)) {
        if let Some(p) = &self.plain {
            let mut p = p.lock();
            f(&mut p);
            if p.printed.elapsed() >= PLAIN_EVERY {
                p.printed = Instant::now();
                eprintln!("{}", p.line());
            }
        }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.plain(|p| p.pos += n);
    }

    /// What is going on now, e.g. the tick and phase.
    pub fn set_message(&self, msg: String) {
        self.plain(|p| p.msg = msg.clone());
        self.bar.set_message(msg);
    }

    /// A line above the bar (or in the log).
    pub fn println(&self, line: impl AsRef<str>) {
        if self.plain.is_some() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    /// Done: the bar goes away; the plain form says where it ended.
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
        if let Some(p) = &self.plain {
            eprintln!("{} done", p.lock().line());
        }
    }

    /// Stopped short: the bar stays where it was.
    pub fn abandon(&self) {
        self.bar.abandon();
        if let Some(p) = &self.plain {
            eprintln!("{} stopped", p.lock().line());
        }
    }
}
