//! The only code that reads kernel structs. Member offsets come from the `OFFSETS` global
//! (resolved from the running kernel's BTF by the loader); an absent member reads as `None`.
use aya_ebpf::helpers::{bpf_probe_read_kernel, generated};
use sensor_common::{CHUNK_BYTES, Gather, KernelOffsets, OFFSET_ABSENT, SEGMENT_MAX, SEGMENTS};

use crate::{globals::offsets, maps::PATHBUF, path::KPath};

/// An opaque kernel pointer (`struct task_struct *`, `struct mm_struct *`, ...).
#[derive(Clone, Copy)]
pub struct KPtr(pub *const u8);

impl KPtr {
    #[inline(always)]
    pub fn is_null(self) -> bool {
        self.0.is_null()
    }

    /// Reads a `T` at byte `offset`, or `None` when the member is absent or unreadable.
    #[inline(always)]
    pub fn read<T: Copy>(self, offset: u32) -> Option<T> {
        if offset == OFFSET_ABSENT || self.is_null() {
            return None;
        }
        // SAFETY: bpf_probe_read_kernel copes with any address; a bad one is an error.
        unsafe { bpf_probe_read_kernel(self.0.wrapping_add(offset as usize) as *const T).ok() }
    }

    /// The address of a member embedded at `offset` (no read).
    #[inline(always)]
    pub fn offset(self, offset: u32) -> Option<KPtr> {
        if offset == OFFSET_ABSENT || self.is_null() {
            return None;
        }
        Some(KPtr(self.0.wrapping_add(offset as usize)))
    }

    /// Follows a pointer member.
    #[inline(always)]
    pub fn follow(self, offset: u32) -> Option<KPtr> {
        self.read::<*const u8>(offset)
            .filter(|p| !p.is_null())
            .map(KPtr)
    }
}

/// Reads of `struct task_struct` fields the programs need.
#[derive(Clone, Copy)]
pub struct Task {
    pub ptr: KPtr,
    pub off: &'static KernelOffsets,
}

impl Task {
    #[inline(always)]
    pub fn new(ptr: *const u8, off: &'static KernelOffsets) -> Self {
        Self {
            ptr: KPtr(ptr),
            off,
        }
    }

    #[inline(always)]
    fn related(&self, offset: u32) -> Option<Task> {
        self.ptr.follow(offset).map(|p| Task {
            ptr: p,
            off: self.off,
        })
    }

    #[inline(always)]
    pub fn pid(&self) -> u32 {
        self.ptr.read::<u32>(self.off.task_pid).unwrap_or(0)
    }

    #[inline(always)]
    pub fn tgid(&self) -> u32 {
        self.ptr.read::<u32>(self.off.task_tgid).unwrap_or(0)
    }

    #[inline(always)]
    pub fn real_parent(&self) -> Option<Task> {
        self.related(self.off.task_real_parent)
    }

    #[inline(always)]
    pub fn group_leader(&self) -> Option<Task> {
        self.related(self.off.task_group_leader)
    }

    /// `start_boottime` of the task's process (its group leader), the process's identity
    /// alongside its tgid (procfs reports the same value as `starttime`).
    #[inline(always)]
    pub fn process_start(&self) -> u64 {
        let leader = self.group_leader().unwrap_or(*self);
        leader
            .ptr
            .read::<u64>(self.off.task_start_boottime)
            .unwrap_or(0)
    }

    #[inline(always)]
    pub fn exit_code(&self) -> u32 {
        self.ptr.read::<u32>(self.off.task_exit_code).unwrap_or(0)
    }

    #[inline(always)]
    pub fn loginuid(&self) -> Option<u32> {
        self.ptr.read::<u32>(self.off.task_loginuid)
    }

    #[inline(always)]
    pub fn sessionid(&self) -> u32 {
        self.ptr
            .read::<u32>(self.off.task_sessionid)
            .unwrap_or(u32::MAX)
    }

    /// Effective uid and gid from `task->cred`.
    #[inline(always)]
    pub fn effective_ids(&self) -> (u32, u32) {
        match self.ptr.follow(self.off.task_cred) {
            Some(cred) => (
                cred.read::<u32>(self.off.cred_euid).unwrap_or(u32::MAX),
                cred.read::<u32>(self.off.cred_egid).unwrap_or(u32::MAX),
            ),
            None => (u32::MAX, u32::MAX),
        }
    }

