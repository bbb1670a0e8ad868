//! Forwards a plugin's `tracing` records to the host.
//!
//! A cdylib has its own copy of every static, `tracing`'s global dispatcher included, so
//! without this a plugin's `tracing::info!` would go nowhere. On the first instance, the
//! plugin library installs a subscriber that formats each record and hands it to the host,
//! which prints it through its own `tracing`, tagged with the plugin's name.

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
};

use abi_stable::std_types::RStr;
use tracing_core::{
    field::{Field, Visit},
    span, Event, Level, LevelFilter, Metadata, Subscriber,
};

use crate::abi::HostContextBox;

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Installs the bridge once per plugin library; later calls do nothing.
pub(crate) fn install(host: &HostContextBox) {
    INSTALLED.get_or_init(|| {
        let max = level_filter(host.max_log_level());
        let bridge = Bridge {
            host: host.clone(),
            max,
            next_span: AtomicU64::new(1),
        };
        // Fails only if the plugin installed its own subscriber first: that one wins.
        let _ = tracing::subscriber::set_global_default(bridge);
    });
}

fn level_filter(level: u8) -> LevelFilter {
    match level {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The wire number of a level: 1 (error) to 5 (trace).
pub fn level_number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

struct Bridge {
    host: HostContextBox,
    max: LevelFilter,
    next_span: AtomicU64,
}

impl Subscriber for Bridge {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _span: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}

    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        let meta = event.metadata();
        self.host.log(
            level_number(meta.level()),
            RStr::from_str(meta.target()),
            RStr::from_str(&line.text),
        );
    }

    fn enter(&self, _span: &span::Id) {}

    fn exit(&self, _span: &span::Id) {}
}

/// The message first, then `key=value` for every other field.
#[derive(Default)]
struct Line {
    text: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.text);
            let _ = write!(self.text, "{value:?}");
            if !rest.is_empty() {
                self.text.push(' ');
                self.text.push_str(&rest);
            }
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let _ = write!(self.text, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let _ = write!(self.text, "{}={value}", field.name());
        }
    }
}
