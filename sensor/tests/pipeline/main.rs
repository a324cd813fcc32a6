//! The pipeline without root or a kernel: forged kernel records (the `sensor-common` layouts,
//! byte for byte) replayed through the real pipeline — decode, attribution, enrichment, repeat
//! folding, the evidence chain, the file sink — and the trail read back. Each test asserts the
//! exact records a decision, a loss or a full disk leaves. They run under plain `cargo test`
//! as any user; the privileged tests (`tests/`, `cargo xtask test`) check the same against a
//! live kernel.
mod attribution;
mod backpressure;
mod chain;
mod gaps;
mod repeats;
mod support;
