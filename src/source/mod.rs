//! Identity sources: where a request's credentials are recognised.
//!
//! They are asked in a fixed order: TOML users first (a TOML user always wins), then JWTs.

pub mod jwks;
pub mod jwt;
pub mod users;
