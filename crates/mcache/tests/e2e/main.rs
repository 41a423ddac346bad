//! End-to-end tests of the real `mcache` binary against the hub emulator started in-process, with
//! a temporary hub cache, `HF_HOME` and data folder per test. Nothing reaches the internet.

mod common;

mod basics;
mod bucket;
mod convert;
mod crash;
mod errors;
mod import;
mod interrupt;
mod json;
mod manage;
mod native_host;
mod peers;
mod pull;
mod queue;
mod terminal;
