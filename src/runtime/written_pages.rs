//! Which pages of a memory image instances write, so that later instances get them copied up
//! front instead of faulting on them.
//!
//! A memory image is mapped copy-on-write. A page an instance first reads and then writes
//! faults twice, and the second fault replaces a mapping other cores may have cached, so the
//! kernel interrupts every core running the process to flush it (a TLB shoot-down; under a
//! hypervisor each interrupt is a VM exit). Profiled on php-cgi's hello.php, those flushes were
//! 40% of a request's CPU. Requests to one program write nearly the same pages every time
//! (hello.php: the same 233 pages in 18 runs), so the pages the first instances wrote, as the
//! kernel's page map reports them, are copied into every later instance in one
//! `MADV_POPULATE_WRITE` per run before the guest starts: one fault-free copy each, no
//! shoot-down.
//!
//! Only page numbers are learned, never contents: what a prefaulted page holds is the image's
//! own page, exactly what the guest would have seen on its first read.

use std::ops::Range;
use std::sync::{Arc, Mutex};

/// How many instances' writes are learned from; later ones only use what was learned.
const LEARN_FROM: u32 = 8;
/// Runs closer than this many pages are copied as one, pages between included: fewer calls
/// for a few extra page copies.
const MERGE_GAP: usize = 8;

/// Page-map entry bits: the page is present, and it is the file's page (not yet copied).
const PRESENT: u64 = 1 << 63;
const FILE_PAGE: u64 = 1 << 61;

/// What instances of one image wrote.
#[derive(Debug, Default)]
pub struct WrittenPages {
    learned: Mutex<Learned>,
}

#[derive(Debug, Default)]
struct Learned {
    instances: u32,
    /// One flag a page of the image: written by some instance learned from.
    written: Vec<bool>,
    /// `written` as page ranges, merged across small gaps.
    runs: Arc<[Range<usize>]>,
}

impl WrittenPages {
    /// The page ranges to copy into a new instance.
    pub fn runs(&self) -> Arc<[Range<usize>]> {
        self.lock().runs.clone()
    }

    /// Whether an instance's page map is still wanted.
    pub fn learning(&self) -> bool {
        self.lock().instances < LEARN_FROM
    }

    /// Takes in the page-map entries of an instance's image range, when it is done.
    pub fn record(&self, entries: &[u64]) {
        let mut learned = self.lock();
        if learned.instances >= LEARN_FROM {
            return;
        }
        learned.instances += 1;
        if learned.written.len() < entries.len() {
            learned.written.resize(entries.len(), false);
        }
        let mut changed = false;
        for (page, entry) in entries.iter().enumerate() {
            // Present but not the file's page: the instance wrote it (or it was prefaulted,
            // which is also a page an instance wrote).
            if entry & PRESENT != 0 && entry & FILE_PAGE == 0 && !learned.written[page] {
                learned.written[page] = true;
                changed = true;
            }
        }
        if changed {
            learned.runs = runs(&learned.written).into();
        }
        if learned.instances == LEARN_FROM {
            let pages: usize = learned.runs.iter().map(|run| run.len()).sum();
            tracing::debug!(
                "memory image: instances write {pages} of its pages, in {} runs; later \
                 instances get them copied in up front",
                learned.runs.len()
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Learned> {
        self.learned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The set pages of `written` as ranges, merging runs separated by fewer than `MERGE_GAP`.
fn runs(written: &[bool]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (page, _) in written.iter().enumerate().filter(|(_, written)| **written) {
        match runs.last_mut() {
            Some(last) if page - last.end < MERGE_GAP => last.end = page + 1,
            _ => runs.push(page..page + 1),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITTEN: u64 = PRESENT;
    const READ: u64 = PRESENT | FILE_PAGE;

    #[test]
    fn written_pages_become_runs_merged_across_small_gaps() {
        let pages = WrittenPages::default();
        let mut entries = vec![0u64; 64];
        entries[0] = WRITTEN;
        entries[1] = WRITTEN;
        entries[5] = WRITTEN; // within the gap: one run 0..6
        entries[6] = READ; // only read: not learned
        entries[40] = WRITTEN;
        pages.record(&entries);
        assert_eq!(&*pages.runs(), &[0..6, 40..41]);

        // Another instance's writes are added to what was learned.
        let mut entries = vec![0u64; 64];
        entries[63] = WRITTEN;
        pages.record(&entries);
        assert_eq!(&*pages.runs(), &[0..6, 40..41, 63..64]);
    }

    #[test]
    fn learning_stops_after_the_first_instances() {
        let pages = WrittenPages::default();
        for _ in 0..LEARN_FROM {
            assert!(pages.learning());
            pages.record(&[0; 4]);
        }
        assert!(!pages.learning());
        pages.record(&[WRITTEN; 4]);
        assert!(pages.runs().is_empty(), "nothing is learned after");
    }
}
