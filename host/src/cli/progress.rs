//! Progress bars (indicatif) per pass, with rate and ETA; only on a terminal
//! and never with `--json` or `-q`.

use super::GlobalArgs;
use crate::run::{FollowProgress, Observer};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;

pub struct Bars {
    enabled: bool,
    multi: MultiProgress,
    bars: Mutex<BTreeMap<u32, ProgressBar>>,
    /// The follow phase's line, once it started.
    follow: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn for_terminal(global: &GlobalArgs) -> Self {
        let enabled = std::io::stderr().is_terminal() && !global.json && !global.quiet;
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bars {
            enabled,
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::default(),
            follow: Mutex::default(),
        }
    }
}

impl Observer for Bars {
    fn wants_totals(&self) -> bool {
        self.enabled
    }

    fn pass_started(&self, pass: u32, name: &str, remaining: Option<u64>, done: u64) {
        if !self.enabled {
            return;
        }
        let bar = self.multi.add(ProgressBar::new(remaining.unwrap_or(0) + done));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} docs  {per_sec}  ETA {eta}  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        // The pass name is the plugin's: escaped like every line we print.
        bar.set_prefix(format!("pass {pass} {}", crate::text::escape(name)));
        bar.set_position(done);
        self.bars.lock().unwrap().insert(pass, bar);
    }

    fn batch_done(&self, pass: u32, documents: u64) {
        if let Some(bar) = self.bars.lock().unwrap().get(&pass) {
            bar.inc(documents);
        }
    }

    fn pass_finished(&self, pass: u32) {
        if let Some(bar) = self.bars.lock().unwrap().get(&pass) {
            bar.finish();
        }
    }

    fn health(&self, text: &str) {
        for bar in self.bars.lock().unwrap().values() {
            bar.set_message(text.to_string());
        }
    }

    fn follow(&self, progress: &FollowProgress) {
        if !self.enabled {
            return;
        }
        let mut line = self.follow.lock().unwrap();
        let bar = line.get_or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{prefix:>16} {spinner} {msg}").expect("valid template"));
            bar.set_prefix("follow");
            bar.enable_steady_tick(std::time::Duration::from_millis(250));
            bar
        });
        let lag = progress.lag.map_or_else(
            || "caught up".to_string(),
            |lag| format!("lag {:.1} s", lag.as_secs_f64()),
        );
        let state = match progress.cutting_over {
            true => "cutting over",
            false => "until `godwit cutover`",
        };
        bar.set_message(format!(
            "{} docs in {} windows, {} pending, {lag}, {state}",
            progress.documents, progress.windows, progress.pending
        ));
    }

    fn paused(&self, paused: bool) {
        for bar in self.bars.lock().unwrap().values() {
            bar.set_message(if paused { "paused" } else { "" });
        }
    }
}