    /// `[arg_start, arg_end)` of the task's user memory.
    #[inline(always)]
    pub fn args_range(&self) -> Option<(u64, u64)> {
        let mm = self.ptr.follow(self.off.task_mm)?;
        Some((
            mm.read::<u64>(self.off.mm_arg_start)?,
            mm.read::<u64>(self.off.mm_arg_end)?,
        ))
    }

    /// `[env_start, env_end)` of the task's user memory.
    #[inline(always)]
    pub fn env_range(&self) -> Option<(u64, u64)> {
        let mm = self.ptr.follow(self.off.task_mm)?;
        Some((
            mm.read::<u64>(self.off.mm_env_start)?,
            mm.read::<u64>(self.off.mm_env_end)?,
        ))
    }

    /// Inode number of the mount namespace (`nsproxy->mnt_ns->ns.inum`).
    #[inline(always)]
    pub fn mnt_ns(&self) -> u32 {
        self.ptr
            .follow(self.off.task_nsproxy)
            .and_then(|ns| ns.follow(self.off.nsproxy_mnt_ns))
            .and_then(|mnt| mnt.read::<u32>(self.off.mnt_ns_inum))
            .unwrap_or(0)
    }

    /// Inode number of the pid namespace the task lives in:
    /// `thread_pid->numbers[thread_pid->level].ns->ns.inum`.
    #[inline(always)]
    pub fn pid_ns(&self) -> u32 {
        let Some(pid) = self.ptr.follow(self.off.task_thread_pid) else {
            return 0;
        };
        let Some(level) = pid.read::<u32>(self.off.pid_level) else {
            return 0;
        };
        // Nesting is limited to 32 levels (MAX_PID_NS_LEVEL); bound it for the verifier.
        if level >= 32
            || self.off.upid_size == OFFSET_ABSENT
            || self.off.pid_numbers == OFFSET_ABSENT
        {
            return 0;
        }
        let upid = self.off.pid_numbers + level * self.off.upid_size;
        pid.follow(upid + self.off.upid_ns)
            .and_then(|ns| ns.read::<u32>(self.off.pid_ns_inum))
            .unwrap_or(0)
    }

    /// Whether the task's thread group has no live thread left (`signal->live == 0`), for
    /// kernels whose `sched_process_exit` does not pass `group_dead`.
    #[inline(always)]
    pub fn group_dead(&self) -> bool {
        self.ptr
            .follow(self.off.task_signal)
            .and_then(|s| s.read::<i32>(self.off.signal_live))
            .is_some_and(|live| live == 0)
    }
}

/// A kernel object's members, copied with one probe read per range of its [`Gather`] (each
/// helper call costs more than the copy) into per-CPU map memory: on the stack, the walk's
/// chunks alone took half of the 512 bytes that kernels without private stacks allow a whole
/// call chain.
pub struct Chunk {
    words: *const [u64; CHUNK_WORDS],
}

pub const CHUNK_WORDS: usize = CHUNK_BYTES / 8;

impl Chunk {
    /// Copies the ranges `gather` names of the object at `obj` into `buf`, or `None` if the
    /// object is unreadable or the loader planned no read.
    #[inline(always)]
    pub fn read(buf: *mut [u64; CHUNK_WORDS], obj: KPtr, gather: &Gather) -> Option<Chunk> {
        if obj.is_null() {
            return None;
        }
        let dst = buf.cast::<u8>();
        let mut i = 0;
        while i < SEGMENTS {
            let w = gather.segments[i];
            if w.len == 0 {
                // The first range is never empty in a planned read.
                if i == 0 {
                    return None;
                }
                break;
            }
            if w.len > SEGMENT_MAX {
                return None;
            }
            // SAFETY: range `i` lands in `buf[i * SEGMENT_MAX..][..len]`, inside the chunk; a
            // bad source address is an error, not a fault.
            let rc = unsafe {
                generated::bpf_probe_read_kernel(
                    dst.add(i * SEGMENT_MAX as usize).cast(),
                    w.len,
                    obj.0.wrapping_add(w.start as usize).cast(),
                )
            };
            if rc != 0 {
                return None;
            }
            i += 1;
        }
        Some(Chunk { words: buf })
    }

