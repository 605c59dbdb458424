//! Integration tests of the agent: the connection manager against a
//! scripted fake master on loopback, and the nginx runtime against a real
//! nginx in a temporary prefix.

mod access_log;
mod agent_binary;
mod binary;
mod commands;
mod config_updates;
mod crash;
mod deploy;
mod drift;
mod nginx_runtime;
mod nginx_support;
mod registration;
mod support;
mod tls;
mod upstream_health;
mod validate_config;
