//! `memory::release_free_pages` hands freed memory back to the kernel. Its own test binary:
//! the figure is the process's RSS, which other tests' allocations would move.

use herald_speaker::memory::release_free_pages;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[test]
fn freed_small_allocations_leave_the_resident_set() {
    // 64 MiB in 512-byte blocks, as a snapshot's strings and nodes are; every 64th stays,
    // so no page is entirely free at the top of the heap for the allocator to give back
    // on its own, but most pages hold nothing alive.
    let mut blocks: Vec<Vec<u8>> = (0..131_072).map(|i| vec![(i % 251) as u8; 512]).collect();
    let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(64).map(std::mem::take).collect();
    let full = rss_kib();
    drop(blocks);
    let freed = rss_kib();
    release_free_pages();
    let released = rss_kib();
    assert_eq!(kept.len(), 2048);
    assert!(
        full > 60 * 1024,
        "the blocks were resident: {full} KiB with 64 MiB allocated"
    );
    assert!(
        freed + 16 * 1024 > full,
        "freeing alone already returned the memory ({full} -> {freed} KiB): the test no \
         longer shows anything"
    );
    assert!(
        released + 32 * 1024 < freed,
        "release_free_pages gave back less than 32 MiB of 63 MiB freed: RSS {freed} -> \
         {released} KiB"
    );
}
