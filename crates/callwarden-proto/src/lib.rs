//! The `callwarden.v1` gRPC contract: messages, clients and servers generated from `proto/`.
//!
//! Every other crate that speaks the wire protocol (the server, the load generator, the
//! end-to-end tests) uses these types, so the contract is compiled in exactly one place.

pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("callwarden.v1");

    /// Encoded `FileDescriptorSet` of the contract, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("callwarden_descriptor");
}
