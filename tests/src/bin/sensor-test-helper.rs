//! Does one known thing so a test can check exactly what the sensor reports about it.
//! Prints the ids the test needs on stdout, one per line.
use std::{
    io::Write as _,
    os::unix::process::CommandExt as _,
    process::{Command, exit},
};

fn main() {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    match mode {
        // `exit CODE [ignored...]`: exit with CODE; the other arguments are for the argv tests.
        "exit" => exit(args[2].parse().expect("exit code")),
        // Fork a child that exits 7 without exec; print its pid.
        "fork" => {
            // SAFETY: the child only calls async-signal-safe _exit.
            let child = unsafe { libc::fork() };
            if child == 0 {
                unsafe { libc::_exit(7) };
            }
            println!("{child}");
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
        }
        // Start a thread, print its thread id, join it.
        "thread" => {
            let tid = std::thread::spawn(|| {
                // SAFETY: gettid has no preconditions.
                unsafe { libc::gettid() }
            })
            .join()
            .expect("thread");
            println!("{tid}");
        }
        // `spawn N PROGRAM`: fork+exec PROGRAM N times, one after another.
        "spawn" => {
            let n: usize = args[2].parse().expect("count");
            for _ in 0..n {
                let status = Command::new(&args[3]).status().expect("spawn");
                assert!(status.success());
            }
        }
        // `rename NAME`: set this process's comm (up to 15 bytes) to NAME, fork a child that
        // exits 0, print its pid.
        "rename" => {
            let name = std::ffi::CString::new(args[2].as_bytes()).expect("no NUL in the name");
            // SAFETY: a NUL-terminated string; the kernel copies at most 15 bytes.
            unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
            // SAFETY: the child only calls async-signal-safe _exit.
            let child = unsafe { libc::fork() };
            if child == 0 {
                unsafe { libc::_exit(0) };
            }
            println!("{child}");
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
        }
        // `exec PROGRAM ARGS...`: replace this process (exec without fork).
        "exec" => {
            let err = Command::new(&args[2]).args(&args[3..]).exec();
            panic!("exec failed: {err}");
        }
        other => {
            let _ = writeln!(std::io::stderr(), "unknown mode {other:?}");
            exit(64);
        }
    }
}
