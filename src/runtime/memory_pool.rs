//! Linear memories whose address-space reservations outlive their instances.
//!
//! Each instance's memory is an 8 GiB reservation (4 GiB of wasm32 address space plus a 4 GiB
//! guard, so compiled code needs no bounds checks). Mapping and unmapping one per request cost
//! more than the guest itself: `munmap` of a region other threads may have touched shoots down
//! TLBs on every core. Here a reservation that an instance is done with is emptied and kept
//! for the next instance:
//! - a small guest's few touched pages (the kernel's page map says which pages are backed) are
//!   zeroed in place: no system call changes the mapping, so no TLB shoot-down, and the next
//!   instance finds them already mapped instead of faulting each one in;
//! - a large one's pages are dropped (`MADV_DONTNEED`), so they read as zeros on next touch and
//!   the memory goes back to the system;
//! - a memory image (see `memory_image`) stays mapped: the pages the instance wrote (the page
//!   map tells them from the image's own pages) are copied back from the image in place, and
//!   the reservation goes to the next instance of the same image. A mapping replaced on every
//!   request made each page faulted twice (read, then copy on write), and the second fault
//!   shoots down TLBs on every core (40% of php-cgi's hello.php under perf); kept resident, the
//!   pages a program uses are simply there.
//!
//! Isolation does not depend on anything the previous guest did: every page that is backed at
//! all is zeroed, dropped or restored from the image, pages past the new instance's size are
//! made inaccessible again, and a reservation whose emptying fails is unmapped instead of
//! reused.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use wasmer::sys::vm::{LinearMemory, VMMemoryDefinition, VMOwnedMemory};
use wasmer::{MemoryError, MemoryType, Pages};
use wasmer_types::MemoryStyle;

use super::memory_image::MemoryImage;

/// Pages of an emptied memory that may be zeroed in place and stay resident; a memory with
/// more backed pages than this is given back to the kernel instead. Bounds the resident size
/// of idle memories (at most this much each) and the work of zeroing.
const KEEP_RESIDENT_PAGES: usize = 256;
/// Memories larger than this are always given back to the kernel: reading their page map
/// would cost more than faulting pages in again.
const SCAN_LIMIT_BYTES: usize = 16 << 20;
/// Pages of a memory image an instance may have written for the reservation to be restored
/// in place; past it the image is mapped afresh (copying would cost more than faulting).
const RESTORE_LIMIT_PAGES: usize = 8192;

/// Page-map entry bits: present in RAM, in swap, and "file page or shared": a present page of
/// a private file mapping without it is the process's own copy, made when it was written.
const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
const FILE_PAGE: u64 = 1 << 61;

/// Emptied reservations waiting for an instance.
pub struct MemoryPool {
    idle: Mutex<Vec<Reservation>>,
    /// How many idle reservations to keep; the rest are unmapped.
    keep: usize,
    /// `/proc/self/pagemap`, which says which pages are backed; without it every memory is
    /// emptied with `MADV_DONTNEED`.
    page_map: Option<File>,
}

impl MemoryPool {
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(MemoryPool {
            idle: Mutex::new(Vec::with_capacity(keep)),
            keep,
            page_map: File::open("/proc/self/pagemap").ok(),
        })
    }

    /// A memory of type `ty` for an instance, its definition written to `definition`, starting
    /// with the contents of `image` (mapped copy-on-write) when there is one.
    ///
    /// # Safety
    /// `definition` must point to the instance's memory definition and stay valid for as long
    /// as the returned memory lives (the engine guarantees both for `create_vm_memory`).
    pub unsafe fn memory(
        self: &Arc<Self>,
        ty: &MemoryType,
        style: &MemoryStyle,
        definition: NonNull<VMMemoryDefinition>,
        image: Option<&Arc<MemoryImage>>,
    ) -> Result<PooledMemory, MemoryError> {
        let reserved = static_reservation_len(style)?;
        let mut region = match self.take(reserved, image) {
            Some(region) => region,
            None => Reservation::map(reserved).map_err(region_error)?,
        };
        let size = ty.minimum;
        let prepared = region.prepare(size.bytes().0, image);
        if let Err(error) = prepared {
            self.give_back(region);
            return Err(region_error(error));
        }
        let mut memory = PooledMemory {
            region: Some(region),
            pool: self.clone(),
            definition,
            ty: *ty,
            style: *style,
            size,
            refused_growth: false,
        };
        memory.publish();
        Ok(memory)
    }

    /// An idle reservation of `len` bytes, one that already holds `image` if there is one.
    fn take(&self, len: usize, image: Option<&Arc<MemoryImage>>) -> Option<Reservation> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let index = idle
            .iter()
            .rposition(|region| region.len == len && region.holds(image))
            .or_else(|| idle.iter().rposition(|region| region.len == len))?;
        Some(idle.swap_remove(index))
    }

    fn give_back(&self, mut region: Reservation) {
        if let Err(error) = region.empty(self.page_map.as_ref()) {
            // Unmapped (by drop) rather than reused with contents we could not clear.
            tracing::warn!("could not empty an instance's memory for reuse: {error}");
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < self.keep {
            idle.push(region);
        }
    }
}

