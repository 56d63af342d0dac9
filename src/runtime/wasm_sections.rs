//! Pieces shared by the module rewrites (snapshots, memory images) and by what reads modules
//! without compiling them: copying a section as it is, a data section without its active
//! segments, whether a function is exported.

use std::ops::Range;

use anyhow::Context;
use wasm_encoder::DataSection;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasmparser::{DataKind, DataSectionReader, ExternalKind, Parser, Payload};

/// The bytes of a section the parser located.
pub fn section_bytes(wasm: &[u8], range: Range<u64>) -> &[u8] {
    &wasm[range.start as usize..range.end as usize]
}

/// `data`'s passive segments, with each active one (applied by other means) dropped, or,
/// when `keep_indices` (the module has passive segments, which instructions name by index),
/// replaced by an empty passive one: `memory.init` on an applied active segment traps, as it
/// does on an empty one.
pub fn without_active_segments(
    data: DataSectionReader<'_>,
    keep_indices: bool,
) -> anyhow::Result<DataSection> {
    let mut section = DataSection::new();
    for datum in data {
        let datum = datum?;
        match datum.kind {
            DataKind::Passive => RoundtripReencoder.parse_data(&mut section, datum)?,
            DataKind::Active { .. } if keep_indices => {
                section.passive(Vec::<u8>::new());
            }
            DataKind::Active { .. } => {}
        }
    }
    Ok(section)
}

/// Whether `wasm` exports a function called `name`.
pub fn exports_function(wasm: &[u8], name: &str) -> anyhow::Result<bool> {
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ExportSection(exports) =
            payload.context("the module is not valid WebAssembly")?
        {
            for export in exports {
                let export = export?;
                if export.name == name {
                    return Ok(export.kind == ExternalKind::Func);
                }
            }
            return Ok(false);
        }
    }
    Ok(false)
}
