//! The `tls` mode and its server: HTTPS requests shaped like an LLM API call over one
//! keep-alive connection on loopback, through OpenSSL's `libssl.so.3` loaded at run time
//! (`dlopen`), so the other modes never map a TLS library. The server (`tls-server`, run by the
//! bench outside the agent) loads its own copy of the library, which no probe of the sensor is
//! attached to, so only the client's side of each request is observed.
use std::{
    ffi::{CStr, CString, c_char, c_int, c_void},
    io::Write as _,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    path::Path,
};

use serde_json::json;

/// The request: an OpenAI-shaped chat completion, with the kind of credential header a real
/// client sends (the sensor masks it).
pub const REQUEST: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\n\
Host: 127.0.0.1\r\n\
Authorization: Bearer sk-proj-BenchK3yAbCdEfGhIjKlMnOpQrStUvWxYz0123456789\r\n\
Content-Type: application/json\r\n\
Content-Length: 92\r\n\
\r\n\
{\"model\":\"bench-model\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello to the benchmark.\"}]}";

/// The answer to every request.
const BODY: &str = "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello, benchmark.\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}";

type Ptr = *mut c_void;

/// The OpenSSL functions these modes call.
struct Lib {
    ctx_new: unsafe extern "C" fn(*const c_void) -> Ptr,
    client_method: unsafe extern "C" fn() -> *const c_void,
    server_method: unsafe extern "C" fn() -> *const c_void,
    use_certificate: unsafe extern "C" fn(Ptr, *const c_char) -> c_int,
    use_key: unsafe extern "C" fn(Ptr, *const c_char, c_int) -> c_int,
    new: unsafe extern "C" fn(Ptr) -> Ptr,
    set_fd: unsafe extern "C" fn(Ptr, c_int) -> c_int,
    connect: unsafe extern "C" fn(Ptr) -> c_int,
    accept: unsafe extern "C" fn(Ptr) -> c_int,
    write: unsafe extern "C" fn(Ptr, *const c_void, c_int) -> c_int,
    read: unsafe extern "C" fn(Ptr, Ptr, c_int) -> c_int,
    shutdown: unsafe extern "C" fn(Ptr) -> c_int,
    free: unsafe extern "C" fn(Ptr),
}

/// `SSL_FILETYPE_PEM`.
const PEM: c_int = 1;

impl Lib {
    /// Loads `path` (a file name is looked up as the dynamic loader does).
    fn load(path: &str) -> Lib {
        let name = CString::new(path).expect("no NUL");
        // SAFETY: a NUL-terminated name; the handle is never closed (the process uses it to the
        // end).
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            // SAFETY: dlerror returns a NUL-terminated message after a failure.
            let why = unsafe { CStr::from_ptr(libc::dlerror()) };
            panic!("dlopen {path}: {}", why.to_string_lossy());
        }
        let sym = |s: &CStr| {
            // SAFETY: a live handle and a NUL-terminated name.
            let f = unsafe { libc::dlsym(handle, s.as_ptr()) };
            assert!(!f.is_null(), "{path} has no {}", s.to_string_lossy());
            f
        };
        macro_rules! functions {
            ($($field:ident: $name:literal as $t:ty),* $(,)?) => {
                Lib { $($field: std::mem::transmute::<Ptr, $t>(sym($name)),)* }
            };
        }
        // SAFETY: each symbol is OpenSSL 3's function of that name, with the signature given.
        unsafe {
            functions! {
                ctx_new: c"SSL_CTX_new" as unsafe extern "C" fn(*const c_void) -> Ptr,
                client_method: c"TLS_client_method" as unsafe extern "C" fn() -> *const c_void,
                server_method: c"TLS_server_method" as unsafe extern "C" fn() -> *const c_void,
                use_certificate: c"SSL_CTX_use_certificate_chain_file"
                    as unsafe extern "C" fn(Ptr, *const c_char) -> c_int,
                use_key: c"SSL_CTX_use_PrivateKey_file"
                    as unsafe extern "C" fn(Ptr, *const c_char, c_int) -> c_int,
                new: c"SSL_new" as unsafe extern "C" fn(Ptr) -> Ptr,
                set_fd: c"SSL_set_fd" as unsafe extern "C" fn(Ptr, c_int) -> c_int,
                connect: c"SSL_connect" as unsafe extern "C" fn(Ptr) -> c_int,
                accept: c"SSL_accept" as unsafe extern "C" fn(Ptr) -> c_int,
                write: c"SSL_write" as unsafe extern "C" fn(Ptr, *const c_void, c_int) -> c_int,
                read: c"SSL_read" as unsafe extern "C" fn(Ptr, Ptr, c_int) -> c_int,
                shutdown: c"SSL_shutdown" as unsafe extern "C" fn(Ptr) -> c_int,
                free: c"SSL_free" as unsafe extern "C" fn(Ptr),
            }
        }
    }

    fn write_all(&self, ssl: Ptr, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            // SAFETY: a live connection and buffer.
            let n = unsafe { (self.write)(ssl, bytes.as_ptr().cast(), bytes.len() as c_int) };
            if n <= 0 {
                return false;
            }
            bytes = &bytes[n as usize..];
        }
        true
    }

    /// Reads one HTTP/1.1 message (headers and a `Content-Length` body) into `buf`; false at
    /// the end of the connection.
    fn read_message(&self, ssl: Ptr, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let want = end + 4 + content_length(&buf[..end]);
                if buf.len() >= want {
                    return true;
                }
            }
            // SAFETY: a live connection and buffer.
            let n = unsafe { (self.read)(ssl, chunk.as_mut_ptr().cast(), chunk.len() as c_int) };
            if n <= 0 {
                return false;
            }
            buf.extend_from_slice(&chunk[..n as usize]);
        }
    }
}

