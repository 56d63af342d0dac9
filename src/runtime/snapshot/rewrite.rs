//! The last step of a snapshot: the original module rewritten to start where its init
//! function left off. Same code; its memories start at the size init left them, holding what
//! init wrote (as data segments, zero runs left out); its mutable globals start at the values
//! init left; the init function and its start function are gone, and `_start` becomes
//! `wizer.resume` when the module has one, so the C runtime's constructors do not run again
//! over memory they already set up.

use std::ops::Range;

use anyhow::{Context, bail};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{
    ConstExpr, DataCountSection, DataSection, ExportSection, GlobalSection, GlobalType,
    MemorySection, MemoryType, RawSection,
};
use wasmparser::{DataKind, ExternalKind, Parser, Payload};

use super::instrument::{StateLayout, export_kind};
use crate::runtime::wasm_sections::{section_bytes, without_active_segments};

/// Wizer's name for the function the snapshot's `_start` should be.
pub const RESUME_EXPORT: &str = "wizer.resume";

const PAGE_SIZE: usize = 65_536;
/// Zero runs shorter than this stay inside a data segment: a segment costs more than that.
const MIN_ZERO_GAP: usize = 32;
/// More segments than this are merged (by tolerating longer zero runs inside them).
const MAX_SEGMENTS: usize = 20_000;

/// A mutable global's value when init returned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GlobalValue {
    I32(i32),
    I64(i64),
    /// Raw bits, so that a NaN keeps its payload.
    F32(u32),
    F64(u64),
}

/// What init left behind, in the order of the module's [`StateLayout`].
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedState {
    pub globals: Vec<GlobalValue>,
    pub memories: Vec<Vec<u8>>,
}

