//! Integration tests: real coordinator and shard processes on loopback,
//! real RocksDB in temporary folders. One test binary, one fixtures module.

mod atomese;
mod bad_input;
mod cli;
mod cluster;
mod containers;
mod durability;
mod epoch;
mod hardening;
mod inproc;
mod oracle;
mod ticks;
mod tls;
mod tools;
mod util;
