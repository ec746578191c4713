//! The address allocator (placeholder until the allocator lands).
