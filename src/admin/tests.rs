//! Admin server tests.
