//! The gRPC services. Each handler parses its request at the edge into domain types (see
//! [`convert`]), calls the domain and storage, and maps errors through [`crate::error`].

pub mod blocklist;
pub mod console;
pub mod convert;
pub mod review;
pub mod screening;
