//! The only code that reads kernel structs. Member offsets come from the `OFFSETS` global
//! (resolved from the running kernel's BTF by the loader); an absent member reads as `None`.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use sensor_common::{KernelOffsets, OFFSET_ABSENT};

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
    pub off: KernelOffsets,
}

impl Task {
    #[inline(always)]
    pub fn new(ptr: *const u8, off: KernelOffsets) -> Self {
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