pub fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

/// A connected client: the TCP connection and OpenSSL's object for it.
pub struct Client {
    lib: Lib,
    ssl: Ptr,
    _tcp: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to the server on loopback `port` and completes the handshake (the certificate
    /// is not verified: the bench's server has a throwaway one).
    pub fn connect(port: u16) -> Client {
        let lib = Lib::load("libssl.so.3");
        let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect to the server");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        // SAFETY: OpenSSL's documented calls, each result checked.
        let ssl = unsafe {
            let ctx = (lib.ctx_new)((lib.client_method)());
            assert!(!ctx.is_null(), "SSL_CTX_new");
            let ssl = (lib.new)(ctx);
            assert!(!ssl.is_null(), "SSL_new");
            assert_eq!((lib.set_fd)(ssl, tcp.as_raw_fd()), 1, "SSL_set_fd");
            assert_eq!((lib.connect)(ssl), 1, "the TLS handshake");
            ssl
        };
        Client {
            lib,
            ssl,
            _tcp: tcp,
            buf: Vec::with_capacity(4096),
        }
    }

    /// One request and its whole response.
    pub fn request(&mut self) {
        assert!(self.lib.write_all(self.ssl, REQUEST), "SSL_write");
        assert!(
            self.lib.read_message(self.ssl, &mut self.buf),
            "the server closed the connection"
        );
        assert!(self.buf.starts_with(b"HTTP/1.1 200 "), "a 200 response");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // SAFETY: the connection is not used after.
        unsafe {
            (self.lib.shutdown)(self.ssl);
            (self.lib.free)(self.ssl);
        }
    }
}

/// Serves every connection, one after another, until killed: prints `{"port": N}` once it
/// listens. `libssl`: the library file to load (the bench's unprobed copy).
pub fn serve(libssl: &Path, cert: &Path, key: &Path) {
    let lib = Lib::load(libssl.to_str().expect("a UTF-8 path"));
    let cert = CString::new(cert.to_str().expect("UTF-8")).expect("no NUL");
    let key = CString::new(key.to_str().expect("UTF-8")).expect("no NUL");
    // SAFETY: OpenSSL's documented calls, each result checked.
    let ctx = unsafe {
        let ctx = (lib.ctx_new)((lib.server_method)());
        assert!(!ctx.is_null(), "SSL_CTX_new");
        assert_eq!(
            (lib.use_certificate)(ctx, cert.as_ptr()),
            1,
            "the certificate"
        );
        assert_eq!((lib.use_key)(ctx, key.as_ptr(), PEM), 1, "the key");
        ctx
    };
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).expect("listen");
    let port = listener.local_addr().expect("bound").port();
    println!("{}", json!({ "port": port }));
    std::io::stdout().flush().expect("stdout");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut buf = Vec::with_capacity(4096);
    for tcp in listener.incoming() {
        let Ok(tcp) = tcp else { continue };
        let _ = tcp.set_nodelay(true);
        // SAFETY: a fresh connection object on a live socket, freed before the socket closes.
        unsafe {
            let ssl = (lib.new)(ctx);
            assert!(!ssl.is_null(), "SSL_new");
            (lib.set_fd)(ssl, tcp.as_raw_fd());
            if (lib.accept)(ssl) == 1 {
                while lib.read_message(ssl, &mut buf) && lib.write_all(ssl, response.as_bytes()) {}
            }
            (lib.free)(ssl);
        }
    }
}
