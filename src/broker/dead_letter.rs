//! Dead-lettering.
