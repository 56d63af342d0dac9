//! The first step of a snapshot: the module as it is, plus an export for every piece of state
//! its init function can change. The engine only lets the host read exported globals and
//! memories, and a module exports few of its own (`__stack_pointer`, the heap's top and the
//! rest are internal), so the init function runs on this copy, which exports them all.

use anyhow::{Context, bail};
use wasm_encoder::{ExportKind, ExportSection, RawSection};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef, ValType};

use crate::runtime::wasm_sections::section_bytes;

/// Where a module keeps its mutable state, in the order the snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLayout {
    /// The module's own mutable globals (imported ones are refused).
    pub globals: Vec<MutableGlobal>,
    /// Indices of the module's own memories (imported ones are refused).
    pub memories: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MutableGlobal {
    pub index: u32,
    pub ty: ValType,
}

/// The name the instrumented module exports global `index` under.
pub fn global_export(index: u32) -> String {
    format!("__wcgi_snapshot_global_{index}")
}

/// The name the instrumented module exports memory `index` under.
pub fn memory_export(index: u32) -> String {
    format!("__wcgi_snapshot_memory_{index}")
}

impl StateLayout {
    /// Reads where `wasm` keeps its state; refuses state a snapshot could not restore.
    pub fn of(wasm: &[u8]) -> anyhow::Result<Self> {
        let mut layout = StateLayout {
            globals: Vec::new(),
            memories: Vec::new(),
        };
        let (mut imported_globals, mut imported_memories) = (0u32, 0u32);
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.context("the module is not valid WebAssembly")? {
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        let import = import?;
                        match import.ty {
                            TypeRef::Global(global) if global.mutable => bail!(
                                "the module imports the mutable global `{}::{}`, whose value a \
                                 snapshot cannot hold",
                                import.module,
                                import.name
                            ),
                            TypeRef::Global(_) => imported_globals += 1,
                            TypeRef::Memory(_) => imported_memories += 1,
                            _ => {}
                        }
                    }
                }
                Payload::GlobalSection(globals) => {
                    for (offset, global) in globals.into_iter().enumerate() {
                        let global = global?;
                        if global.ty.mutable {
                            if !matches!(
                                global.ty.content_type,
                                ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64
                            ) {
                                bail!(
                                    "the module has a mutable global of type {}, which a \
                                     snapshot cannot hold (only numbers)",
                                    global.ty.content_type
                                );
                            }
                            layout.globals.push(MutableGlobal {
                                index: imported_globals + offset as u32,
                                ty: global.ty.content_type,
                            });
                        }
                    }
                }
                Payload::MemorySection(memories) => {
                    for (offset, memory) in memories.into_iter().enumerate() {
                        if memory?.shared {
                            bail!(
                                "the module has a shared memory (threads), which wcgi cannot \
                                 snapshot"
                            );
                        }
                        layout.memories.push(imported_memories + offset as u32);
                    }
                }
                _ => {}
            }
        }
        if imported_memories > 0 {
            bail!("the module imports its memory, which a snapshot cannot hold");
        }
        Ok(layout)
    }
}

/// `wasm` with every mutable global and memory also exported under the names above.
pub fn export_state(wasm: &[u8], layout: &StateLayout) -> anyhow::Result<Vec<u8>> {
    let mut module = wasm_encoder::Module::new();
    let mut exported = false;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if let Payload::ExportSection(exports) = &payload {
            let mut section = ExportSection::new();
            for export in exports.clone() {
                let export = export?;
                section.export(export.name, export_kind(export.kind)?, export.index);
            }
            for global in &layout.globals {
                section.export(
                    &global_export(global.index),
                    ExportKind::Global,
                    global.index,
                );
            }
            for &memory in &layout.memories {
                section.export(&memory_export(memory), ExportKind::Memory, memory);
            }
            module.section(&section);
            exported = true;
        } else if let Some((id, range)) = payload.as_section() {
            module.section(&RawSection {
                id,
                data: section_bytes(wasm, range),
            });
        }
    }
    if !exported {
        // A WASI command always exports `_start` and its memory.
        bail!("the module exports nothing, so it has no init function");
    }
    Ok(module.finish())
}

pub fn export_kind(kind: ExternalKind) -> anyhow::Result<ExportKind> {
    Ok(match kind {
        ExternalKind::Func => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
        other => bail!("the module exports a {other:?}, which wcgi cannot snapshot"),
    })
}