    /// The 8-byte member at chunk position `at` (as the loader planned it).
    #[inline(always)]
    pub fn u64_at(&self, at: u32) -> u64 {
        let i = (at as usize / 8) & (CHUNK_WORDS - 1);
        // SAFETY: in bounds; the planned members lie in the copied ranges.
        unsafe { (*self.words)[i] }
    }

    /// The 4-byte member at chunk position `at` (members are naturally aligned, and ranges
    /// start 8-byte aligned, so a member keeps its alignment in the chunk).
    #[inline(always)]
    pub fn u32_at(&self, at: u32) -> u32 {
        let word = self.u64_at(at & !7);
        (word >> ((at & 4) * 8)) as u32
    }

    /// The pointer member at chunk position `at`, if not null.
    #[inline(always)]
    pub fn ptr_at(&self, at: u32) -> Option<KPtr> {
        let p = self.u64_at(at) as *const u8;
        (!p.is_null()).then_some(KPtr(p))
    }
}

/// The current task through its BTF-typed pointer (`bpf_get_current_task_btf`): its members are
/// plain loads, which the verifier checks against BTF and the JIT makes fault-safe, instead of
/// a `bpf_probe_read_kernel` call each. The offsets are read-only globals, constants to the
/// verifier, as it requires for such loads. Kernels before 5.11 lack the helper: there (the
/// read-only `task_regs` setting is zero, so their verifier never sees the BTF path) the task
/// comes from `bpf_get_current_task` and its members from probe reads.
pub struct CurrentTask {
    ptr: *const u8,
}

impl CurrentTask {
    #[inline(always)]
    pub fn get() -> Self {
        // SAFETY: plain helper calls.
        let ptr = if btf_loads() {
            unsafe { generated::bpf_get_current_task_btf() as *const u8 }
        } else {
            unsafe { generated::bpf_get_current_task() as *const u8 }
        };
        Self { ptr }
    }

    /// The task as an opaque pointer for probe reads.
    #[inline(always)]
    pub fn task(&self) -> Task {
        Task::new(untyped(self.ptr), offsets())
    }

    /// `start_boottime` of the task's process (its group leader).
    #[inline(always)]
    pub fn process_start(&self) -> u64 {
        let off = offsets();
        // SAFETY: BTF-checked loads (see the type's comment).
        unsafe {
            let leader = load::<*const u8>(self.ptr, off.task_group_leader);
            load::<u64>(leader, off.task_start_boottime)
        }
    }

    /// The working directory and root (`task->fs->pwd`, `->root`).
    #[inline(always)]
    pub fn cwd_and_root(&self) -> Option<(KPath, KPath)> {
        let off = offsets();
        // SAFETY: BTF-checked loads.
        unsafe {
            let fs = load::<*const u8>(self.ptr, off.task_fs);
            if fs.is_null() {
                return None;
            }
            let path = |at: u32| KPath {
                mnt: KPtr(untyped(load::<*const u8>(fs, at + off.path_mnt))),
                dentry: KPtr(untyped(load::<*const u8>(fs, at + off.path_dentry))),
            };
            Some((path(off.fs_pwd), path(off.fs_root)))
        }
    }

    /// What the file behind `fd` is: its path, inode, private data and flags, from the reads
    /// the loader planned for this kernel's `struct file`.
    #[inline(always)]
    pub fn open_file(&self, fd: i32) -> Option<OpenFile> {
        let plan = &offsets().file_read;
        let file = self.file(fd)?;
        let scratch = PATHBUF.get_ptr_mut(0)?;
        // SAFETY: this CPU's scratch; the walk that may follow reads the file's members out of
        // it first.
        let w = Chunk::read(unsafe { &raw mut (*scratch).object }, file, &plan.gather)?;
        Some(OpenFile {
            path: KPath {
                mnt: w.ptr_at(plan.path_mnt)?,
                dentry: w.ptr_at(plan.path_dentry)?,
            },
            inode: KPtr(w.u64_at(plan.inode) as *const u8),
            private: KPtr(w.u64_at(plan.private) as *const u8),
            flags: w.u32_at(plan.flags),
        })
    }