/// Writes the snapshot of `wasm` (the original module, not the instrumented one).
pub fn write_snapshot(
    wasm: &[u8],
    layout: &StateLayout,
    state: &CapturedState,
    init_export: &str,
) -> anyhow::Result<Vec<u8>> {
    if state.globals.len() != layout.globals.len() || state.memories.len() != layout.memories.len()
    {
        bail!("the captured state does not match the module's layout");
    }
    let original = Original::read(wasm)?;
    let mut module = wasm_encoder::Module::new();
    let mut reencoder = RoundtripReencoder;
    let mut segments = Vec::new();
    for (position, memory) in state.memories.iter().enumerate() {
        for run in nonzero_runs(memory) {
            segments.push((layout.memories[position], run));
        }
    }
    let data_count = original.passive_or_replaced() + segments.len() as u32;

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        match &payload {
            Payload::MemorySection(memories) => {
                let mut section = MemorySection::new();
                for (offset, memory) in memories.clone().into_iter().enumerate() {
                    let memory = memory?;
                    let captured = &state.memories[offset];
                    section.memory(MemoryType {
                        minimum: (captured.len() / PAGE_SIZE) as u64,
                        maximum: memory.maximum,
                        memory64: memory.memory64,
                        shared: memory.shared,
                        page_size_log2: memory.page_size_log2,
                    });
                }
                module.section(&section);
            }
            Payload::GlobalSection(globals) => {
                let mut section = GlobalSection::new();
                let mut captured = layout.globals.iter().zip(&state.globals).peekable();
                for (offset, global) in globals.clone().into_iter().enumerate() {
                    let global = global?;
                    let index = original.imported_globals + offset as u32;
                    match captured.peek() {
                        Some((slot, value)) if slot.index == index => {
                            let ty = GlobalType {
                                val_type: reencoder.val_type(global.ty.content_type)?,
                                mutable: true,
                                shared: global.ty.shared,
                            };
                            section.global(ty, &const_expr(**value));
                            captured.next();
                        }
                        _ => reencoder.parse_global(&mut section, global)?,
                    }
                }
                module.section(&section);
            }
            Payload::ExportSection(exports) => {
                let mut section = ExportSection::new();
                for export in exports.clone() {
                    let export = export?;
                    match export.name {
                        name if name == init_export || name == RESUME_EXPORT => {}
                        "_start" => {
                            let start = original.resume.unwrap_or(export.index);
                            section.export("_start", export_kind(export.kind)?, start);
                        }
                        name => {
                            section.export(name, export_kind(export.kind)?, export.index);
                        }
                    }
                }
                module.section(&section);
            }
            // It ran when the instance that init ran in was created.
            Payload::StartSection { .. } => {}
            Payload::DataCountSection { .. } => {
                module.section(&DataCountSection { count: data_count });
            }
            Payload::DataSection(data) => {
                // Init already applied the active segments: memory holds their bytes.
                let mut section = without_active_segments(data.clone(), original.has_passive)?;
                add_segments(&mut section, &segments, state, layout, &original);
                module.section(&section);
            }
            Payload::CodeSectionStart { .. } if !original.has_data_section => {
                let (id, range) = payload
                    .as_section()
                    .context("a code section has no range")?;
                module.section(&RawSection {
                    id,
                    data: section_bytes(wasm, range),
                });
                let mut section = DataSection::new();
                add_segments(&mut section, &segments, state, layout, &original);
                module.section(&section);
            }
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

fn add_segments(
    section: &mut DataSection,
    segments: &[(u32, Range<usize>)],
    state: &CapturedState,
    layout: &StateLayout,
    original: &Original,
) {
    for (memory, run) in segments {
        let position = layout.memories.iter().position(|m| m == memory).unwrap();
        let bytes = &state.memories[position][run.clone()];
        let offset = if original.memory64.contains(memory) {
            ConstExpr::i64_const(run.start as i64)
        } else {
            ConstExpr::i32_const(run.start as i32)
        };
        section.active(*memory, &offset, bytes.iter().copied());
    }
}

fn const_expr(value: GlobalValue) -> ConstExpr {
    match value {
        GlobalValue::I32(v) => ConstExpr::i32_const(v),
        GlobalValue::I64(v) => ConstExpr::i64_const(v),
        GlobalValue::F32(bits) => ConstExpr::f32_const(wasm_encoder::Ieee32::new(bits)),
        GlobalValue::F64(bits) => ConstExpr::f64_const(wasm_encoder::Ieee64::new(bits)),
    }
}

/// What the rewrite needs to know about the original module before writing it.
struct Original {
    imported_globals: u32,
    memory64: Vec<u32>,
    has_data_section: bool,
    has_passive: bool,
    segments: u32,
    /// The function `wizer.resume` exports, if any.
    resume: Option<u32>,
}

impl Original {
    fn read(wasm: &[u8]) -> anyhow::Result<Self> {
        let mut original = Original {
            imported_globals: 0,
            memory64: Vec::new(),
            has_data_section: false,
            has_passive: false,
            segments: 0,
            resume: None,
        };
        let mut memories = 0u32;
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.context("the module is not valid WebAssembly")? {
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        if let wasmparser::TypeRef::Global(_) = import?.ty {
                            original.imported_globals += 1;
                        }
                    }
                }
                Payload::MemorySection(section) => {
                    for memory in section {
                        if memory?.memory64 {
                            original.memory64.push(memories);
                        }
                        memories += 1;
                    }
                }
                Payload::ExportSection(exports) => {
                    for export in exports {
                        let export = export?;
                        if export.name == RESUME_EXPORT {
                            if export.kind != ExternalKind::Func {
                                bail!("the module's `{RESUME_EXPORT}` export is not a function");
                            }
                            original.resume = Some(export.index);
                        }
                    }
                }
                Payload::DataSection(data) => {
                    original.has_data_section = true;
                    for datum in data {
                        original.segments += 1;
                        if matches!(datum?.kind, DataKind::Passive) {
                            original.has_passive = true;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(original)
    }

    /// How many of the original segments the snapshot keeps (all of them, when some are
    /// passive: instructions name segments by index).
    fn passive_or_replaced(&self) -> u32 {
        if self.has_passive { self.segments } else { 0 }
    }
}

/// The stretches of `memory` worth a data segment: non-zero bytes, with zero runs shorter
/// than a gap kept inside, the gap widened until there are few enough segments.
fn nonzero_runs(memory: &[u8]) -> Vec<Range<usize>> {
    let mut gap = MIN_ZERO_GAP;
    loop {
        let runs = runs_with_gap(memory, gap);
        if runs.len() <= MAX_SEGMENTS {
            return runs;
        }
        gap *= 4;
    }
}

fn runs_with_gap(memory: &[u8], gap: usize) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut at = 0;
    while let Some(start) = next_nonzero(memory, at) {
        let end = next_zero(memory, start);
        match runs.last_mut() {
            Some(last) if start - last.end < gap => last.end = end,
            _ => runs.push(start..end),
        }
        at = end;
    }
    runs
}

/// The first non-zero byte at or after `from`, skipping zero words quickly.
fn next_nonzero(memory: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while !at.is_multiple_of(8) && at < memory.len() {
        if memory[at] != 0 {
            return Some(at);
        }
        at += 1;
    }
    let words = memory[at..].chunks_exact(8);
    let tail = at + words.len() * 8;
    for (i, word) in words.enumerate() {
        if u64::from_ne_bytes(word.try_into().unwrap()) != 0 {
            let base = at + i * 8;
            return (base..base + 8).find(|&j| memory[j] != 0);
        }
    }
    (tail..memory.len()).find(|&j| memory[j] != 0)
}

fn next_zero(memory: &[u8], from: usize) -> usize {
    memory[from..]
        .iter()
        .position(|&b| b == 0)
        .map_or(memory.len(), |i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmparser::{Operator, Validator, WasmFeatures};

    const MODULE: &str = r#"
        (module
          (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
          (memory (export "memory") 1 100)
          (global $sp (mut i32) (i32.const 1024))
          (global $k i32 (i32.const 7))
          (global $f (mut f64) (f64.const 0))
          (data (i32.const 16) "original")
          (data $p "passive")
          (func $init (export "wizer.initialize"))
          (func $resume (export "wizer.resume"))
          (func $start (export "_start"))
          (func $once)
          (start $once))
    "#;

    /// The one instruction of a constant expression.
    fn constant(expr: &wasmparser::ConstExpr) -> String {
        let mut ops = expr.get_operators_reader();
        format!("{:?}", ops.read().unwrap())
    }

    #[test]
    fn the_snapshot_holds_the_captured_state_and_starts_at_resume() {
        let wasm = wasmer::wat2wasm(MODULE.as_bytes()).unwrap().into_owned();
        let layout = StateLayout::of(&wasm).unwrap();
        assert_eq!(
            layout.globals.iter().map(|g| g.index).collect::<Vec<_>>(),
            [0, 2]
        );
        let mut memory = vec![0u8; 2 * PAGE_SIZE];
        memory[16..21].copy_from_slice(b"hello");
        memory[70_000..70_005].copy_from_slice(b"world");
        let state = CapturedState {
            globals: vec![GlobalValue::I32(5000), GlobalValue::F64(1.5f64.to_bits())],
            memories: vec![memory],
        };
        let snapshot = write_snapshot(&wasm, &layout, &state, "wizer.initialize").unwrap();
        Validator::new_with_features(WasmFeatures::all())
            .validate_all(&snapshot)
            .unwrap();

        let (mut exports, mut globals, mut data) = (Vec::new(), Vec::new(), Vec::new());
        for payload in Parser::new(0).parse_all(&snapshot) {
            match payload.unwrap() {
                Payload::MemorySection(memories) => {
                    let memory = memories.into_iter().next().unwrap().unwrap();
                    assert_eq!((memory.initial, memory.maximum), (2, Some(100)));
                }
                Payload::GlobalSection(section) => {
                    for global in section {
                        globals.push(constant(&global.unwrap().init_expr));
                    }
                }
                Payload::ExportSection(section) => {
                    for export in section {
                        let export = export.unwrap();
                        exports.push((export.name.to_string(), export.index));
                    }
                }
                Payload::StartSection { .. } => panic!("the start function ran already"),
                Payload::DataSection(section) => {
                    for datum in section {
                        let datum = datum.unwrap();
                        let at = match datum.kind {
                            DataKind::Active { offset_expr, .. } => constant(&offset_expr),
                            DataKind::Passive => "passive".into(),
                        };
                        data.push((at, String::from_utf8_lossy(datum.data).into_owned()));
                    }
                }
                _ => {}
            }
        }
        assert_eq!(
            globals,
            [
                format!("{:?}", Operator::I32Const { value: 5000 }),
                format!("{:?}", Operator::I32Const { value: 7 }),
                format!(
                    "{:?}",
                    Operator::F64Const {
                        value: wasmparser::Ieee64::from(1.5f64)
                    }
                ),
            ]
        );
        // `_start` is now `wizer.resume` (function 2: one import, then init); init is gone.
        assert_eq!(
            exports,
            [("memory".to_string(), 0), ("_start".to_string(), 2)]
        );
        // The passive segment keeps its index; the applied active one became empty.
        assert_eq!(
            data,
            [
                ("passive".to_string(), String::new()),
                ("passive".to_string(), "passive".to_string()),
                (
                    format!("{:?}", Operator::I32Const { value: 16 }),
                    "hello".to_string()
                ),
                (
                    format!("{:?}", Operator::I32Const { value: 70_000 }),
                    "world".to_string()
                ),
            ]
        );
    }

    #[test]
    fn state_a_snapshot_cannot_hold_is_refused() {
        let imported = r#"(module (import "env" "g" (global (mut i32))) (memory 1))"#;
        let wasm = wasmer::wat2wasm(imported.as_bytes()).unwrap();
        assert_eq!(
            StateLayout::of(&wasm).unwrap_err().to_string(),
            "the module imports the mutable global `env::g`, whose value a snapshot cannot hold"
        );
    }

    #[test]
    fn runs_skip_long_zero_stretches_and_keep_short_ones() {
        let mut memory = vec![0u8; 4096];
        memory[10] = 1;
        memory[20] = 2; // 9 zeros between: one run
        memory[1000..1003].copy_from_slice(&[3, 4, 5]);
        memory[4095] = 6;
        assert_eq!(nonzero_runs(&memory), vec![10..21, 1000..1003, 4095..4096]);
        assert!(nonzero_runs(&[0; 100]).is_empty());
    }

    #[test]
    fn too_many_runs_are_merged() {
        let mut memory = vec![0u8; (MAX_SEGMENTS + 10) * 64];
        for i in 0..MAX_SEGMENTS + 10 {
            memory[i * 64] = 1;
        }
        let runs = nonzero_runs(&memory);
        assert!(runs.len() <= MAX_SEGMENTS, "{}", runs.len());
        let covered: usize = runs
            .iter()
            .map(|run| memory[run.clone()].iter().filter(|&&b| b != 0).count())
            .sum();
        assert_eq!(covered, MAX_SEGMENTS + 10);
    }
}
