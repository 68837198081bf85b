//! Shared by the integration tests (and, by path, the examples).

pub mod corpus;
pub mod strategy;
