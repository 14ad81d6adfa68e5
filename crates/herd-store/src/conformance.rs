//! The conformance suite every backend passes: the same cases, run against a fresh store of
//! each backend (see `conformance_suite!`).
