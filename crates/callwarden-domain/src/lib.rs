//! Callwarden's domain: what a caller, a line, a rule and a decision are, and how a decision is
//! reached. Pure code with no I/O, so every rule of the product can be tested without servers.
//!
//! Everything that crosses the edge of the service is parsed here once into a type that cannot
//! hold an invalid value: [`phone::E164`], [`phone::CallerId`], [`line::LineId`],
//! [`rule::Pattern`], [`rule::OperatorId`].

pub mod call;
pub mod chain;
pub mod decision;
pub mod incident;
pub mod line;
pub mod phone;
pub mod policy;
pub mod report;
pub mod review;
pub mod rule;
