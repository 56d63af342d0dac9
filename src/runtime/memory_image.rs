//! A module's initial memory as a sealed in-memory file, mapped copy-on-write into each
//! instance instead of copied into it.
//!
//! Instantiating a module copies its data segments into the new memory, touching every page
//! they cover: for a snapshot of an interpreter with its scripts compiled, tens of megabytes
//! per request. Mapped privately from one file, the pages a request only reads are the file's
//! own (shared, never copied) and a page is copied only when the request writes it. Wasmtime
//! calls this copy-on-write memory initialisation. Small modules keep their data segments:
//! copying a few pages costs less than the two mappings per request.
//!
//! Isolation holds as before: the file is sealed against writes, an instance's writes land in
//! its private copies, and emptying a memory replaces the whole mapped range with fresh
//! anonymous memory, so nothing an instance wrote is seen by the next.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

use anyhow::Context;
use wasm_encoder::{DataCountSection, RawSection};
use wasmparser::{DataKind, Operator, Parser, Payload, TypeRef};

use super::wasm_sections::{section_bytes, without_active_segments};

/// Modules with fewer bytes of data than this keep their data segments.
const MIN_IMAGE_BYTES: usize = 1 << 20;

/// The initial contents of a module's memory, from its start: `len` bytes, a multiple of the
/// host page size, in a file nobody can write.
#[derive(Debug)]
pub struct MemoryImage {
    file: File,
    len: usize,
    /// The file mapped read-only and shared: where a memory's written pages are restored from.
    contents: memmap2::Mmap,
}

impl MemoryImage {
    /// The image of `wasm`'s data segments and `wasm` without them, when the module has one
    /// memory of its own and enough data for an image to pay; `None` leaves it as it is. A
    /// segment whose place is not a constant, or that does not fit, also leaves it as it is, so
    /// the engine reports it as it would; so does a module that does not parse.
    pub fn split(wasm: &[u8]) -> anyhow::Result<Option<(Vec<u8>, MemoryImage)>> {
        let Ok(Some(segments)) = Segments::read(wasm) else {
            return Ok(None);
        };
        let data_bytes: usize = segments.active.iter().map(|s| s.bytes.len()).sum();
        if data_bytes < MIN_IMAGE_BYTES {
            return Ok(None);
        }
        let image = MemoryImage::write(&segments).context("cannot make the memory image")?;
        Ok(Some((segments.strip(wasm)?, image)))
    }

