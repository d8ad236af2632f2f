//! Sans-IO FTP protocol core: no sockets, no rings, no clocks. Everything here is pure code driven by
//! bytes and events, so it can be unit-tested, property-tested and fuzzed without a network.

pub mod ascii;
pub mod checksum;
pub mod client;
pub mod command;
pub mod glob;
pub mod listing;
pub mod modeb;
pub mod modee;
pub mod path;
pub mod proxy;
pub mod reply;
pub mod session;
pub mod site;