    /// The open file behind `fd` (`task->files->fdt->fd[fd]`): the fd table through plain loads,
    /// its slot with one probe read.
    #[inline(always)]
    pub fn file(&self, fd: i32) -> Option<KPtr> {
        let off = offsets();
        if fd < 0 {
            return None;
        }
        // SAFETY: BTF-checked loads; the slot is read with a probe read.
        unsafe {
            let files = load::<*const u8>(self.ptr, off.task_files);
            if files.is_null() {
                return None;
            }
            let fdt = load::<*const u8>(files, off.files_fdt);
            if fdt.is_null() || fd as u32 >= load::<u32>(fdt, off.fdt_max_fds) {
                return None;
            }
            let array = untyped(load::<*const u8>(fdt, off.fdt_fd));
            KPtr(array.wrapping_add(fd as usize * 8)).follow(0)
        }
    }
}

/// An open file, as [`CurrentTask::open_file`] reads it.
pub struct OpenFile {
    pub path: KPath,
    pub inode: KPtr,
    /// `private_data`: the `struct socket` of a socket.
    pub private: KPtr,
    pub flags: u32,
}

impl OpenFile {
    /// The inode number.
    #[inline(always)]
    pub fn ino(&self) -> u64 {
        let off = offsets();
        self.inode.read::<u64>(off.inode_ino).unwrap_or(0)
    }
}

/// Whether the current task and the objects it points to are read with plain loads (see
/// [`CurrentTask`]).
#[inline(always)]
fn btf_loads() -> bool {
    crate::globals::config().task_regs != 0
}

/// A member of an object reached from the current task: a plain load of a BTF-typed pointer,
/// or a probe read where the kernel has no such pointers (zero if unreadable).
///
/// # Safety
/// With BTF loads, `p` must be a pointer the verifier knows by its BTF type, `offset` a member
/// of it.
#[inline(always)]
unsafe fn load<T: Copy>(p: *const u8, offset: u32) -> T {
    let at = p.wrapping_add(offset as usize).cast::<T>();
    if btf_loads() {
        // SAFETY: see above; the JIT turns a faulting load into zero.
        unsafe { core::ptr::read_volatile(at) }
    } else {
        // SAFETY: any address; a bad one is an error, and zero is a valid T for the plain
        // integers and pointers this reads.
        unsafe { bpf_probe_read_kernel(at).unwrap_or(core::mem::zeroed()) }
    }
}

/// The pointer's value as a plain number: BTF-typed pointers cannot be passed to the global
/// path walk (it takes scalars) or offset backwards (`container_of`). Going through map memory
/// is how the verifier lets a privileged program turn one into a number.
#[inline(always)]
fn untyped(p: *const u8) -> *const u8 {
    if !btf_loads() {
        // From bpf_get_current_task and probe reads: a number already.
        return p;
    }
    let Some(slot) = crate::maps::POINTER_SLOT.get_ptr_mut(0) else {
        return core::ptr::null();
    };
    // SAFETY: this CPU's slot.
    unsafe {
        core::ptr::write_volatile(slot, p as u64);
        core::ptr::read_volatile(slot) as *const u8
    }
}

/// A BTF-typed pointer (an LSM hook's argument) as a plain number, for a global function
/// (which takes scalars): through map memory, as [`untyped`] does.
#[inline(always)]
pub fn as_number(p: *const u8) -> u64 {
    let Some(slot) = crate::maps::POINTER_SLOT.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot.
    unsafe {
        core::ptr::write_volatile(slot, p as u64);
        core::ptr::read_volatile(slot)
    }
}

/// The current thread's `comm`, through an aligned buffer: the helper's usual wrapper zeroes a
/// byte array first, which compiles to a byte-wise memset call.
#[inline(always)]
pub fn current_comm() -> [u8; 16] {
    let mut comm = [0u64; 2];
    // SAFETY: 16 writable bytes.
    unsafe { generated::bpf_get_current_comm(comm.as_mut_ptr().cast(), 16) };
    // SAFETY: same size, any bit pattern is valid.
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(comm) }
}
