//! Integration tests of the reference master.
