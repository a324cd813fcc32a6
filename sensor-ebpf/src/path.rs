//! Absolute paths from the kernel's dentry and mount chain (a bounded `d_path`): the
//! `bpf_d_path` helper is only allowed in LSM and fentry programs, which many kernels refuse.
//! Components are written right to left into per-CPU scratch, then copied into the record.
use aya_ebpf::helpers::generated::bpf_probe_read_kernel;

use crate::{
    bounds::opaque,
    globals::offsets,
    kernel::{CHUNK_WORDS, Chunk, KPtr, Task},
    maps::PATHBUF,
};

/// Size of the window a path is assembled in; the text buffer is twice as large so a
/// component written at any masked position stays inside it.
pub const PATH_WINDOW: usize = 4096;
const MASK: usize = PATH_WINDOW - 1;
/// Most components walked (deeper paths are cut at the top and flagged).
const MAX_DEPTH: u32 = 64;
/// Longest file name (NAME_MAX).
const NAME_MAX: u32 = 255;

/// A `struct path` (mount and dentry).
#[derive(Clone, Copy)]
pub struct KPath {
    pub mnt: KPtr,
    pub dentry: KPtr,
}

/// Where the walked path lies in the per-CPU path buffer.
pub struct Walked {
    pub start: usize,
    pub len: usize,
    pub truncated: bool,
}

impl Task {
    /// Reads a `struct path` embedded at `offset` of the object at `base`.
    #[inline(always)]
    pub fn path_at(&self, base: KPtr, offset: u32) -> Option<KPath> {
        let p = base.offset(offset)?;
        Some(KPath {
            mnt: p.follow(self.off.path_mnt)?,
            dentry: p.follow(self.off.path_dentry)?,
        })
    }

    /// The process's working directory and root (`task->fs->pwd`, `->root`).
    #[inline(always)]
    pub fn cwd_and_root(&self) -> Option<(KPath, KPath)> {
        let fs = self.ptr.follow(self.off.task_fs)?;
        Some((
            self.path_at(fs, self.off.fs_pwd)?,
            self.path_at(fs, self.off.fs_root)?,
        ))
    }

    /// Walks `path` up to `root` (or the top of its mount namespace) into the path buffer.
    #[inline(always)]
    pub fn walk(&self, path: KPath, root: KPath) -> Option<Walked> {
        let packed = walk_path(
            path.mnt.0 as u64,
            path.dentry.0 as u64,
            root.mnt.0 as u64,
            root.dentry.0 as u64,
        );
        if packed & WALK_OK == 0 {
            return None;
        }
        Some(Walked {
            start: (packed & MASK as u64) as usize,
            len: ((packed >> 16) & MASK as u64) as usize,
            truncated: packed & WALK_TRUNCATED != 0,
        })
    }
}

const WALK_OK: u64 = 1 << 33;
const WALK_TRUNCATED: u64 = 1 << 32;

/// A CPU's scratch space for the walk, in map memory: the path is assembled right to left in
/// `text`, the objects it reads are copied into the chunks, and its position and outcome kept
/// in `pos` and `done`, which the verifier does not track (kept in registers, each path's exact
/// position makes a new state, and the verifier gives up after a million instructions).
#[repr(C)]
pub struct PathScratch {
    /// Two windows, so a component written at any masked position stays inside.
    pub text: [u8; 2 * PATH_WINDOW],
    /// The mount being walked through.
    pub mount: [u64; CHUNK_WORDS],
    /// The dentry being walked, or the open file the fd lookup read.
    pub object: [u64; CHUNK_WORDS],
    pub pos: u64,
    pub done: u64,
}

/// The walk itself, as a global BPF function: the verifier checks it once, not once per call
/// site. It takes and returns scalars only, as global functions must: `start | len << 16`,
/// plus the flags above. Each dentry costs two probe reads (its members, then its name) and
/// each mount one (its root, parent and mount point), with this kernel's layout as planned by
/// the loader.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn walk_path(mnt: u64, dentry: u64, root_mnt: u64, root_dentry: u64) -> u64 {
    let off = offsets();
    let (dplan, mplan) = (&off.dentry_read, &off.mount_read);
    let Some(s) = PATHBUF.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's slot, valid for the map's lifetime.
    let s = unsafe { &mut *s };
    let mut dentry = KPtr(dentry as *const u8);
    let mut vfsmnt = KPtr(mnt as *const u8);
    // struct mount embeds the vfsmount: container_of.
    let mut mount = KPtr(vfsmnt.0.wrapping_sub(off.mount_mnt as usize));
    let Some(mut mounted) = Chunk::read(&raw mut s.mount, mount, &mplan.gather) else {
        return 0;
    };
    s.pos = (PATH_WINDOW - 1) as u64;
    s.done = 0;
    for _ in 0..MAX_DEPTH {
        let pos = opaque(s.pos as usize) & MASK;
        if dentry.0 as u64 == root_dentry && vfsmnt.0 as u64 == root_mnt {
            s.done = 1;
            break;
        }
        if dentry.0 as u64 == mounted.u64_at(mplan.root) {
            // At the top of a mount: continue from where it is mounted.
            let Some(parent) = mounted.ptr_at(mplan.parent) else {
                return 0;
            };
            if parent.0 == mount.0 {
                s.done = 1;
                break;
            }
            let Some(point) = mounted.ptr_at(mplan.mountpoint) else {
                return 0;
            };
            let Some(next) = Chunk::read(&raw mut s.mount, parent, &mplan.gather) else {
                return 0;
            };
            dentry = point;
            mount = parent;
            mounted = next;
            vfsmnt = KPtr(mount.0.wrapping_add(off.mount_mnt as usize));
            continue;
        }
        let Some(d) = Chunk::read(&raw mut s.object, dentry, &dplan.gather) else {
            return 0;
        };
        let Some(parent) = d.ptr_at(dplan.parent) else {
            return 0;
        };
        if parent.0 == dentry.0 {
            s.done = 1;
            break;
        }
        let len = d.u32_at(dplan.name_len);
        let Some(name_ptr) = d.ptr_at(dplan.name_ptr) else {
            return 0;
        };
        let len = if len > NAME_MAX { NAME_MAX } else { len } as usize;
        if pos < len + 1 {
            break;
        }
        let at = opaque(pos - len) & MASK;
        // SAFETY: at + NAME_MAX stays inside the two-window text.
        unsafe {
            bpf_probe_read_kernel(
                s.text.as_mut_ptr().add(at).cast(),
                (len & 0xff) as u32,
                name_ptr.0.cast(),
            )
        };
        let slash = opaque(pos - len - 1) & MASK;
        s.text[slash] = b'/';
        s.pos = slash as u64;
        dentry = parent;
    }
    let mut pos = opaque(s.pos as usize) & MASK;
    if pos == PATH_WINDOW - 1 {
        // The root itself.
        pos -= 1;
        s.text[pos] = b'/';
    }
    let len = (PATH_WINDOW - 1 - pos) & MASK;
    let truncated = s.done == 0;
    (pos & MASK) as u64 | (len as u64) << 16 | if truncated { WALK_TRUNCATED } else { 0 } | WALK_OK
}
