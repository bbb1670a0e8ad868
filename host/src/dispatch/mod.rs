//! The three ways plugins are used (Avocado's patterns):
//!
//! - [`driver`]: exactly one implementation per scope, chosen by name.
//! - [`extension`]: every enabled plugin acts, in a defined order, one result each.
//! - [`proxy`]: many named instances with their own arguments and exclusive claims.

pub mod driver;
pub mod extension;
pub mod proxy;
