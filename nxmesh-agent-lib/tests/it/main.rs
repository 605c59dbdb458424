//! Integration tests of the agent: the connection manager against a
//! scripted fake master on loopback, and the nginx runtime against a real
//! nginx in a temporary prefix.

mod binary;
mod commands;
mod config_updates;
mod nginx_runtime;
mod nginx_support;
mod registration;
mod support;
mod tls;
