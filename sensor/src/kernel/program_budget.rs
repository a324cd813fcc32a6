//! What each kernel program asks of the verifier, read from the compiled object: the stack
//! frame of every function, the combined depth of each program's deepest call chain, and its
//! instruction count. Frames are fixed when the object is compiled, so these numbers hold on
//! every kernel; kernels without private BPF stacks (all before 6.13, and some builds after)
//! refuse a call chain whose frames add up to more than 512 bytes, so a test keeps every
//! program under a budget (`STACK_BUDGET`, `INSN_BUDGET`) with a margin for the next change.
use std::collections::{BTreeMap, HashMap, HashSet};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SymbolKind};

/// The verifier's limit on a call chain's combined stack (`MAX_BPF_STACK`).
pub(crate) const STACK_LIMIT: u32 = 512;
/// The most a program's call chain may use here: a quarter of the limit stays free, so a
/// layout change or a compiler upgrade that grows a frame fails a test, not a node.
#[cfg(test)]
const STACK_BUDGET: u32 = 384;
/// The most instructions a program (with the functions it calls) may have. Kernels verify up
/// to a million processed instructions per program; loops multiply a program's own count, so
/// its size stays far below.
#[cfg(test)]
const INSN_BUDGET: usize = 8192;

/// One program's demands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProgramBudget {
    /// The program's name (its entry function's symbol).
    pub(crate) name: String,
    /// The entry function's own stack frame in bytes.
    pub(crate) frame: u32,
    /// The deepest call chain's stack as the verifier adds it: each frame rounded up to 32
    /// bytes.
    pub(crate) combined: u32,
    /// The functions of that chain, entry first.
    pub(crate) chain: Vec<String>,
    /// Instructions of the program and every function it calls.
    pub(crate) insns: usize,
}

/// Why the budgets cannot be read from the object.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BudgetError {
    /// The object is not a readable ELF file.
    #[error("the kernel programs' object cannot be parsed: {0}")]
    Parse(#[from] object::Error),
    /// A BPF-to-BPF call whose target is no function of the object.
    #[error("the kernel programs' object has a call at {section}+{at} that goes nowhere")]
    DanglingCall {
        /// The section of the call.
        section: String,
        /// The call's instruction index in it.
        at: usize,
    },
}

/// A function of the object: where its instructions are.
struct Function {
    name: String,
    section: object::SectionIndex,
    /// Instruction index of its first instruction within its section.
    start: usize,
    insns: Vec<[u8; 8]>,
}

