//! A linear-memory cap for every instance, enforced by the engine: a guest that grows its
//! memory past the cap sees `memory.grow` fail (-1), as it would on a full machine. The
//! instances' own memories come from a [`MemoryPool`].

use std::ptr::NonNull;
use std::sync::Arc;

use wasmer::sys::vm::{VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryError, MemoryType, Pages, TableType};
use wasmer_types::{MemoryStyle, TableStyle};

use super::memory_image::MemoryImage;
use super::memory_pool::MemoryPool;

/// Size of a WebAssembly page.
pub const PAGE_SIZE: u64 = 64 * 1024;

/// Engine tunables that clamp every memory's maximum to a fixed number of pages.
pub struct MemoryCap {
    base: BaseTunables,
    limit: Pages,
    pool: Arc<MemoryPool>,
    /// What every memory starts with, for a program whose data became an image.
    image: Option<Arc<MemoryImage>>,
}

impl MemoryCap {
    pub fn new(max_bytes: u64, pool: Arc<MemoryPool>) -> Self {
        let pages = u32::try_from(max_bytes / PAGE_SIZE)
            .unwrap_or(u32::MAX)
            .max(1);
        MemoryCap {
            base: BaseTunables::new(),
            limit: Pages(pages),
            pool,
            image: None,
        }
    }

    /// The same cap, for a program whose memory starts as `image`.
    pub fn with_image(mut self, image: Arc<MemoryImage>) -> Self {
        self.image = Some(image);
        self
    }

    fn capped(&self, ty: &MemoryType) -> Result<MemoryType, MemoryError> {
        if ty.minimum > self.limit {
            return Err(MemoryError::Generic(format!(
                "the module needs {} of memory at start, more than the cap of {}",
                bytes_of(ty.minimum),
                bytes_of(self.limit)
            )));
        }
        let mut capped = *ty;
        capped.maximum = Some(ty.maximum.map_or(self.limit, |max| max.min(self.limit)));
        Ok(capped)
    }
}

fn bytes_of(pages: Pages) -> bytesize::ByteSize {
    bytesize::ByteSize::b(u64::from(pages.0) * PAGE_SIZE)
}

impl Tunables for MemoryCap {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        let mut capped = *memory;
        capped.maximum = Some(memory.maximum.map_or(self.limit, |max| max.min(self.limit)));
        self.base.memory_style(&capped)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        self.base.create_host_memory(&self.capped(ty)?, style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        definition: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        let capped = self.capped(ty)?;
        // Shared memories (WASIX threads) need wasmer's own locking, and dynamic ones are not
        // what this engine compiles for: both keep wasmer's own allocation.
        if capped.shared || !matches!(style, MemoryStyle::Static) {
            // SAFETY: forwarded unchanged from the engine, which upholds the contract.
            return unsafe { self.base.create_vm_memory(&capped, style, definition) };
        }
        // SAFETY: the engine passes the instance's own definition, valid for its life.
        let memory = unsafe {
            self.pool
                .memory(&capped, style, definition, self.image.as_ref())?
        };
        Ok(VMMemory(Box::new(memory)))
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        definition: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged from the engine, which upholds the contract.
        unsafe { self.base.create_vm_table(ty, style, definition) }
    }
}
