//! The rotation engine behind the `rekey` binary, as a library.
//!
//! One engine runs every rotation: a [`Source`](engine::Source) streams the
//! units of a target (files of a directory, records of an export; later S3
//! objects and table rows), the engine transforms their items with bounded
//! parallelism, retries, sampling, sharding and a journal, and a
//! [`Sink`](engine::Sink) makes the results durable (files replaced in
//! place, an ordered output stream with checkpoints; a dry run writes
//! nothing, a scan only counts). The binary parses arguments, builds the
//! keyrings and a source and sink, and maps [`engine::Error`] to exit codes;
//! nothing here knows about the command line.
#![forbid(unsafe_code)]

pub mod engine;
pub mod fsio;