/// The length of the reservation a memory of `style` needs.
fn static_reservation_len(style: &MemoryStyle) -> Result<usize, MemoryError> {
    let MemoryStyle::Static = style else {
        return Err(MemoryError::Generic(
            "only static memories are pooled".to_string(),
        ));
    };
    let bound = MemoryStyle::static_bound().bytes().0 as u64;
    usize::try_from(bound + style.offset_guard_size())
        .map_err(|_| MemoryError::Generic("the memory reservation does not fit".to_string()))
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

fn region_error(error: io::Error) -> MemoryError {
    MemoryError::Region(error.to_string())
}

/// One mapping: `accessible` bytes from its start are readable and writable, the rest is
/// reserved and inaccessible; its start may be `image`'s file mapped copy-on-write. Unmapped
/// when dropped.
struct Reservation {
    base: NonNull<u8>,
    len: usize,
    accessible: usize,
    image: Option<Arc<MemoryImage>>,
}

// SAFETY: the reservation is plain address space owned by this value alone; which thread
// maps, protects or unmaps it does not matter.
unsafe impl Send for Reservation {}

impl Reservation {
    fn map(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
        // existing memory.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(address.cast()).ok_or_else(io::Error::last_os_error)?;
        // Huge pages would make every touched byte zero 2 MiB when the memory is emptied.
        // SAFETY: advice on a mapping this function just made; failure only loses the advice.
        unsafe { libc::madvise(address, len, libc::MADV_NOHUGEPAGE) };
        Ok(Reservation {
            base,
            len,
            accessible: 0,
            image: None,
        })
    }

    /// Whether the image's range holds `image` (restored), or no image when `None`.
    fn holds(&self, image: Option<&Arc<MemoryImage>>) -> bool {
        match (&self.image, image) {
            (Some(held), Some(wanted)) => Arc::ptr_eq(held, wanted),
            (None, None) => true,
            _ => false,
        }
    }

    /// Makes exactly the first `bytes` bytes accessible, starting with `image` (or zeros),
    /// keeping a mapping of that image already there.
    fn prepare(&mut self, bytes: usize, image: Option<&Arc<MemoryImage>>) -> io::Result<()> {
        if self.holds(image) {
            return self.set_accessible(bytes);
        }
        // While the accessible part still covers the old image: its replacement is mapped
        // readable and writable.
        self.unmap_image()?;
        self.set_accessible(bytes)?;
        match image {
            Some(image) => self.map_image(image),
            None => Ok(()),
        }
    }

    /// Maps `image` privately over the start of the accessible part: reads see the image,
    /// writes go to pages of this reservation's own.
    fn map_image(&mut self, image: &Arc<MemoryImage>) -> io::Result<()> {
        if image.len() > self.accessible || self.image.is_some() {
            return Err(io::Error::other("the memory image does not fit"));
        }
        // SAFETY: the range lies inside this reservation, which nothing else uses; the file is
        // sealed, so the mapping's contents cannot change under the guest.
        let address = unsafe {
            libc::mmap(
                self.base.as_ptr().cast(),
                image.len(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                image.fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.image = Some(image.clone());
        Ok(())
    }

    /// Replaces the image's range with fresh anonymous memory (zeros, nothing backed),
    /// discarding the file mapping and every page an instance copied from it.
    fn unmap_image(&mut self) -> io::Result<()> {
        let Some(image) = self.image.take() else {
            return Ok(());
        };
        // SAFETY: the range lies inside this reservation; its previous user is gone.
        let address = unsafe {
            libc::mmap(
                self.base.as_ptr().cast(),
                image.len(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: advice on the mapping just made; failure only loses the advice.
        unsafe { libc::madvise(address, image.len(), libc::MADV_NOHUGEPAGE) };
        Ok(())
    }

    /// Copies back from the image every page of its range an instance wrote, if there are at
    /// most `RESTORE_LIMIT_PAGES`; says whether it did. The other pages are the image's own
    /// (mapped from its file, never written) or not present (they fault in from the file).
    fn restore_image(&mut self, page_map: &File) -> io::Result<bool> {
        let Some(image) = self.image.clone() else {
            return Ok(true);
        };
        let entries = self.page_map_entries(page_map, 0, image.len())?;
        let written =
            |entry: &u64| (entry & PRESENT != 0 && entry & FILE_PAGE == 0) || entry & SWAPPED != 0;
        if entries.iter().filter(|entry| written(entry)).count() > RESTORE_LIMIT_PAGES {
            return Ok(false);
        }
        let page_size = page_size();
        let contents = image.contents();
        for (index, _) in entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| written(entry))
        {
            let offset = index * page_size;
            // SAFETY: the page lies inside the image's range of this reservation, readable,
            // writable and used by nothing else; the source is the image's own page.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    contents[offset..offset + page_size].as_ptr(),
                    self.base.as_ptr().add(offset),
                    page_size,
                )
            };
        }
        Ok(true)
    }

    /// The kernel's page-map entries of `len` bytes from `start`, one a page.
    fn page_map_entries(&self, page_map: &File, start: usize, len: usize) -> io::Result<Vec<u64>> {
        let page_size = page_size();
        let pages = len / page_size;
        let mut entries = vec![0u64; pages];
        // SAFETY: a `u64` slice viewed as its bytes, for reading into.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(entries.as_mut_ptr().cast::<u8>(), pages * 8) };
        let first_entry = ((self.base.as_ptr() as usize + start) / page_size * 8) as u64;
        page_map.read_exact_at(bytes, first_entry)?;
        Ok(entries)
    }

    /// Makes exactly the first `bytes` bytes accessible.
    fn set_accessible(&mut self, bytes: usize) -> io::Result<()> {
        if bytes > self.len {
            return Err(io::Error::other("larger than the reservation"));
        }
        let (start, len, protection) = if bytes > self.accessible {
            (
                self.accessible,
                bytes - self.accessible,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        } else {
            (bytes, self.accessible - bytes, libc::PROT_NONE)
        };
        if len > 0 {
            // SAFETY: the range lies inside this reservation, which nothing else maps.
            let result =
                unsafe { libc::mprotect(self.base.as_ptr().add(start).cast(), len, protection) };
            if result != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        self.accessible = bytes;
        Ok(())
    }

    /// Makes the accessible part what a new instance expects: the image's range restored (or
    /// unmapped when that would cost too much), every other byte zero, by zeroing the few
    /// backed pages in place when the page map says there are few, and by dropping them all
    /// otherwise.
    fn empty(&mut self, page_map: Option<&File>) -> io::Result<()> {
        let restored = match page_map {
            Some(page_map) => self.restore_image(page_map)?,
            None => false,
        };
        if !restored {
            self.unmap_image()?;
        }
        let from = self.image.as_ref().map_or(0, |image| image.len());
        if self.accessible <= from {
            return Ok(());
        }
        if let Some(page_map) = page_map
            && self.accessible - from <= SCAN_LIMIT_BYTES
            && self.zero_backed_pages(page_map, from)?
        {
            return Ok(());
        }
        self.drop_pages(from)
    }

    /// Zeroes the backed pages from `from` if there are at most `KEEP_RESIDENT_PAGES`; says
    /// whether it did.
    fn zero_backed_pages(&mut self, page_map: &File, from: usize) -> io::Result<bool> {
        // A page neither present nor swapped has never been touched or was dropped, and reads
        // as zeros.
        let backed = |entry: &u64| entry & (PRESENT | SWAPPED) != 0;
        let page_size = page_size();
        let entries = self.page_map_entries(page_map, from, self.accessible - from)?;
        if entries.iter().filter(|entry| backed(entry)).count() > KEEP_RESIDENT_PAGES {
            return Ok(false);
        }
        for (index, _) in entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| backed(entry))
        {
            // SAFETY: the page lies inside the accessible part of this reservation, which is
            // readable and writable and used by nothing else.
            unsafe {
                std::ptr::write_bytes(
                    self.base.as_ptr().add(from + index * page_size),
                    0,
                    page_size,
                )
            };
        }
        Ok(true)
    }

    /// Drops every page of the accessible part from `from`: the next reader sees zeros.
    fn drop_pages(&mut self, from: usize) -> io::Result<()> {
        // SAFETY: the range lies inside this reservation; its previous user is gone.
        let result = unsafe {
            libc::madvise(
                self.base.as_ptr().add(from).cast(),
                self.accessible - from,
                libc::MADV_DONTNEED,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this length and is not used any more.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// An instance's linear memory, living in a pooled reservation. Static: it never moves, so
/// growing only makes more of the reservation accessible.
pub struct PooledMemory {
    /// `None` only while being dropped.
    region: Option<Reservation>,
    pool: Arc<MemoryPool>,
    /// Where the instance's compiled code reads the memory's base and length.
    definition: NonNull<VMMemoryDefinition>,
    ty: MemoryType,
    style: MemoryStyle,
    size: Pages,
    /// Whether the guest asked to grow it past its maximum: counted once per instance.
    refused_growth: bool,
}

// SAFETY: as for wasmer's own memories: the definition pointer belongs to the instance that
// owns this memory, and the engine synchronises their use.
unsafe impl Send for PooledMemory {}
// SAFETY: see above; shared memories are never pooled.
unsafe impl Sync for PooledMemory {}

impl fmt::Debug for PooledMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledMemory")
            .field("ty", &self.ty)
            .field("size", &self.size)
            .finish()
    }
}

impl PooledMemory {
    fn region(&mut self) -> &mut Reservation {
        self.region
            .as_mut()
            .expect("a live memory has its reservation")
    }

    /// Writes the base and current length where the instance's code reads them.
    fn publish(&mut self) {
        let base = self.region().base.as_ptr();
        let current_length = self.size.bytes().0;
        // SAFETY: `definition` is valid for this memory's life (see `MemoryPool::memory`).
        unsafe {
            let definition = self.definition.as_mut();
            definition.base = base;
            definition.current_length = current_length;
        }
    }
}

impl LinearMemory for PooledMemory {
    fn ty(&self) -> MemoryType {
        MemoryType {
            minimum: self.size,
            ..self.ty
        }
    }

    fn size(&self) -> Pages {
        self.size
    }

    fn style(&self) -> MemoryStyle {
        self.style
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let previous = self.size;
        if delta.0 == 0 {
            return Ok(previous);
        }
        let could_not_grow = MemoryError::CouldNotGrow {
            current: previous,
            attempted_delta: delta,
        };
        let Some(new_size) = previous.checked_add(delta) else {
            return Err(could_not_grow);
        };
        let maximum = self.ty.maximum.unwrap_or(Pages::max_value());
        if new_size > maximum || new_size > MemoryStyle::static_bound() {
            self.refused_growth = true;
            return Err(could_not_grow);
        }
        self.region()
            .set_accessible(new_size.bytes().0)
            .map_err(region_error)?;
        self.size = new_size;
        self.publish();
        Ok(previous)
    }

    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        let current = self.size.bytes().0 as u64;
        if current < min_size {
            let pages = (min_size - current).div_ceil(wasmer_types::WASM_PAGE_SIZE as u64);
            let pages = u32::try_from(pages).map_err(|_| MemoryError::CouldNotGrow {
                current: self.size,
                attempted_delta: Pages(u32::MAX),
            })?;
            self.grow(Pages(pages))?;
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), MemoryError> {
        let region = self.region();
        region.unmap_image().map_err(region_error)?;
        region.drop_pages(0).map_err(region_error)?;
        region.set_accessible(0).map_err(region_error)?;
        self.size = Pages(0);
        self.publish();
        Ok(())
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.definition
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::MemoryNotShared)
    }

    /// A copy in a memory of wasmer's own (a forking WASIX guest's child).
    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        let copy = VMOwnedMemory::new(&self.ty(), &self.style)?;
        let len = self.size.bytes().0;
        // SAFETY: both memories are at least `len` bytes long and distinct.
        unsafe {
            let source = self.definition.as_ref().base;
            let target = copy.vmmemory().as_ref().base;
            std::ptr::copy_nonoverlapping(source, target, len);
        }
        Ok(Box::new(copy))
    }
}

impl Drop for PooledMemory {
    fn drop(&mut self) {
        if self.refused_growth {
            crate::metrics::metrics().memory_limit_hits.inc();
        }
        if let Some(region) = self.region.take() {
            self.pool.give_back(region);
        }
    }
}