/// The budget of every program (every function in a section other than `.text`) in `elf`.
pub(crate) fn budgets(elf: &[u8]) -> Result<Vec<ProgramBudget>, BudgetError> {
    let file = object::File::parse(elf)?;
    let mut functions = Vec::new();
    for symbol in file.symbols() {
        if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
            continue;
        }
        let Some(section) = symbol.section_index() else {
            continue;
        };
        let data = file.section_by_index(section)?.data()?;
        let (start, size) = (symbol.address() as usize, symbol.size() as usize);
        let Some(bytes) = data.get(start..start + size) else {
            continue;
        };
        functions.push(Function {
            name: symbol.name()?.to_owned(),
            section,
            start: start / 8,
            insns: bytes
                .chunks_exact(8)
                .map(|c| c.try_into().expect("8 bytes"))
                .collect(),
        });
    }
    // Calls resolved through relocations (to functions of other sections), by the call's
    // section and byte offset: the target section and the symbol's instruction index there. A
    // relocation against a section's own symbol leaves the offset in the call's immediate.
    let mut relocated: HashMap<(object::SectionIndex, u64), (object::SectionIndex, i64, bool)> =
        HashMap::new();
    for section in file.sections() {
        for (at, reloc) in section.relocations() {
            if let RelocationTarget::Symbol(index) = reloc.target() {
                let symbol = file.symbol_by_index(index)?;
                let by_section = symbol.kind() == SymbolKind::Section;
                if let (true, Some(target)) = (
                    symbol.kind() == SymbolKind::Text || by_section,
                    symbol.section_index(),
                ) {
                    relocated.insert(
                        (section.index(), at),
                        (target, symbol.address() as i64 / 8, by_section),
                    );
                }
            }
        }
    }
    let mut calls: Vec<Vec<usize>> = Vec::with_capacity(functions.len());
    for f in &functions {
        let mut callees = Vec::new();
        for (i, insn) in f.insns.iter().enumerate() {
            if !is_pseudo_call(*insn) {
                continue;
            }
            let at = f.start + i;
            let (section, target) = match relocated.get(&(f.section, at as u64 * 8)) {
                Some(&(section, start, false)) => (section, start),
                Some(&(section, start, true)) => (section, start + 1 + i64::from(imm(*insn))),
                None => (f.section, at as i64 + 1 + i64::from(imm(*insn))),
            };
            let callee = functions
                .iter()
                .position(|g| g.section == section && g.start as i64 == target);
            let section = file.section_by_index(f.section)?.name()?.to_owned();
            callees.push(callee.ok_or(BudgetError::DanglingCall { section, at })?);
        }
        calls.push(callees);
    }
    let frames: Vec<u32> = functions.iter().map(|f| frame_size(&f.insns)).collect();
    let mut out = Vec::new();
    for (i, f) in functions.iter().enumerate() {
        let section = file.section_by_index(f.section)?;
        if section.name()? == ".text" {
            continue;
        }
        let (combined, chain) = deepest(i, &frames, &calls, &mut HashSet::new());
        let mut reachable = HashSet::new();
        reach(i, &calls, &mut reachable);
        out.push(ProgramBudget {
            name: f.name.clone(),
            frame: frames[i],
            combined,
            chain: chain.iter().map(|&j| functions[j].name.clone()).collect(),
            insns: reachable.iter().map(|&j| functions[j].insns.len()).sum(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The deepest chain from `f`: its combined stack and the functions on it.
fn deepest(
    f: usize,
    frames: &[u32],
    calls: &[Vec<usize>],
    on_path: &mut HashSet<usize>,
) -> (u32, Vec<usize>) {
    // The verifier rounds each frame up to 32 bytes when it adds them (at least 32).
    let own = frames[f].max(1).div_ceil(32) * 32;
    if !on_path.insert(f) {
        // BPF forbids recursion; the verifier refuses it, so do not loop here.
        return (own, vec![f]);
    }
    let mut best = (0, Vec::new());
    for &callee in &calls[f] {
        let below = deepest(callee, frames, calls, on_path);
        if below.0 > best.0 {
            best = below;
        }
    }
    on_path.remove(&f);
    let mut chain = vec![f];
    chain.extend(best.1);
    (own + best.0, chain)
}

fn reach(f: usize, calls: &[Vec<usize>], seen: &mut HashSet<usize>) {
    if seen.insert(f) {
        for &callee in &calls[f] {
            reach(callee, calls, seen);
        }
    }
}

fn is_pseudo_call(insn: [u8; 8]) -> bool {
    // BPF_JMP | BPF_CALL with src_reg BPF_PSEUDO_CALL.
    insn[0] == 0x85 && insn[1] >> 4 == 1
}

fn imm(insn: [u8; 8]) -> i32 {
    i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]])
}

/// A function's stack frame: the deepest byte below the frame pointer (r10) that it reaches,
/// by a load or store through r10 or a register that holds r10 plus a constant, or by such a
/// pointer handed to a helper (which writes the bytes from it up towards r10). Registers are
/// followed within straight-line code: a jump target forgets them, as LLVM makes such a
/// pointer right before its use.
fn frame_size(insns: &[[u8; 8]]) -> u32 {
    let mut targets = HashSet::new();
    for (i, insn) in insns.iter().enumerate() {
        let class = insn[0] & 0x07;
        let op = insn[0] & 0xf0;
        // Jumps other than call and exit.
        if (class == 0x05 || class == 0x06) && op != 0x80 && op != 0x90 {
            let off = i16::from_le_bytes([insn[2], insn[3]]);
            // `ja` with a 32-bit offset (gotol) keeps it in imm.
            let delta = if class == 0x06 && op == 0x00 {
                i64::from(imm(*insn))
            } else {
                i64::from(off)
            };
            targets.insert(i as i64 + 1 + delta);
        }
    }
    // Registers known to hold r10 + offset.
    let mut fp: BTreeMap<u8, i64> = BTreeMap::new();
    let mut deepest: i64 = 0;
    let mut skip = false;
    for (i, insn) in insns.iter().enumerate() {
        if skip {
            // The second half of a 16-byte `lddw`.
            skip = false;
            continue;
        }
        if targets.contains(&(i as i64)) {
            fp.clear();
        }
        let (code, dst, src) = (insn[0], insn[1] & 0x0f, insn[1] >> 4);
        let off = i64::from(i16::from_le_bytes([insn[2], insn[3]]));
        let base = |r: u8, fp: &BTreeMap<u8, i64>| {
            if r == 10 {
                Some(0)
            } else {
                fp.get(&r).copied()
            }
        };
        match code & 0x07 {
            // LD: `lddw` takes two slots.
            0x00 => {
                if code == 0x18 {
                    skip = true;
                }
                fp.remove(&dst);
            }
            // LDX: dst = *(src + off).
            0x01 => {
                if let Some(b) = base(src, &fp) {
                    deepest = deepest.max(-(b + off));
                }
                fp.remove(&dst);
            }
            // ST / STX: *(dst + off) = ...
            0x02 | 0x03 => {
                if let Some(b) = base(dst, &fp) {
                    deepest = deepest.max(-(b + off));
                }
                // Atomic fetch operations write their result into src.
                if code & 0x07 == 0x03 && code & 0xe0 == 0xc0 && imm(*insn) & 0x01 != 0 {
                    fp.remove(&src);
                }
            }
            // ALU64: follow `mov dst, r10|fp` and `add dst, imm`; anything else forgets dst.
            0x07 => {
                let tracked = match code {
                    0xbf => base(src, &fp),
                    0x07 => fp.get(&dst).map(|b| b + i64::from(imm(*insn))),
                    _ => None,
                };
                match tracked {
                    Some(b) => {
                        deepest = deepest.max(-b);
                        fp.insert(dst, b);
                    }
                    None => {
                        fp.remove(&dst);
                    }
                }
            }
            0x04 => {
                fp.remove(&dst);
            }
            // JMP / JMP32: calls clobber r0 to r5.
            _ => {
                if code == 0x85 {
                    for r in 0..=5 {
                        fp.remove(&r);
                    }
                }
            }
        }
    }
    u32::try_from(deepest.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
        let o = off.to_le_bytes();
        let i = imm.to_le_bytes();
        [code, dst | src << 4, o[0], o[1], i[0], i[1], i[2], i[3]]
    }

    #[test]
    fn a_frame_is_the_deepest_byte_reached_below_r10() {
        let code = [
            // *(u64 *)(r10 - 8) = r1
            insn(0x7b, 10, 1, -8, 0),
            // r2 = r10; r2 += -40; call helper (writes up from r10 - 40)
            insn(0xbf, 2, 10, 0, 0),
            insn(0x07, 2, 0, 0, -40),
            insn(0x85, 0, 0, 0, 4),
            // r2 was clobbered by the call: this add follows nothing.
            insn(0x07, 2, 0, 0, -400),
            // r0 = *(u32 *)(r10 - 24)
            insn(0x61, 0, 10, -24, 0),
            insn(0x95, 0, 0, 0, 0),
        ];
        assert_eq!(frame_size(&code), 40);
    }

    #[test]
    fn a_jump_target_forgets_what_registers_held() {
        let code = [
            insn(0xbf, 3, 10, 0, 0),
            // if r1 == 0 goto +1
            insn(0x15, 1, 0, 1, 0),
            insn(0x07, 3, 0, 0, -16),
            // Reached by the jump too: r3 is unknown here, so this store counts for nothing.
            insn(0x7b, 3, 1, -200, 0),
            insn(0x95, 0, 0, 0, 0),
        ];
        assert_eq!(frame_size(&code), 16);
    }

    #[test]
    fn every_kernel_program_keeps_its_margin_under_the_verifiers_limits() {
        let object = crate::kernel::programs::program_object();
        if object.is_empty() && std::env::var_os("CI").is_none() {
            // build.rs said so: this machine has no bpf-linker (CI always builds them).
            eprintln!("skipped: this build has no kernel programs; run `cargo xtask setup`");
            return;
        }
        let budgets = budgets(object).expect("the object parses");
        for name in [
            "sched_process_exec",
            "lsm_bprm_check",
            "lsm_file_open",
            "ssl_free",
            "exit_pipe_vectored",
        ] {
            assert!(
                budgets.iter().any(|b| b.name == name),
                "{name} missing; programs found: {budgets:?}"
            );
        }
        let over: Vec<_> = budgets
            .iter()
            .filter(|b| b.combined > STACK_BUDGET || b.insns > INSN_BUDGET)
            .collect();
        assert!(
            over.is_empty(),
            "programs over the budget ({STACK_BUDGET} bytes of stack of the verifier's \
             {STACK_LIMIT}, {INSN_BUDGET} instructions): {over:#?}"
        );
    }
}
