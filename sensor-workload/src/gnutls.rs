//! The `gnutls` mode: the `tls` mode's requests through GnuTLS (`libgnutls.so.30`, loaded at
//! run time with `dlopen`) instead of OpenSSL, to the same `tls-server`: what the sensor's
//! probes on `gnutls_record_send` and `gnutls_record_recv` observe.
use std::{
    ffi::{CStr, CString, c_int, c_uint, c_void},
    net::{Ipv4Addr, TcpStream},
    os::fd::AsRawFd as _,
};

use crate::tls::{REQUEST, content_length};

type Ptr = *mut c_void;

/// `GNUTLS_CLIENT`.
const CLIENT: c_uint = 1 << 1;
/// `GNUTLS_CRD_CERTIFICATE`.
const CERTIFICATE: c_int = 1;
/// `GNUTLS_SHUT_RDWR`.
const SHUT_RDWR: c_int = 0;
/// `GNUTLS_E_AGAIN`, `GNUTLS_E_INTERRUPTED`: try again.
const AGAIN: [isize; 2] = [-28, -52];

/// The GnuTLS functions this mode calls.
struct Lib {
    allocate_credentials: unsafe extern "C" fn(*mut Ptr) -> c_int,
    init: unsafe extern "C" fn(*mut Ptr, c_uint) -> c_int,
    set_default_priority: unsafe extern "C" fn(Ptr) -> c_int,
    credentials_set: unsafe extern "C" fn(Ptr, c_int, Ptr) -> c_int,
    transport_set_int2: unsafe extern "C" fn(Ptr, c_int, c_int),
    handshake: unsafe extern "C" fn(Ptr) -> c_int,
    error_is_fatal: unsafe extern "C" fn(c_int) -> c_int,
    send: unsafe extern "C" fn(Ptr, *const c_void, usize) -> isize,
    recv: unsafe extern "C" fn(Ptr, Ptr, usize) -> isize,
    bye: unsafe extern "C" fn(Ptr, c_int) -> c_int,
    deinit: unsafe extern "C" fn(Ptr),
}

impl Lib {
    fn load() -> Lib {
        let name = CString::new("libgnutls.so.30").expect("no NUL");
        // SAFETY: a NUL-terminated name; the handle is never closed.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            // SAFETY: dlerror returns a NUL-terminated message after a failure.
            let why = unsafe { CStr::from_ptr(libc::dlerror()) };
            panic!("dlopen libgnutls.so.30: {}", why.to_string_lossy());
        }
        let sym = |s: &CStr| {
            // SAFETY: a live handle and a NUL-terminated name.
            let f = unsafe { libc::dlsym(handle, s.as_ptr()) };
            assert!(
                !f.is_null(),
                "libgnutls.so.30 has no {}",
                s.to_string_lossy()
            );
            f
        };
        macro_rules! functions {
            ($($field:ident: $name:literal as $t:ty),* $(,)?) => {
                Lib { $($field: std::mem::transmute::<Ptr, $t>(sym($name)),)* }
            };
        }
        // SAFETY: each symbol is GnuTLS 3's function of that name, with the signature given.
        unsafe {
            functions! {
                allocate_credentials: c"gnutls_certificate_allocate_credentials"
                    as unsafe extern "C" fn(*mut Ptr) -> c_int,
                init: c"gnutls_init" as unsafe extern "C" fn(*mut Ptr, c_uint) -> c_int,
                set_default_priority: c"gnutls_set_default_priority"
                    as unsafe extern "C" fn(Ptr) -> c_int,
                credentials_set: c"gnutls_credentials_set"
                    as unsafe extern "C" fn(Ptr, c_int, Ptr) -> c_int,
                transport_set_int2: c"gnutls_transport_set_int2"
                    as unsafe extern "C" fn(Ptr, c_int, c_int),
                handshake: c"gnutls_handshake" as unsafe extern "C" fn(Ptr) -> c_int,
                error_is_fatal: c"gnutls_error_is_fatal" as unsafe extern "C" fn(c_int) -> c_int,
                send: c"gnutls_record_send"
                    as unsafe extern "C" fn(Ptr, *const c_void, usize) -> isize,
                recv: c"gnutls_record_recv" as unsafe extern "C" fn(Ptr, Ptr, usize) -> isize,
                bye: c"gnutls_bye" as unsafe extern "C" fn(Ptr, c_int) -> c_int,
                deinit: c"gnutls_deinit" as unsafe extern "C" fn(Ptr),
            }
        }
    }
}

/// A connected GnuTLS client.
pub struct Client {
    lib: Lib,
    session: Ptr,
    _tcp: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to the server on loopback `port` and completes the handshake (the certificate
    /// is not verified: the bench's server has a throwaway one).
    pub fn connect(port: u16) -> Client {
        let lib = Lib::load();
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to the server");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let fd = tcp.as_raw_fd();
        // SAFETY: GnuTLS's documented calls, each result checked.
        let session = unsafe {
            let mut cred: Ptr = std::ptr::null_mut();
            assert_eq!((lib.allocate_credentials)(&raw mut cred), 0, "credentials");
            let mut session: Ptr = std::ptr::null_mut();
            assert_eq!((lib.init)(&raw mut session, CLIENT), 0, "gnutls_init");
            assert_eq!((lib.set_default_priority)(session), 0, "the priority");
            assert_eq!(
                (lib.credentials_set)(session, CERTIFICATE, cred),
                0,
                "gnutls_credentials_set"
            );
            (lib.transport_set_int2)(session, fd, fd);
            loop {
                let rc = (lib.handshake)(session);
                if rc >= 0 {
                    break;
                }
                assert_eq!((lib.error_is_fatal)(rc), 0, "the TLS handshake: {rc}");
            }
            session
        };
        Client {
            lib,
            session,
            _tcp: tcp,
            buf: Vec::with_capacity(4096),
        }
    }

    /// One request and its whole response.
    pub fn request(&mut self) {
        let mut rest = REQUEST;
        while !rest.is_empty() {
            // SAFETY: a live session and buffer.
            let n = unsafe { (self.lib.send)(self.session, rest.as_ptr().cast(), rest.len()) };
            if AGAIN.contains(&n) {
                continue;
            }
            assert!(n > 0, "gnutls_record_send: {n}");
            rest = &rest[n as usize..];
        }
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let want = end + 4 + content_length(&self.buf[..end]);
                if self.buf.len() >= want {
                    break;
                }
            }
            // SAFETY: a live session and buffer.
            let n =
                unsafe { (self.lib.recv)(self.session, chunk.as_mut_ptr().cast(), chunk.len()) };
            if AGAIN.contains(&n) {
                continue;
            }
            assert!(n > 0, "gnutls_record_recv: {n}");
            self.buf.extend_from_slice(&chunk[..n as usize]);
        }
        assert!(self.buf.starts_with(b"HTTP/1.1 200 "), "a 200 response");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: the session is not used after.
        unsafe {
            (self.lib.bye)(self.session, SHUT_RDWR);
            (self.lib.deinit)(self.session);
        }
    }
}
