//! Allocator benchmark (placeholder).

fn main() {}
