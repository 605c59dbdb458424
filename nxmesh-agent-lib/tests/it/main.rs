//! Integration tests of the agent connection manager against a scripted
//! fake master on loopback.

mod commands;
mod config_updates;
mod registration;
mod support;
mod tls;
