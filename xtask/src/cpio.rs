//! Initramfs archives for the VMs (the kernel matrix's and the arm64 one's): cpio in the
//! "newc" format.
/// A cpio archive in the "newc" format the kernel unpacks (Documentation/driver-api/
/// early-userspace/buffer-format.rst): a 110-byte ASCII header per entry, name and data each
/// padded to 4 bytes, closed by a `TRAILER!!!` entry.
#[derive(Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.inode += 1;
        let fields = [
            self.inode,
            mode,
            0,
            0,
            if mode & 0o040_000 != 0 { 2 } else { 1 },
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), &[]);
    }

    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020_600, (major, minor), &[]);
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, (0, 0), data);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120_777, (0, 0), target.as_bytes());
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_a_newc_header_then_padded_name_and_data() {
        let mut cpio = Cpio::default();
        cpio.file("ab", 0o644, b"xyz");
        let bytes = cpio.finish();
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert!(header.starts_with("070701"));
        // mode, then filesize (3) and namesize (3, with its NUL) at their fixed places.
        assert_eq!(&header[14..22], "000081a4");
        assert_eq!(&header[54..62], "00000003");
        assert_eq!(&header[94..102], "00000003");
        // 110 + "ab\0" = 113, padded to 116; data 3 bytes padded to 120; then the trailer.
        assert_eq!(&bytes[113..116], &[0, 0, 0]);
        assert_eq!(&bytes[116..119], b"xyz");
        assert_eq!(&bytes[120..126], b"070701");
        assert!(bytes.len().is_multiple_of(4));
    }
}
