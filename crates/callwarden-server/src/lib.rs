//! The Callwarden service: configuration, the gRPC services, the HTTP side and the composition
//! root. The `callwarden` binary (`main.rs`) is a thin shell around [`startup::Application`].

pub mod auth;
pub mod clock;
pub mod config;
pub mod desk;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod health;
pub mod http;
pub mod hub;
pub mod i18n;
pub mod memo;
pub mod reports;
pub mod startup;
pub mod telemetry;
pub mod tls;