    fn write(segments: &Segments) -> io::Result<MemoryImage> {
        let page = super::memory_pool::page_size();
        let end = segments
            .active
            .iter()
            .map(|s| s.offset + s.bytes.len())
            .max()
            .unwrap_or(0);
        let len = end.div_ceil(page) * page;
        // SAFETY: the name is a NUL-terminated string; the flags are valid.
        let fd = unsafe {
            libc::memfd_create(
                c"wcgi-memory-image".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor memfd_create just returned, owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len as u64)?;
        // In order: a later segment overwrites an earlier one, as instantiation would.
        for segment in &segments.active {
            file.write_all_at(segment.bytes, segment.offset as u64)?;
        }
        let seals =
            libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor this function owns.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the file is sealed against writes and resizing, so the mapping never changes.
        let contents = unsafe { memmap2::Mmap::map(&file)? };
        Ok(MemoryImage {
            file,
            len,
            contents,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn fd(&self) -> libc::c_int {
        self.file.as_raw_fd()
    }

    /// The image's bytes.
    pub fn contents(&self) -> &[u8] {
        &self.contents
    }
}

/// The module's active data segments for its memory, if it has exactly one of its own.
struct Segments<'a> {
    active: Vec<ActiveSegment<'a>>,
    has_passive: bool,
}

struct ActiveSegment<'a> {
    offset: usize,
    bytes: &'a [u8],
}

impl<'a> Segments<'a> {
    fn read(wasm: &'a [u8]) -> anyhow::Result<Option<Self>> {
        let mut segments = Segments {
            active: Vec::new(),
            has_passive: false,
        };
        let mut memory_bytes = None;
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.context("the module is not valid WebAssembly")? {
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        if matches!(import?.ty, TypeRef::Memory(_)) {
                            return Ok(None);
                        }
                    }
                }
                Payload::MemorySection(memories) => {
                    let memories: Vec<_> = memories.into_iter().collect::<Result<_, _>>()?;
                    match memories.as_slice() {
                        [memory] if !memory.shared && !memory.memory64 => {
                            memory_bytes = Some(memory.initial as usize * 65_536);
                        }
                        _ => return Ok(None),
                    }
                }
                Payload::DataSection(data) => {
                    for datum in data {
                        let datum = datum?;
                        let DataKind::Active { offset_expr, .. } = datum.kind else {
                            segments.has_passive = true;
                            continue;
                        };
                        let mut ops = offset_expr.get_operators_reader();
                        let (Operator::I32Const { value }, Operator::End) =
                            (ops.read()?, ops.read()?)
                        else {
                            return Ok(None);
                        };
                        segments.active.push(ActiveSegment {
                            offset: value as u32 as usize,
                            bytes: datum.data,
                        });
                    }
                }
                _ => {}
            }
        }
        let Some(memory_bytes) = memory_bytes else {
            return Ok(None);
        };
        if segments
            .active
            .iter()
            .any(|s| s.offset + s.bytes.len() > memory_bytes)
        {
            return Ok(None);
        }
        Ok(Some(segments))
    }

    /// `wasm` without its active segments. When it has passive ones, each active segment
    /// becomes an empty passive one, so that instructions naming segments by index still
    /// name the same ones.
    fn strip(&self, wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut module = wasm_encoder::Module::new();
        for payload in Parser::new(0).parse_all(wasm) {
            let payload = payload?;
            match &payload {
                Payload::DataCountSection { count, .. } => {
                    let count = if self.has_passive { *count } else { 0 };
                    module.section(&DataCountSection { count });
                }
                Payload::DataSection(data) if self.has_passive => {
                    module.section(&without_active_segments(data.clone(), true)?);
                }
                Payload::DataSection(_) => {}
                payload => {
                    if let Some((id, range)) = payload.as_section() {
                        module.section(&RawSection {
                            id,
                            data: section_bytes(wasm, range),
                        });
                    }
                }
            }
        }
        Ok(module.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_with_data(segments: &[(u32, &[u8])]) -> Vec<u8> {
        let data: String = segments
            .iter()
            .map(|(offset, bytes)| {
                let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
                format!("(data (i32.const {offset}) \"{escaped}\")")
            })
            .collect();
        let wat = format!("(module (memory (export \"memory\") 64) {data} (data \"passive\"))");
        wasmer::wat2wasm(wat.as_bytes()).unwrap().into_owned()
    }

    #[test]
    fn the_image_holds_the_segments_in_order_and_the_module_keeps_segment_indices() {
        let big = vec![7u8; MIN_IMAGE_BYTES];
        let wasm = module_with_data(&[(100, &big), (100, b"later wins"), (3 << 20, b"end")]);
        let (stripped, image) = MemoryImage::split(&wasm).unwrap().unwrap();
        assert_eq!(image.len(), (3 << 20) + 4096);
        let mut bytes = vec![0u8; image.len()];
        image.file.read_exact_at(&mut bytes, 0).unwrap();
        assert_eq!(&bytes[..100], &[0; 100]);
        assert_eq!(&bytes[100..110], b"later wins");
        assert_eq!(bytes[110], 7);
        assert_eq!(&bytes[3 << 20..(3 << 20) + 3], b"end");
        // Sealed: nobody can change it.
        assert!(image.file.write_at(b"x", 0).is_err());

        let kinds: Vec<bool> = Parser::new(0)
            .parse_all(&stripped)
            .filter_map(|payload| match payload.unwrap() {
                Payload::DataSection(data) => Some(data),
                _ => None,
            })
            .flatten()
            .map(|datum| matches!(datum.unwrap().kind, DataKind::Passive))
            .collect();
        assert_eq!(kinds, [true, true, true, true]);
        wasmparser::validate(&stripped).unwrap();
    }

    #[test]
    fn small_or_unusual_modules_keep_their_segments() {
        assert!(
            MemoryImage::split(&module_with_data(&[(0, b"small")]))
                .unwrap()
                .is_none()
        );
        let big = vec![1u8; MIN_IMAGE_BYTES];
        // Past the memory's initial 64 pages: instantiation must fail as it would.
        let outside = module_with_data(&[(64 * 65_536 - 10, &big)]);
        assert!(MemoryImage::split(&outside).unwrap().is_none());
    }
}
