//! Pieces shared by the module rewrites (snapshots, memory images): copying a section as it
//! is, and a data section without its active segments.

use std::ops::Range;

use wasm_encoder::DataSection;
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasmparser::{DataKind, DataSectionReader};

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
