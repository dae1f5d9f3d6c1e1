//! keyreg's integration tests: one binary (it builds once), one module per
//! area, helpers in `support`.

mod support;

mod chain;
mod crash;
mod property;
mod schemas;
mod secrets;
